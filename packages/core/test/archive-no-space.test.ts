import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { extractArchive, isImageSwarmError, packArchive } from '../src/index.js'
import { isRoot } from '../src/testing/system-tools.js'
import { errorOf } from './helpers/error-of.js'
import { makeTempDir } from './helpers/temp-dir.js'

/** Why a 1 MiB file system cannot be mounted here, or undefined if it can. */
function tmpfsSkipReason(): string | undefined {
  if (!isRoot) return 'needs root to mount a small tmpfs'
  const probe = spawnSync('sh', [
    '-c',
    'd=$(mktemp -d) && mount -t tmpfs -o size=1m tmpfs "$d" && umount "$d"; s=$?; rmdir "$d"; exit $s',
  ])
  return probe.status === 0 ? undefined : `cannot mount a tmpfs: ${String(probe.stderr).trim()}`
}

const skipReason = tmpfsSkipReason()
const skipped = skipReason ? ` (skipped: ${skipReason})` : ''

/** A 1 MiB tmpfs, unmounted when the test ends (vitest runs these hooks last-registered
 * first, so before the temp dir is removed): a disk that fills up. */
async function fullDisk(): Promise<string> {
  const dir = await makeTempDir('imageswarm-full-')
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir])
  if (mounted.status !== 0) throw new Error(`mount failed: ${String(mounted.stderr)}`)
  onTestFinished(() => {
    spawnSync('umount', [dir])
  })
  return dir
}

/** An image root holding 4 MiB that does not compress. */
async function imageRoot(dir: string): Promise<string> {
  const root = join(dir, 'root')
  await mkdir(join(root, 'var'), { recursive: true })
  await writeFile(join(root, 'var/data'), randomBytes(4 << 20))
  return root
}

describe('a full disk', { timeout: 60_000 }, () => {
  // The archive's last writer differs: zstd or gzip, or tar itself ("Wrote only N of M bytes").
  it.skipIf(skipReason !== undefined).each(['zstd', 'gzip', 'none'] as const)(
    `fails packing (%s) with E_NO_SPACE and leaves no partial archive${skipped}`,
    async (compression) => {
      const root = await imageRoot(await makeTempDir())
      const full = await fullDisk()
      const error = await errorOf(
        packArchive({ root, output: join(full, 'image.tar'), compression }),
      )
      expect(isImageSwarmError(error) && error.code).toBe('E_NO_SPACE')
      expect(isImageSwarmError(error) && error.hint).toMatch(/free space/)
      expect(await readdir(full)).toEqual([])
    },
  )

  it.skipIf(skipReason !== undefined)(
    `fails extracting with E_NO_SPACE and tar's message${skipped}`,
    async () => {
      const dir = await makeTempDir()
      const root = await imageRoot(dir)
      const { output } = await packArchive({
        root,
        output: join(dir, 'image.tar.zst'),
        compression: 'zstd',
      })
      const target = await fullDisk()
      const error = await errorOf(extractArchive({ archive: output, target }))
      expect(isImageSwarmError(error) && error.code).toBe('E_NO_SPACE')
      // GNU tar says "Wrote only 8704 of 10240 bytes" here, not the errno's words.
      expect(String((error as Error).message)).toMatch(/Wrote only|No space left on device/)
      expect(isImageSwarmError(error) && error.hint).toMatch(/full/)
    },
  )
})
