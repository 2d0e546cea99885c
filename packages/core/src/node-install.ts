import { z } from 'zod'
import { DiskLayoutSchema } from './disk-layout.js'
import { IMAGE_NAME_PATTERN } from './image-ref.js'
import { MAC_PATTERN } from './node-status.js'

const Sha256 = z.string().regex(/^[0-9a-f]{64}$/, 'expected 64 lowercase hex digits')
const FileName = z.string().regex(/^[A-Za-z0-9._+-]+$/)

/**
 * What ties a signed node config (`serve --keys`) to one node, one image version and its
 * files: the MAC the node asked with, the signed manifest's serial and expiry, and the
 * SHA-256 of every override tar and post-install script the config names, so a node checks
 * each file before it extracts or runs it (docs/trust.md, "Signed node configs").
 *
 * @example
 *   { mac: '52:54:00:12:34:56', serial: 7, expires: '2025-06-08T12:00:00.000Z',
 *     overrideSha256: { compute: '9f2c…' }, postInstallSha256: { '10all.hostname': '1a7e…' } }
 */
export const NodeConfigBindingSchema = z.strictObject({
  /** The MAC the node asked with (lower case, colons); null when it gave none. */
  mac: z.string().regex(MAC_PATTERN).nullable(),
  /** The serial of the image's signed manifest when this config was signed. */
  serial: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
  /** The signed manifest's expiry: a node refuses the config after it. */
  expires: z.iso.datetime(),
  overrideSha256: z.record(FileName, Sha256),
  postInstallSha256: z.record(FileName, Sha256),
})
export type NodeConfigBinding = z.output<typeof NodeConfigBindingSchema>

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
  /** Only from a server that signs (`serve --keys`): see NodeConfigBindingSchema. */
  signed: NodeConfigBindingSchema.optional(),
})
export type NodeInstallConfig = z.output<typeof NodeInstallConfigSchema>
