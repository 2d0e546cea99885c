import { dirname } from 'node:path'
import {
  type FileIndexEntry,
  isUndecodable,
  type Logger,
  type RootDifference,
  type UpdateExcludes,
  type UpdatePlan,
  withHardlinkGroups,
} from '@imageswarm/core'

// What an update writes and removes, beyond what the comparison found, and how it says so.

/** Adds these index paths to what the update writes (whole hardlink groups), in index order. */
export function addToWrite(
  difference: RootDifference,
  entries: readonly FileIndexEntry[],
  paths: readonly string[],
  excludes: UpdateExcludes,
): void {
  const writing = new Set(difference.write.map(({ entry }) => entry.path))
  const wanted = new Set(writing)
  for (const path of paths) if (!excludes.excludes(path) && !isUndecodable(path)) wanted.add(path)
  if (wanted.size === writing.size) return
  const reasons = new Map(difference.write.map(({ entry, reason }) => [entry.path, reason]))
  const byPath = new Map(entries.map((entry) => [entry.path, entry]))
  difference.write = withHardlinkGroups(entries, wanted)
    .filter((path) => !excludes.excludes(path))
    .map((path) => ({
      entry: byPath.get(path)!,
      reason: reasons.get(path) ?? 'changed in the image, or not comparable on the node',
    }))
}

/**
 * Directories whose mtime the update disturbs (it renames into or removes from them) and
 * that are not themselves to be written: their mtimes are put back afterwards.
 */
export function directoriesTouched(
  difference: RootDifference,
  entries: readonly FileIndexEntry[],
  excludes: UpdateExcludes,
): FileIndexEntry[] {
  const writing = new Set(difference.write.map(({ entry }) => entry.path))
  const parents = new Set<string>()
  for (const path of [...writing, ...difference.remove]) {
    const parent = dirname(path)
    parents.add(parent === '' ? '.' : parent)
  }
  return entries.filter(
    (entry) =>
      entry.type === 'directory' &&
      parents.has(entry.path) &&
      !writing.has(entry.path) &&
      !excludes.excludes(entry.path),
  )
}

export function uniqueByPath(entries: readonly FileIndexEntry[]): FileIndexEntry[] {
  return [...new Map(entries.map((entry) => [entry.path, entry])).values()]
}

export function logPlan(plan: UpdatePlan, difference: RootDifference, logger: Logger): void {
  logger.info(
    {
      image: plan.image,
      from: plan.from,
      to: plan.to,
      write: plan.write,
      remove: plan.remove,
      unchanged: difference.unchanged,
      source: plan.source,
      byFile: plan.byFile,
    },
    plan.source === 'none'
      ? `the root holds version ${plan.to}: nothing to update`
      : `update to version ${plan.to}: ${plan.write} entries to write, ${plan.remove} to remove (from the ${plan.source === 'image' ? 'full image' : plan.source === 'delta' ? `delta from version ${plan.from}` : 'server, by file'})`,
  )
}
