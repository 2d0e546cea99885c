import { execFile } from 'node:child_process'
import { mkdir, statfs, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

/** Why a small tmpfs cannot be mounted here, or undefined if it can. */
export function whyNoTmpfs(): string | undefined {
  return process.getuid?.() === 0 ? undefined : 'needs root to mount a small tmpfs'
}

/**
 * Mounts a tmpfs of `bytes` at `dir` (made if missing): a disk that fills up, as
 * packages/core/test/archive-no-space.test.ts makes its full disk. Returns the unmount,
 * for the test file's own afterEach (it must run before the server fixture removes the
 * layout the mount lives in).
 */
export async function mountTmpfs(dir: string, bytes: number): Promise<() => Promise<void>> {
  await mkdir(dir, { recursive: true })
  await run('mount', ['-t', 'tmpfs', '-o', `size=${bytes}`, 'tmpfs', dir])
  return async () => {
    await run('umount', [dir]).catch(() => {})
  }
}

/** Takes every free byte of the file system holding `dir`; returns how many it took. */
export async function fillUp(dir: string): Promise<number> {
  const { bavail, bsize } = await statfs(dir)
  const free = bavail * bsize
  await writeFile(join(dir, 'filler'), Buffer.alloc(free)).catch(() => {})
  return free
}
