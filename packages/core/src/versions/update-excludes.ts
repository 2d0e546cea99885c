import { readFile } from 'node:fs/promises'
import { errnoOf, ImageSwarmError } from '../errors.js'

/**
 * What an update never touches on a node unless the node says otherwise: SystemImager's
 * `updateclient.local.exclude` (its 32 patterns, finley/SystemImager etc/), plus what this
 * project knows a node owns: ssh host keys, machine-id, the pseudo-filesystems, and
 * imageswarm's own record of the installed version and its update staging. Patterns are
 * rsync's as SystemImager wrote them: a leading `/` anchors at the root, `dir/*` is the
 * directory's contents (the directory itself is still updated), no leading `/` matches at
 * any depth.
 */
export const DEFAULT_UPDATE_EXCLUDES: readonly string[] = [
  // SystemImager's list.
  '/etc/mtab',
  '/proc/*',
  '/sys/*',
  '/var/lock/*',
  '/var/log/*',
  '/var/run/*',
  '/var/spool/*',
  '/etc/lvm/backup/*',
  '/etc/lvm/archive/*',
  '/etc/lvm/.cache',
  '*/.journal',
  '/boot/grub/device.map',
  '/etc/HOSTNAME',
  '/etc/sysconfig/network',
  '/etc/sysconfig/network-scripts/ifcfg-*',
  '/etc/hostname',
  '/etc/network/interfaces',
  '/cdrom/*',
  '/floppy/*',
  '/etc/adjtime',
  '/var/lib/dhcp/dhclient.leases',
  '/var/lib/dhcp3/dhclient.leases',
  '/var/lib/ntp/ntp.drift',
  '/var/lib/urandom/random-seed',
  '/var/lib/locate/locatedb',
  '/var/lib/nfs/*',
  '/media/*',
  '/lib/klibc/events/*',
  '/etc/fstab',
  '/home/*',
  '/mnt/*',
  '/tmp/*',
  // What SystemImager's rsync left out by other means, and what a node of today owns.
  'lost+found',
  '/dev/*',
  '/run/*',
  '/var/tmp/*',
  '/etc/ssh/ssh_host_*',
  '/etc/machine-id',
  '/var/lib/dbus/machine-id',
  '/var/lib/systemd/random-seed',
  '/etc/systemimager/updateclient.local.exclude',
  '/etc/imageswarm/installed.json',
  '/var/lib/imageswarm/*',
]

/** The node's own list, as SystemImager keeps it. */
export const NODE_UPDATE_EXCLUDE_FILE = 'etc/systemimager/updateclient.local.exclude'

/**
 * A set of exclude patterns compiled for index paths (`etc/passwd`, the root is `.`).
 *
 * @example new UpdateExcludes(['/var/log/*']).excludes('var/log/syslog') // true
 */
export class UpdateExcludes {
  readonly patterns: readonly string[]
  readonly #matchers: RegExp[]

  constructor(patterns: readonly string[]) {
    this.patterns = [...new Set(patterns.map((p) => p.trim()).filter((p) => p !== ''))]
    this.#matchers = this.patterns.map(compilePattern)
  }

  /** True when `path` or one of its parent directories matches a pattern. */
  excludes(path: string): boolean {
    if (path === '.') return false
    const parts = path.split('/')
    for (let depth = 1; depth <= parts.length; depth++) {
      const prefix = parts.slice(0, depth).join('/')
      if (this.#matchers.some((matcher) => matcher.test(prefix))) return true
    }
    return false
  }

  /** This set with more patterns (the server's, the node's). */
  with(patterns: readonly string[]): UpdateExcludes {
    return new UpdateExcludes([...this.patterns, ...patterns])
  }
}

/** Lines of an exclude file: `#` comments and blank lines dropped. */
export function parseUpdateExcludes(text: string): string[] {
  return text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
}

/** The patterns of an exclude file; a missing file is none. */
export async function readUpdateExcludeFile(path: string, required: boolean): Promise<string[]> {
  try {
    return parseUpdateExcludes(await readFile(path, 'utf8'))
  } catch (err) {
    if (!required && errnoOf(err) === 'ENOENT') return []
    throw new ImageSwarmError(
      'E_USAGE',
      `cannot read exclude file ${path}: ${errnoOf(err) ?? String(err)}`,
      { operation: 'update', path, hint: 'check the exclude file path', cause: err },
    )
  }
}

/** rsync's pattern as a regular expression over a whole index path. */
function compilePattern(pattern: string): RegExp {
  const anchored = pattern.startsWith('/')
  const body = pattern.replace(/^\/+/, '').replace(/\/+$/, '')
  let source = ''
  for (let i = 0; i < body.length; i++) {
    const char = body[i]!
    if (char === '*' && body[i + 1] === '*') {
      source += '.*'
      i++
    } else if (char === '*') source += '[^/]*'
    else if (char === '?') source += '[^/]'
    else source += char.replace(/[.+^${}()|[\]\\]/g, '\\$&')
  }
  return new RegExp(anchored ? `^${source}$` : `(^|/)${source}$`)
}
