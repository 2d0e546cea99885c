import { access, constants, mkdir, rmdir, unlink, writeFile } from 'node:fs/promises'
import { freemem } from 'node:os'
import { join } from 'node:path'
import { type ImageManifest, ImageSwarmError } from '@imageswarm/core'
import { allocatedBytes, formatMiB, freeBytes } from './disk-space.js'
import { TARGET_STAGING_PREFIX } from './target-root.js'

export interface StagingChoice {
  dir: string
  /** Where it came from: given by the administrator, or chosen (tmpfs or target disk). */
  kind: 'given' | 'memory' | 'target-disk'
  /** Remove the directory itself afterwards (it was made for this install). */
  removeAfter: boolean
}

/**
 * Picks the staging directory: the one given; for `auto`, tmpfs when free memory holds
 * the archive with a margin (and /tmp has room for it: a tmpfs is often capped below the
 * memory), else a directory on the target disk; `tmpfs` and `target` name one of those
 * two. Checks that it is writable and has room before any download starts:
 * E_STAGING_NOT_WRITABLE, or E_NO_SPACE with the numbers.
 */
export async function chooseStaging(
  requested: string,
  target: string,
  manifest: ImageManifest,
  memoryReserve: number,
  /** Where memory (tmpfs) is mounted for staging. */
  memoryRoot = '/tmp',
): Promise<StagingChoice> {
  const onTargetDisk: StagingChoice = {
    dir: join(target, 'tmp', `${TARGET_STAGING_PREFIX}${manifest.name}`),
    kind: 'target-disk',
    removeAfter: true,
  }
  const inMemory: StagingChoice = {
    dir: join(memoryRoot, `${TARGET_STAGING_PREFIX}${manifest.name}`),
    kind: 'memory',
    removeAfter: true,
  }
  if (requested === 'tmpfs') return prepare(inMemory, manifest)
  if (requested === 'target') return prepare(onTargetDisk, manifest)
  if (requested !== 'auto') {
    return prepare({ dir: requested, kind: 'given', removeAfter: false }, manifest)
  }
  if (freemem() > manifest.size + memoryReserve) {
    await ensureWritable(inMemory.dir)
    if ((await roomFor(inMemory.dir, manifest)).fits) return inMemory
    await rmdir(inMemory.dir).catch(() => {})
  }
  return prepare(onTargetDisk, manifest)
}

async function prepare(choice: StagingChoice, manifest: ImageManifest): Promise<StagingChoice> {
  await ensureWritable(choice.dir)
  await ensureRoom(choice.dir, manifest)
  return choice
}

async function ensureWritable(dir: string): Promise<void> {
  const probe = join(dir, `.imageswarm-probe-${process.pid}`)
  try {
    await mkdir(dir, { recursive: true })
    await access(dir, constants.W_OK)
    await writeFile(probe, '')
    await unlink(probe)
  } catch (err) {
    throw new ImageSwarmError(
      'E_STAGING_NOT_WRITABLE',
      `staging directory ${dir} is not writable`,
      {
        operation: 'prepare staging',
        path: dir,
        hint: 'choose a writable directory with BITTORRENT_STAGING= or --staging',
        cause: err,
      },
    )
  }
}

async function roomFor(
  dir: string,
  manifest: ImageManifest,
): Promise<{ fits: boolean; free: number; needed: number }> {
  const free = await freeBytes(dir)
  // An interrupted download's partial archive already occupies part of what it needs.
  const existing = await allocatedBytes(join(dir, manifest.archiveFile))
  const needed = manifest.size - existing
  return { fits: free >= needed, free, needed }
}

async function ensureRoom(dir: string, manifest: ImageManifest): Promise<void> {
  const { fits, free, needed } = await roomFor(dir, manifest)
  if (!fits) {
    throw new ImageSwarmError(
      'E_NO_SPACE',
      `staging directory ${dir} has ${formatMiB(free)} free; the archive needs ${formatMiB(needed)}`,
      {
        operation: 'prepare staging',
        path: dir,
        hint: 'free space there or point BITTORRENT_STAGING= / --staging at a larger filesystem',
      },
    )
  }
}
