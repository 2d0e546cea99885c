import {
  type ClientConfig,
  type ResolvedParameters,
  resolveInstallParameters,
  unknownKernelParameters,
} from '@imageswarm/client'
import { describeSchemaProblem, ImageSwarmError } from '@imageswarm/core'
import { z } from 'zod'

/** What the installer does once the node is installed (SystemImager 5's si.post-action). */
export const POST_ACTIONS = ['reboot', 'poweroff', 'shell'] as const
export type PostAction = (typeof POST_ACTIONS)[number]

const NAME = /^[A-Za-z0-9._+-]+$/
const HOSTNAME = /^[A-Za-z0-9]([A-Za-z0-9-]{0,62})$/

/**
 * The installer's own settings (the client's are ClientConfig). Each default is here and
 * only here.
 */
export const InstallerConfigSchema = z.strictObject({
  /**
   * The disk layout to ask the server for (SystemImager's si.disks-layout); default: the
   * server chooses by SystemImager's rules (host name, groups, image, `default`).
   */
  disksLayout: z.string().regex(NAME, 'a layout name such as compute').optional(),
  /** After a successful install: SystemImager 5's default is reboot. */
  postAction: z.enum(POST_ACTIONS).default('reboot'),
  /** The node's host name; default: the server's answer, else DHCP's. */
  hostname: z.string().regex(HOSTNAME, 'a host name such as node07 (no domain)').optional(),
})
export type InstallerConfig = z.output<typeof InstallerConfigSchema>

/** One installer setting: its config key and its kernel parameters, preferred first. */
export interface InstallerParameter {
  key: keyof InstallerConfig
  kernel: readonly string[]
}

/** Every installer setting: `imageswarm.NAME` is key NAME in kebab case; `si.*` is SystemImager 5's. */
export const INSTALLER_PARAMETERS: readonly InstallerParameter[] = [
  { key: 'disksLayout', kernel: ['imageswarm.disks-layout', 'si.disks-layout'] },
  { key: 'postAction', kernel: ['imageswarm.post-action', 'si.post-action'] },
  { key: 'hostname', kernel: ['imageswarm.hostname'] },
]

/**
 * SystemImager 5's post actions imageswarm takes by another name: `shutdown` is poweroff;
 * `directboot` (switch into the new root without a reboot) and `kexec` reboot instead, as
 * SystemImager 5 itself does when it cannot directboot.
 */
const POST_ACTION_ALIASES: Readonly<Record<string, { action: PostAction; note?: string }>> = {
  shutdown: { action: 'poweroff' },
  directboot: {
    action: 'reboot',
    note: 'post action directboot: imageswarm reboots into the installed system instead',
  },
  kexec: {
    action: 'reboot',
    note: 'post action kexec: imageswarm reboots into the installed system instead',
  },
}

/** The kernel parameters the ramdisk's /init reads itself (imageswarm-lib.sh, init). */
export const RAMDISK_KERNEL_PARAMETERS: readonly string[] = [
  'imageswarm.debug',
  'imageswarm.modules',
  'imageswarm.on-failure',
  'imageswarm.failure-delay',
]

export interface NodeInstallerSettings {
  client: ClientConfig
  clientSources: ResolvedParameters['sources']
  installer: InstallerConfig
  /** Where each installer setting came from: the kernel parameter's name, or `default`. */
  installerSources: Record<string, string>
  /** Things worth a console line (a post action taken by another name). */
  notes: string[]
}

/**
 * Resolves everything the installer is told on the kernel command line (and, for the
 * client's settings, in the environment, which wins): the client's parameters, SystemImager
 * 5's names included, and the installer's own. `si.dl-protocol` is `torrent` (the
 * default) or `http` (the plain-HTTP baseline); SystemImager's other transports are refused.
 *
 * @example
 *   resolveNodeInstallerSettings(parseKernelCmdline('si.image-server=10.0.0.1 si.image-name=compute si.post-action=shutdown'), {})
 *   // { client: { server: ['http://10.0.0.1:6969'], image: 'compute', … }, installer: { postAction: 'poweroff' }, … }
 */
export function resolveNodeInstallerSettings(
  kernel: ReadonlyMap<string, string>,
  env: NodeJS.ProcessEnv,
): NodeInstallerSettings {
  // si.dl-protocol / imageswarm.dl-protocol are the client's (torrent or http; the client
  // refuses SystemImager's others, rsync, ssh, flamethrower, with the values it takes).
  const { config: client, sources: clientSources } = resolveInstallParameters({
    flags: {},
    env,
    kernel,
  })
  const values: Record<string, string> = {}
  const installerSources: Record<string, string> = {}
  const notes: string[] = []
  if (client.downloadProtocol === 'http') {
    notes.push(
      `${clientSources.downloadProtocol?.name ?? 'si.dl-protocol'}=http: the archive comes over plain HTTP from the server, with no swarm`,
    )
  }
  notes.push(...trustNotes(client, clientSources))
  const known = [
    ...INSTALLER_PARAMETERS.flatMap((parameter) => parameter.kernel),
    ...RAMDISK_KERNEL_PARAMETERS,
  ]
  for (const unknown of unknownKernelParameters(kernel, known)) {
    notes.push(
      `unknown kernel parameter ${unknown.name} is ignored${unknown.suggestion ? ` (did you mean ${unknown.suggestion}=?)` : ''}`,
    )
  }
  for (const parameter of INSTALLER_PARAMETERS) {
    const name = parameter.kernel.find((candidate) => kernel.get(candidate))
    installerSources[parameter.key] = name ?? 'default'
    if (name === undefined) continue
    let value = kernel.get(name) as string
    if (parameter.key === 'postAction') {
      const alias = POST_ACTION_ALIASES[value]
      if (alias) {
        if (alias.note) notes.push(alias.note)
        value = alias.action
      }
    }
    values[parameter.key] = value
  }
  const parsed = InstallerConfigSchema.safeParse(values)
  if (!parsed.success) {
    const { key, message } = describeSchemaProblem(parsed.error, values)
    const name = installerSources[key] ?? key
    throw new ImageSwarmError(
      'E_CONFIG_INVALID',
      `invalid ${name}=${values[key] ?? ''}: ${message}`,
      {
        operation: 'read the kernel command line',
        path: name,
        hint:
          key === 'postAction'
            ? `give ${name}=reboot, poweroff (or shutdown), shell, or directboot`
            : `fix ${name}= on the kernel command line`,
      },
    )
  }
  const installer = parsed.data
  return { client, clientSources, installer, installerSources, notes }
}

/**
 * Console lines about what the node trusts (docs/trust.md): the insecure test mode is said
 * on the console, not only in the log; and with a root key, that the node config (disk
 * layout, overrides, post-install scripts) must be signed as well.
 */
function trustNotes(client: ClientConfig, sources: ResolvedParameters['sources']): string[] {
  if (client.trustRootKey !== undefined) {
    return [
      `INSECURE TEST MODE: trusting the root key given on the kernel command line (${sources.trustRootKey?.name ?? 'imageswarm.trust-root-key'}); anyone who answers this node's network boot can set it`,
    ]
  }
  if (client.trustRoot === undefined) return []
  return [
    `signed images only: root key ${client.trustRoot} (${sources.trustRoot?.source === 'environment' ? 'baked into this ramdisk' : (sources.trustRoot?.name ?? 'trust root')})`,
    'the node config (disk layout, overrides, post-install scripts) must be signed too, for this node and the image version',
  ]
}
