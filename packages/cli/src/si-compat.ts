import { ImageSwarmError } from '@imageswarm/core'
import type { BittorrentConf } from './si-bittorrent-conf.js'

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
  /** Goes before the subcommand (`--log-level`, `--version`): a program-wide option. */
  global?: boolean
  /** SystemImager's flag has no counterpart here: refused with this hint. */
  unsupported?: string
  /** Accepted, with nothing to do here: this note is printed instead. */
  note?: (value: string | undefined) => string
}

/**
 * SystemImager's `--overrides` packed override directories into `override-NAME.tar` and
 * made a torrent of each; imageswarm's server hands overrides to nodes itself.
 */
const overridesNote = (value: string | undefined) =>
  `--overrides ${value ?? ''}: nothing to prepare; imageswarm serve hands each override out as ` +
  'GET /install/overrides/NAME.tar from --overrides-dir (packed when a node first asks), ' +
  "and the installer applies the node's overrides in SystemImager's order"

const HELP: FlagMapping = { to: ['--help'], takesValue: false }
const VERSION: FlagMapping = { to: ['--version'], takesValue: false, global: true }

const MAPPINGS: Record<
  SystemImagerCommand,
  { command: string; flags: Record<string, FlagMapping> }
> = {
  // si_startbttrack --image_server IP --image NAME[,NAME] [--update_image]: SystemImager's
  // `/etc/init.d/systemimager-server-bittorrent start` (tracker and first seeder).
  si_startbttrack: {
    command: 'serve',
    flags: {
      '--image_server': { to: ['--address'], takesValue: true },
      '--image': { to: ['--image'], takesValue: true },
      '--images': { to: ['--image'], takesValue: true },
      '--update_image': { to: ['--update-image'], takesValue: false },
      '--verbose': { to: ['--log-level', 'debug'], takesValue: false, global: true },
      '--help': HELP,
      '--version': VERSION,
    },
  },
  // si_stopbttrack
  si_stopbttrack: {
    command: 'stop',
    flags: { '--help': HELP, '--version': VERSION },
  },
  // si_installbtimage --images A,B [--overrides X,Y] [--update] [--compress] [--quiet]
  si_installbtimage: {
    command: 'publish',
    flags: {
      '--images': { to: ['--image'], takesValue: true },
      '--image': { to: ['--image'], takesValue: true },
      '--overrides': { to: [], takesValue: true, note: overridesNote },
      '--update': { to: ['--update-image'], takesValue: false },
      // SystemImager stored uncompressed tarballs (image-NAME.tar) unless --compress was
      // given, and then gzip (`tar -czSpf image-NAME.tar.gz`): the same here.
      '--compress': { to: ['--compression', 'gzip'], takesValue: false },
      '--quiet': { to: ['--log-level', 'warn'], takesValue: false, global: true },
      '--help': HELP,
      '--version': VERSION,
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
      '--help': HELP,
      '--version': VERSION,
    },
  },
}

/** SystemImager's command names and the imageswarm command each runs (the man pages). */
export const SYSTEMIMAGER_COMMANDS: Readonly<Record<string, string>> = Object.fromEntries(
  Object.entries(MAPPINGS).map(([name, mapping]) => [name, mapping.command]),
)

/** A SystemImager command line as imageswarm arguments, and what to tell the user about it. */
export interface SystemImagerTranslation {
  args: string[]
  /** Notes for stderr: flags and settings accepted with nothing to do, unknown config keys. */
  notes: string[]
}

/**
 * Translates a SystemImager command line into `imageswarm` arguments.
 *
 * @example translateSystemImagerArgs('si_installbtimage', ['--images', 'a']) // ['publish', '--image', 'a', '--compression', 'none']
 */
export function translateSystemImagerArgs(
  command: SystemImagerCommand,
  argv: readonly string[],
): string[] {
  return translateSystemImagerCommand(command, argv).args
}

/**
 * Translates a SystemImager command line, the way SystemImager's Perl `Getopt::Long` read
 * it (its defaults, which si_installbtimage kept): an option may be abbreviated to any
 * unique prefix (`--comp`), matched without regard to case, introduced by `-` as well as
 * `--` (`-images a`), and given its value after `=` or as the next argument; `--` ends the
 * options. An ambiguous prefix is refused with the options it could mean.
 *
 * `conf` is `/etc/systemimager/bittorrent.conf` as read (`readBittorrentConf`): its
 * settings fill what the command line leaves out, as SystemImager's init script and
 * si_installbtimage used them; flags win over the file.
 */
export function translateSystemImagerCommand(
  command: SystemImagerCommand,
  argv: readonly string[],
  conf?: BittorrentConf,
): SystemImagerTranslation {
  const mapping = MAPPINGS[command]
  const global: string[] = []
  const local: string[] = []
  const notes: string[] = []
  const given = new Set<string>()
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === '--') {
      if (i + 1 < argv.length) throw unexpectedArgument(command, argv[i + 1]!)
      break
    }
    if (!arg.startsWith('-') || arg === '-') throw unexpectedArgument(command, arg)
    const body = arg.replace(/^--?/, '')
    const eq = body.indexOf('=')
    const typed = eq === -1 ? body : body.slice(0, eq)
    const name = resolveFlag(command, mapping.flags, typed, arg)
    const flag = mapping.flags[name]!
    if (flag.unsupported !== undefined) {
      throw new ImageSwarmError('E_USAGE', `${command}: ${name} is not supported`, {
        path: name,
        hint: flag.unsupported,
      })
    }
    given.add(name)
    const target = flag.global ? global : local
    if (!flag.takesValue) {
      if (eq !== -1) {
        throw new ImageSwarmError('E_USAGE', `${command}: ${name} does not take a value`, {
          path: arg,
          hint: `give ${name} alone`,
        })
      }
      if (flag.note) notes.push(flag.note(undefined))
      target.push(...flag.to)
      continue
    }
    const value = eq !== -1 ? body.slice(eq + 1) : argv[++i]
    if (value === undefined) {
      throw new ImageSwarmError('E_USAGE', `${command}: ${name} needs a value`, {
        path: name,
        hint: `for example ${name} VALUE or ${name}=VALUE`,
      })
    }
    if (flag.note) notes.push(flag.note(value))
    if (flag.to.length > 0) target.push(...flag.to, value)
  }
  if (conf) applyConf(command, conf, given, local, notes)
  if (command === 'si_installbtimage' && !given.has('--compress')) {
    local.push('--compression', 'none')
  }
  return { args: [...global, mapping.command, ...local], notes: [...(conf?.notes ?? []), ...notes] }
}

/**
 * The settings of bittorrent.conf a command line did not give. SystemImager's
 * si_installbtimage took the tracker port and the interface's address for the torrents'
 * announce URL; its init script (si_startbttrack here) ran the tracker on the port and,
 * for BT_IMAGES, si_installbtimage with BT_COMPRESS and BT_OVERRIDES. BT_COMPRESS applies
 * only to the images named by BT_IMAGES, as it did there: images named on the command
 * line are served as they were published (no repacking of an existing archive).
 */
function applyConf(
  command: SystemImagerCommand,
  conf: BittorrentConf,
  given: ReadonlySet<string>,
  local: string[],
  notes: string[],
): void {
  if (command !== 'si_startbttrack' && command !== 'si_installbtimage') return
  if (conf.trackerPort !== undefined) local.push('--port', String(conf.trackerPort))
  if (conf.interfaceAddress !== undefined && !given.has('--image_server')) {
    local.push('--advertise-address', conf.interfaceAddress)
  }
  if (command !== 'si_startbttrack') return
  const imagesGiven = given.has('--image') || given.has('--images')
  if (!imagesGiven && conf.images.length > 0) {
    local.push('--image', conf.images.join(','))
    if (conf.compress !== undefined) {
      local.push('--compression', conf.compress ? 'gzip' : 'none')
    }
    if (conf.overrides.length > 0)
      notes.push(`BT_OVERRIDES: ${overridesNote(conf.overrides.join(','))}`)
  }
}

/**
 * The flag `typed` (without its dashes) names: an exact match (any case), else the one
 * flag it is a prefix of; refused when it is a prefix of none or of several.
 */
function resolveFlag(
  command: SystemImagerCommand,
  flags: Record<string, FlagMapping>,
  typed: string,
  arg: string,
): string {
  const wanted = `--${typed.toLowerCase()}`
  const names = Object.keys(flags)
  if (typed !== '' && flags[wanted]) return wanted
  const candidates = typed === '' ? [] : names.filter((name) => name.startsWith(wanted))
  // imageswarm's aliases (`--image` beside `--images`) do not make a prefix ambiguous.
  const meanings = new Set(
    candidates.map((name) => {
      const { to } = flags[name]!
      return to.length === 0 ? name : JSON.stringify(to)
    }),
  )
  if (candidates.length > 0 && meanings.size === 1) return candidates[0]!
  if (candidates.length > 1) {
    throw new ImageSwarmError(
      'E_USAGE',
      `${command}: option ${JSON.stringify(arg)} is ambiguous: ${candidates.join(', ')}`,
      { path: arg, hint: 'type more of the option name' },
    )
  }
  throw new ImageSwarmError('E_USAGE', `${command}: unknown option ${JSON.stringify(arg)}`, {
    path: arg,
    hint: `${command} accepts ${names.join(', ')} (abbreviated to any unique prefix)`,
  })
}

function unexpectedArgument(command: SystemImagerCommand, arg: string): ImageSwarmError {
  return new ImageSwarmError('E_USAGE', `${command}: unexpected argument ${JSON.stringify(arg)}`, {
    path: arg,
    hint: `${command} takes options only (${command} --help)`,
  })
}
