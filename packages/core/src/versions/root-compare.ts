import { lstat, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { checkAgainstIndex } from '../archive/apply-members.js'
import type { FileIndexEntry } from '../archive/file-index.js'
import { hardlinkGroups } from './index-diff.js'
import type { UpdateExcludes } from './update-excludes.js'

/** How a node's root differs from a version's file index. */
export interface RootDifference {
  /** Index entries to write (whole hardlink groups), in the index's order, with why. */
  write: { entry: FileIndexEntry; reason: string }[]
  /** Paths on the node that the index does not have (their subtrees go with them). */
  remove: string[]
  /** Index entries that matched. */
  unchanged: number
}

/**
 * Compares a node's root with a version's file index, leaving out what `excludes` covers:
 * each entry's type, mode, owner, size, mtime and symlink target (and, with `checksum`,
 * every regular file's SHA-256, as rsync's `--checksum`), hard links by inode; and every
 * path on the node that the index lacks. The metadata of a mount point (a directory on
 * another filesystem than its parent: /proc, /boot) is its filesystem's, so it is not
 * compared. Without `checksum` a file changed in place with its size and mtime kept is not
 * found, as with rsync. Names that are not UTF-8 are left out (see isUndecodable).
 *
 * @example const { write, remove } = await compareRootWithIndex({ target: '/', entries, excludes })
 */
export async function compareRootWithIndex(options: {
  target: string
  entries: readonly FileIndexEntry[]
  excludes: UpdateExcludes
  checksum?: boolean
  /** Paths the node owns (its install record, its update staging): never removed, nor the
   * directories that lead to them. */
  keep?: readonly string[]
}): Promise<RootDifference> {
  const { target, excludes } = options
  const entries = options.entries.filter(
    (entry) => !excludes.excludes(entry.path) && !isUndecodable(entry.path),
  )
  const byPath = new Map(entries.map((entry) => [entry.path, entry]))
  const groups = hardlinkGroups(entries)
  const reasons = new Map<string, string>()
  const devices = new Map<string, bigint>()
  let unchanged = 0
  for (const entry of entries) {
    let reason: string | undefined
    if (entry.type === 'directory') {
      const st = await lstat(join(target, entry.path), { bigint: true }).catch(() => undefined)
      if (st?.isDirectory()) devices.set(entry.path, st.dev)
      const parent = entry.path === '.' ? undefined : devices.get(parentOf(entry.path))
      const mountPoint = st !== undefined && parent !== undefined && st.dev !== parent
      if (!mountPoint) reason = await checkAgainstIndex(target, entry.path, entry, false)
    } else {
      reason = await checkAgainstIndex(target, entry.path, entry, options.checksum === true)
    }
    if (reason === undefined && entry.hardlinkTo !== undefined) {
      const [mine, leader] = await Promise.all([
        lstat(join(target, entry.path), { bigint: true }).catch(() => undefined),
        lstat(join(target, entry.hardlinkTo), { bigint: true }).catch(() => undefined),
      ])
      if (mine?.ino !== leader?.ino || mine?.dev !== leader?.dev) {
        reason = `not a hard link of ${entry.hardlinkTo}`
      }
    }
    if (reason === undefined) unchanged++
    else reasons.set(entry.path, reason)
  }
  // A hardlink group is written whole: tar links each later name to the first.
  for (const path of [...reasons.keys()]) {
    for (const member of groups.get(path) ?? []) {
      if (!reasons.has(member)) {
        reasons.set(member, `in the hardlink group of ${path}`)
        unchanged--
      }
    }
  }
  const write = entries
    .filter((entry) => reasons.has(entry.path))
    .map((entry) => ({ entry, reason: reasons.get(entry.path)! }))

  // What the node has that the index does not: below directories the index has.
  const remove: string[] = []
  for (const entry of entries) {
    if (entry.type !== 'directory') continue
    const names = await readdir(join(target, entry.path)).catch(() => [] as string[])
    for (const name of names.sort()) {
      const path = entry.path === '.' ? name : `${entry.path}/${name}`
      // A staged member left by an interrupted update is not in the index either.
      const leadsToKept = (options.keep ?? []).some(
        (kept) => kept === path || kept.startsWith(`${path}/`),
      )
      if (!byPath.has(path) && !excludes.excludes(path) && !leadsToKept && !isUndecodable(path)) {
        remove.push(path)
      }
    }
  }
  return { write, remove, unchanged }
}

/**
 * A name that is not UTF-8 reaches the index (and readdir) with U+FFFD in place of its
 * bytes: it cannot be named to tar or the filesystem again, so an update leaves it as it is.
 */
export function isUndecodable(path: string): boolean {
  return path.includes('\uFFFD')
}

function parentOf(path: string): string {
  const at = path.lastIndexOf('/')
  return at === -1 ? '.' : path.slice(0, at)
}
