import { execFile } from 'node:child_process'
import { access, constants, lstat, mkdir, readdir, stat, unlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import {
  errnoOf,
  IGNORED_TARGET_ENTRIES,
  ImageSwarmError,
  INCOMPLETE_MARKER,
} from '@imageswarm/core'

// A freshly made filesystem has lost+found; nothing else may be in a target we fill. The
// same names extraction treats as not making the target non-empty.
const ALLOWED_IN_EMPTY_TARGET = new Set(IGNORED_TARGET_ENTRIES)

/** Staging on the target disk (`/a/tmp/imageswarm-NAME`), see staging.ts. */
export const TARGET_STAGING_PREFIX = 'imageswarm-'

/**
 * Makes sure the target root exists, is writable and is empty, so an image is never
 * silently mixed into an old root. Allowed: `lost+found`, our own staging under `tmp/`,
 * and anything at all when our incomplete marker says an earlier install of the same
 * kind was interrupted (it is extracted over).
 */
export async function prepareTargetRoot(
  target: string,
  force: boolean,
): Promise<{ resumed: boolean }> {
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
  if (await isMarkedIncomplete(target)) return { resumed: true }
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
  return { resumed: false }
}

async function holdsOnlyStaging(dir: string): Promise<boolean> {
  try {
    return (await readdir(dir)).every((name) => name.startsWith(TARGET_STAGING_PREFIX))
  } catch {
    return false
  }
}

export async function markIncomplete(target: string): Promise<void> {
  await writeFile(
    join(target, INCOMPLETE_MARKER),
    `imageswarm started installing an image here at ${new Date().toISOString()} and has not finished.\n`,
  )
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

export async function isMarkedIncomplete(target: string): Promise<boolean> {
  try {
    await lstat(join(target, INCOMPLETE_MARKER))
    return true
  } catch {
    return false
  }
}
