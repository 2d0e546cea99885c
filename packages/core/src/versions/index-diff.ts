import { basename } from 'node:path'
import type { FileIndexEntry } from '../archive/file-index.js'
import type { ReferenceFile } from './documents.js'

/** What a delta from one version to the next holds. */
export interface IndexDiff {
  /** Paths of the new version's members that differ, in the new index's (archive) order. */
  members: string[]
  /** Paths of the old version that the new one no longer has, in the old index's order. */
  removals: string[]
  /** Old regular files whose contents the new members likely share, in the old index's order. */
  reference: ReferenceFile[]
}

/** zstd's `--patch-from` reference cannot pass 2 GiB (window log 31); kept well under. */
export const REFERENCE_LIMIT = 1 << 30

/** Every field of an entry that an install sets. */
function sameEntry(a: FileIndexEntry, b: FileIndexEntry): boolean {
  return (
    a.type === b.type &&
    a.mode === b.mode &&
    a.uid === b.uid &&
    a.gid === b.gid &&
    a.size === b.size &&
    a.mtime === b.mtime &&
    a.sha256 === b.sha256 &&
    a.linkTarget === b.linkTarget &&
    a.hardlinkTo === b.hardlinkTo &&
    a.attributes === b.attributes
  )
}

/**
 * The hardlink group of every path that belongs to one, named by its first member (the
 * one the others' `hardlinkTo` names). A group is written whole or not at all: tar links
 * a later member to the first one it extracted.
 */
export function hardlinkGroups(entries: readonly FileIndexEntry[]): Map<string, string[]> {
  const groups = new Map<string, string[]>()
  for (const entry of entries) {
    if (entry.hardlinkTo === undefined) continue
    const group = groups.get(entry.hardlinkTo) ?? [entry.hardlinkTo]
    group.push(entry.path)
    groups.set(entry.hardlinkTo, group)
  }
  const byPath = new Map<string, string[]>()
  for (const group of groups.values()) for (const path of group) byPath.set(path, group)
  return byPath
}

/**
 * The paths of `entries` to write when `wanted` must be written: whole hardlink groups,
 * in the index's order.
 */
export function withHardlinkGroups(
  entries: readonly FileIndexEntry[],
  wanted: ReadonlySet<string>,
): string[] {
  const groups = hardlinkGroups(entries)
  const closed = new Set(wanted)
  for (const path of wanted) for (const member of groups.get(path) ?? []) closed.add(member)
  return entries.filter((entry) => closed.has(entry.path)).map((entry) => entry.path)
}

/**
 * What changed from `older` to `newer` (two file indexes of one image): the members to ship
 * with their full metadata, the removals, and the reference zstd compresses the members
 * against. The reference is the old contents of each changed regular file at the same path,
 * or, for a new path, of a removed file with the same name and the nearest size (a kernel's
 * modules moved to a new version's directory); each old file at most once, up to
 * REFERENCE_LIMIT bytes.
 *
 * @example const { members, removals, reference } = diffFileIndexes(v1.entries, v3.entries)
 */
export function diffFileIndexes(
  older: readonly FileIndexEntry[],
  newer: readonly FileIndexEntry[],
): IndexDiff {
  const oldByPath = new Map(older.map((entry) => [entry.path, entry]))
  const newPaths = new Set(newer.map((entry) => entry.path))
  const changed = new Set<string>()
  for (const entry of newer) {
    const previous = oldByPath.get(entry.path)
    if (previous === undefined || !sameEntry(previous, entry)) changed.add(entry.path)
  }
  const members = withHardlinkGroups(newer, changed)
  const removals = older.filter((entry) => !newPaths.has(entry.path)).map((entry) => entry.path)

  // Removed regular files by name, for new paths that have no old file of their own.
  const removedByName = new Map<string, FileIndexEntry[]>()
  for (const entry of older) {
    if (newPaths.has(entry.path) || !isReferenceable(entry)) continue
    const name = basename(entry.path)
    removedByName.set(name, [...(removedByName.get(name) ?? []), entry])
  }
  const chosen = new Set<string>()
  const newByPath = new Map(newer.map((entry) => [entry.path, entry]))
  for (const path of members) {
    const entry = newByPath.get(path)!
    if (entry.type !== 'file' || entry.size === 0) continue
    const same = oldByPath.get(path)
    let source: FileIndexEntry | undefined
    if (same !== undefined && isReferenceable(same)) source = same
    else if (same === undefined) {
      const candidates = (removedByName.get(basename(path)) ?? []).filter(
        (candidate) => !chosen.has(candidate.path),
      )
      source = candidates.sort(
        (a, b) => Math.abs(a.size - entry.size) - Math.abs(b.size - entry.size),
      )[0]
    }
    if (source !== undefined) chosen.add(source.path)
  }
  const reference: ReferenceFile[] = []
  let total = 0
  for (const entry of older) {
    if (!chosen.has(entry.path) || entry.sha256 === undefined) continue
    if (total + entry.size > REFERENCE_LIMIT) break
    total += entry.size
    reference.push({ path: entry.path, size: entry.size, sha256: entry.sha256 })
  }
  return { members, removals, reference }
}

/** A regular file with contents of its own in the archive (not a hard link to another). */
function isReferenceable(entry: FileIndexEntry): boolean {
  return entry.type === 'file' && entry.size > 0 && entry.sha256 !== undefined
}
