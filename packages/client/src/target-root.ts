import { execFile } from 'node:child_process'
import { constants } from 'node:fs'
import {
  access,
  type FileHandle,
  lstat,
  mkdir,
  open,
  readdir,
  rm,
  stat,
  unlink,
  writeFile,
} from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import {
  errnoOf,
  IGNORED_TARGET_ENTRIES,
  type ImageManifest,
  ImageSwarmError,
  INCOMPLETE_MARKER,
} from '@imageswarm/core'
import { z } from 'zod'

// A freshly made filesystem has lost+found; nothing else may be in a target we fill. The
// same names extraction treats as not making the target non-empty.
const ALLOWED_IN_EMPTY_TARGET = new Set(IGNORED_TARGET_ENTRIES)

/** Staging on the target disk (`/a/tmp/imageswarm-NAME`), see staging.ts. */
export const TARGET_STAGING_PREFIX = 'imageswarm-'

/**
 * What the incomplete marker records: which archive an unfinished install was putting
 * into the target, so that a later run extracts over it only the same archive.
 */
export interface IncompleteInstall {
  image: string
  infoHash: string
  /** When the extraction started (ISO 8601). */
  started: string
  /** The target held nothing but lost+found and our staging when the install began
   * (false: `--force` over existing files, which cannot be told from what we wrote). */
  targetWasEmpty: boolean
}

const IncompleteInstallSchema = z.object({
  image: z.string(),
  infoHash: z.string().regex(/^[0-9a-f]{40}$/),
  started: z.string(),
  targetWasEmpty: z.boolean(),
})

/** The marker is read only while it is this small (extraction's own rule for kept files). */
const MARKER_SIZE_LIMIT = 64 * 1024

export interface PreparedTarget {
  /** Nothing but lost+found and our staging was there; recorded in the marker. */
  targetWasEmpty: boolean
  /** An interrupted install of this very archive, extracted over. */
  resumed?: IncompleteInstall
  /** An interrupted install of another archive (or of an older client, which did not
   * record one) was removed: the top-level entries it left, and what its marker said. */
  startedOver?: { previous?: IncompleteInstall; removed: string[] }
}

/**
 * Makes sure the target root exists, is writable and is empty, so an image is never
 * silently mixed into an old root. Allowed: `lost+found`, our own staging under `tmp/`,
 * and, with `force`, anything. A target that holds our incomplete marker holds an
 * interrupted install:
 *
 * - of the same archive (infohash): it is extracted over, as the archive has the same
 *   bytes (tar replaces every file it wrote);
 * - of another archive, or from a client too old to record one: extracting over it would
 *   leave files only the old archive had, so what it wrote is removed first (everything
 *   but lost+found and our staging) and the install starts over;
 * - of another archive, forced over existing files: what it wrote cannot be told from
 *   what was there, so the target is refused (E_TARGET_NOT_EMPTY), even with `force`.
 */
export async function prepareTargetRoot(
  target: string,
  force: boolean,
  manifest: Pick<ImageManifest, 'name' | 'infoHash'>,
): Promise<PreparedTarget> {
  try {
    await mkdir(target, { recursive: true })
    const st = await stat(target)
    if (!st.isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' })
    await access(target, constants.W_OK)
  } catch (err) {
    throw new ImageSwarmError('E_TARGET_NOT_WRITABLE', `target root ${target} is not writable`, {
      operation: 'prepare target root',
      path: target,
      hint: 'mount the new system’s root filesystem there, writable (SystemImager uses /a)',
      cause: err,
    })
  }
  const marker = await readIncompleteMarker(target)
  if (marker.found) {
    const previous = marker.install
    if (previous?.infoHash === manifest.infoHash) {
      return { targetWasEmpty: previous.targetWasEmpty, resumed: previous }
    }
    if (previous && !previous.targetWasEmpty) {
      throw new ImageSwarmError(
        'E_TARGET_NOT_EMPTY',
        `target root ${target} holds an interrupted install of image ${previous.image} (infohash ${previous.infoHash}, started ${previous.started}), forced over files that were there; image ${manifest.name} is now infohash ${manifest.infoHash}`,
        {
          operation: 'prepare target root',
          path: target,
          hint: 'what that install wrote cannot be told from what was there: make the filesystem again (or empty it) and run the install again',
        },
      )
    }
    const removed = await removeInterruptedInstall(target)
    return { targetWasEmpty: true, startedOver: { ...(previous ? { previous } : {}), removed } }
  }
  const leftovers: string[] = []
  for (const name of await readdir(target)) {
    if (ALLOWED_IN_EMPTY_TARGET.has(name)) continue
    if (name === 'tmp' && (await holdsOnlyStaging(join(target, 'tmp')))) continue
    leftovers.push(name)
  }
  if (leftovers.length > 0 && !force) {
    throw new ImageSwarmError(
      'E_TARGET_NOT_EMPTY',
      `target root ${target} is not empty (${leftovers.slice(0, 5).join(', ')}${leftovers.length > 5 ? ', …' : ''})`,
      {
        operation: 'prepare target root',
        path: target,
        hint: 'install into an empty, freshly made filesystem, or pass --force to write over it',
      },
    )
  }
  return { targetWasEmpty: leftovers.length === 0 }
}

async function holdsOnlyStaging(dir: string): Promise<boolean> {
  try {
    return (await readdir(dir)).every((name) => name.startsWith(TARGET_STAGING_PREFIX))
  } catch {
    return false
  }
}

/**
 * Removes what an interrupted install wrote: every entry of the target but lost+found
 * and our staging (`tmp/imageswarm-*`, whose partial archive the download resumes from,
 * piece by piece, checking each), then the marker, last, so that a run killed halfway
 * through still finds it. Returns the top-level names removed.
 */
async function removeInterruptedInstall(target: string): Promise<string[]> {
  const removed: string[] = []
  for (const name of await readdir(target)) {
    if (name === INCOMPLETE_MARKER || ALLOWED_IN_EMPTY_TARGET.has(name)) continue
    const path = join(target, name)
    if (name === 'tmp' && (await lstat(path)).isDirectory()) {
      let keptStaging = false
      for (const child of await readdir(path)) {
        if (child.startsWith(TARGET_STAGING_PREFIX)) keptStaging = true
        else await removeEntry(join(path, child))
      }
      if (keptStaging) {
        removed.push('tmp/* (but our staging)')
        continue
      }
    }
    await removeEntry(path)
    removed.push(name)
  }
  await removeEntry(join(target, INCOMPLETE_MARKER))
  return removed
}

async function removeEntry(path: string): Promise<void> {
  try {
    await rm(path, { recursive: true, force: true })
  } catch (err) {
    throw new ImageSwarmError(
      'E_TARGET_NOT_WRITABLE',
      `cannot remove ${path}, left by an interrupted install of another archive: ${errnoOf(err) ?? String(err)}`,
      {
        operation: 'start the target root over',
        path,
        hint: 'make the target’s filesystem again (or empty it, unmounting anything mounted inside) and run the install again',
        cause: err,
      },
    )
  }
}

/**
 * Written before extraction starts: says which archive is being extracted, for the next
 * run to tell an interrupted install of the same archive from one of another.
 */
export async function markIncomplete(
  target: string,
  install: Omit<IncompleteInstall, 'started'>,
): Promise<void> {
  const record: IncompleteInstall & { note: string } = {
    note: 'imageswarm started installing an image here and has not finished',
    image: install.image,
    infoHash: install.infoHash,
    started: new Date().toISOString(),
    targetWasEmpty: install.targetWasEmpty,
  }
  await writeFile(join(target, INCOMPLETE_MARKER), `${JSON.stringify(record, null, 2)}\n`)
}

/**
 * Reads the incomplete marker: `found` when there is one; `install` when it records an
 * archive (a marker written by an older client, or damaged, does not).
 */
export async function readIncompleteMarker(
  target: string,
): Promise<{ found: boolean; install?: IncompleteInstall }> {
  const path = join(target, INCOMPLETE_MARKER)
  let handle: FileHandle
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK)
  } catch (err) {
    const code = errnoOf(err)
    if (code === 'ENOENT') return { found: false }
    // A symlink (ELOOP) or something unreadable in its place still says "unfinished".
    return { found: true }
  }
  try {
    const st = await handle.stat()
    if (!st.isFile() || st.size > MARKER_SIZE_LIMIT) return { found: true }
    const parsed = IncompleteInstallSchema.safeParse(JSON.parse(await handle.readFile('utf8')))
    return parsed.success ? { found: true, install: parsed.data } : { found: true }
  } catch {
    return { found: true }
  } finally {
    await handle.close()
  }
}

/** Nanosecond mtimes of directories, to put back after we add and remove files in them. */
export type DirectoryTimes = Map<string, bigint>

export async function captureTimes(paths: readonly string[]): Promise<DirectoryTimes> {
  const times: DirectoryTimes = new Map()
  for (const path of paths) {
    const st = await lstat(path, { bigint: true }).catch(() => undefined)
    if (st?.isDirectory()) times.set(path, st.mtimeNs)
  }
  return times
}

/**
 * Puts back directory mtimes as the image had them: removing the marker or the staging
 * directory changes them after tar has set them. touch(1) sets nanoseconds; Node's
 * utimes takes floating-point seconds and would round them.
 */
export async function restoreTimes(times: DirectoryTimes): Promise<void> {
  for (const [path, mtimeNs] of times) {
    const seconds = mtimeNs / 1_000_000_000n
    const nanos = (mtimeNs % 1_000_000_000n).toString().padStart(9, '0')
    await promisify(execFile)('touch', ['-m', '-d', `@${seconds}.${nanos}`, path])
  }
}

/** Removes the incomplete marker: the target root now holds the whole image. */
export async function markComplete(target: string): Promise<void> {
  try {
    await unlink(join(target, INCOMPLETE_MARKER))
  } catch (err) {
    if (errnoOf(err) !== 'ENOENT') throw err
  }
}
