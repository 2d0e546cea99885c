import { z } from 'zod'
import { DiskLayoutSchema } from './disk-layout.js'
import { IMAGE_NAME_PATTERN } from './image-ref.js'

/**
 * What the image server tells the installer on a bare node about that node
 * (`GET /install/node.json`, core's `installPaths.node`), resolved by SystemImager's rules
 * from the server's `/var/lib/systemimager/scripts` and `overrides` directories: the
 * node's host name, its groups, its disk layout, the overrides to copy over the image and
 * the post-install scripts to run, in order.
 *
 * @example
 *   { image: 'compute', hostname: 'node7', groups: ['rack1'], layoutName: 'compute',
 *     layout: { … }, overrides: ['compute', 'rack1', 'node7'],
 *     postInstall: ['10all.hostname', '20compute.ssh'] }
 */
export const NodeInstallConfigSchema = z.strictObject({
  image: z.string().regex(IMAGE_NAME_PATTERN),
  /** DHCP's name for the node, else the server's `scripts/hosts` entry for its address. */
  hostname: z
    .string()
    .regex(/^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$/)
    .nullable(),
  /** The node's groups (SystemImager's `scripts/cluster.txt`). */
  groups: z.array(z.string().regex(/^[A-Za-z0-9._+-]+$/)).max(64),
  /** The layout's name on the server, or null for the installer's default layout. */
  layoutName: z.string().nullable(),
  layout: DiskLayoutSchema.nullable(),
  /** Override directories to copy over the image, in order (the last one wins). */
  overrides: z.array(z.string().regex(/^[A-Za-z0-9._+-]+$/)).max(64),
  /** Post-install scripts (`NN<class>.<description>`), in the order they run. */
  postInstall: z.array(z.string().regex(/^[A-Za-z0-9._+-]+$/)).max(256),
})
export type NodeInstallConfig = z.output<typeof NodeInstallConfigSchema>
