import { execFile } from 'node:child_process'
import { access, constants, lstat, mkdir, readdir, stat, unlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { errnoOf, ImageSwarmError } from '@imageswarm/core'

/**
 * Written into the target root before extraction starts and removed only once it has
 * finished: a root that still holds it is half-installed, whatever else it contains.
 */
export const INCOMPLETE_MARKER = '.imageswarm-incomplete'

// A freshly made filesystem has lost+found; nothing else may be in a target we fill.
const ALLOWED_IN_EMPTY_TARGET = new Set(['lost+found', INCOMPLETE_MARKER])

/**
 * Makes sure the target root exists, is writable and is empty (or holds only an earlier
 * interrupted install of ours), so an image is never silently mixed into an old root.
 */
export async function prepareTargetRoot(target: string, force: boolean): Promise<void> {
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
  const leftovers = (await readdir(target)).filter((name) => !ALLOWED_IN_EMPTY_TARGET.has(name))
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
}

export async function markIncomplete(target: string): Promise<void> {
  await writeFile(
    join(target, INCOMPLETE_MARKER),
    `imageswarm started installing an image here at ${new Date().toISOString()} and has not finished.\n`,
  )
}

/**
 * Removes the marker without leaving a trace on the root directory: tar has just set
 * the root's mtime to the image's, and unlinking would change it, so it is restored to
 * the nanosecond with touch(1) (Node's utimes takes floating-point seconds).
 */
export async function markComplete(target: string): Promise<void> {
  const before = await lstat(target, { bigint: true })
  try {
    await unlink(join(target, INCOMPLETE_MARKER))
  } catch (err) {
    if (errnoOf(err) !== 'ENOENT') throw err
  }
  const seconds = before.mtimeNs / 1_000_000_000n
  const nanos = (before.mtimeNs % 1_000_000_000n).toString().padStart(9, '0')
  await promisify(execFile)('touch', ['-m', '-d', `@${seconds}.${nanos}`, target])
}

export async function isMarkedIncomplete(target: string): Promise<boolean> {
  try {
    await lstat(join(target, INCOMPLETE_MARKER))
    return true
  } catch {
    return false
  }
}
