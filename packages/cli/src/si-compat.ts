import { ImageSwarmError } from '@imageswarm/core'

/**
 * SystemImager's BitTorrent commands, kept so existing scripts and habits work:
 * their flags are translated to the `imageswarm` command they correspond to.
 */
export type SystemImagerCommand =
  | 'si_startbttrack'
  | 'si_stopbttrack'
  | 'si_installbtimage'
  | 'si_updateclient'

interface FlagMapping {
  /** imageswarm flag(s) it becomes; a boolean flag maps without a value. */
  to: readonly string[]
  takesValue: boolean
  /** SystemImager's flag has no counterpart here: refused with this hint. */
  unsupported?: string
}

const MAPPINGS: Record<
  SystemImagerCommand,
  { command: string; flags: Record<string, FlagMapping> }
> = {
  // si_startbttrack --image_server IP --image NAME[,NAME] [--update_image]
  si_startbttrack: {
    command: 'serve',
    flags: {
      '--image_server': { to: ['--address'], takesValue: true },
      '--image': { to: ['--image'], takesValue: true },
      '--images': { to: ['--image'], takesValue: true },
      '--update_image': { to: ['--update-image'], takesValue: false },
      '--verbose': { to: ['--log-level', 'debug'], takesValue: false },
      '--help': { to: ['--help'], takesValue: false },
    },
  },
  // si_stopbttrack
  si_stopbttrack: {
    command: 'stop',
    flags: { '--help': { to: ['--help'], takesValue: false } },
  },
  // si_installbtimage --images A,B [--update] [--compress]
  si_installbtimage: {
    command: 'publish',
    flags: {
      '--images': { to: ['--image'], takesValue: true },
      '--image': { to: ['--image'], takesValue: true },
      '--update': { to: ['--update-image'], takesValue: false },
      // SystemImager stored uncompressed tarballs unless --compress was given; with it,
      // imageswarm uses its default compression (zstd: faster and smaller than gzip).
      '--compress': { to: ['--compression', 'zstd'], takesValue: false },
      '--quiet': { to: ['--log-level', 'warn'], takesValue: false },
      '--help': { to: ['--help'], takesValue: false },
    },
  },
  // si_updateclient --server HOST [--image NAME] [--directory DIR] [--dry-run] [--no-delete]
  si_updateclient: {
    command: 'update',
    flags: {
      '--server': { to: ['--server'], takesValue: true },
      '--image': { to: ['--image'], takesValue: true },
      '--directory': { to: ['--target'], takesValue: true },
      '--dry-run': { to: ['--dry-run'], takesValue: false },
      '--no-delete': { to: ['--no-delete'], takesValue: false },
      // imageswarm never prompts; the bootloader is not run again by an update.
      '--yes': { to: [], takesValue: false },
      '--no-bootloader': { to: [], takesValue: false },
      '--override': {
        to: [],
        takesValue: true,
        unsupported:
          'overrides are applied at install; put the change into the image and publish it',
      },
      '--autoinstall': {
        to: [],
        takesValue: false,
        unsupported: 'reinstall the node by network boot (imageswarm serve answers its iPXE)',
      },
      '--reboot': {
        to: [],
        takesValue: false,
        unsupported: 'reboot after the update yourself (si_updateclient ... && systemctl reboot)',
      },
      '--help': { to: ['--help'], takesValue: false },
    },
  },
}

/** Translates a SystemImager command line into `imageswarm` arguments. */
export function translateSystemImagerArgs(
  command: SystemImagerCommand,
  argv: readonly string[],
): string[] {
  const mapping = MAPPINGS[command]
  const global: string[] = []
  const local: string[] = []
  let compress = false
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    const eq = arg.indexOf('=')
    const name = arg.startsWith('--') && eq !== -1 ? arg.slice(0, eq) : arg
    const flag = mapping.flags[name]
    if (!flag) {
      throw new ImageSwarmError('E_USAGE', `${command}: unknown option ${JSON.stringify(arg)}`, {
        path: arg,
        hint: `${command} accepts ${Object.keys(mapping.flags).join(', ')}`,
      })
    }
    if (flag.unsupported !== undefined) {
      throw new ImageSwarmError('E_USAGE', `${command}: ${name} is not supported`, {
        path: name,
        hint: flag.unsupported,
      })
    }
    if (name === '--compress') compress = true
    const target = flag.to[0] === '--log-level' ? global : local
    if (!flag.takesValue) {
      target.push(...flag.to)
      continue
    }
    const value = eq !== -1 ? arg.slice(eq + 1) : argv[++i]
    if (value === undefined) {
      throw new ImageSwarmError('E_USAGE', `${command}: ${name} needs a value`, { path: name })
    }
    target.push(...flag.to, value)
  }
  if (command === 'si_installbtimage' && !compress) local.push('--compression', 'none')
  return [...global, mapping.command, ...local]
}
