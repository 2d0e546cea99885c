import { access, constants, mkdir, unlink, writeFile } from 'node:fs/promises'
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
 * Picks the staging directory: the one given, else tmpfs when free memory holds the
 * archive with a margin, else a directory on the target disk. Checks that it is
 * writable and has room before any download starts.
 */
export async function chooseStaging(
  requested: string,
  target: string,
  manifest: ImageManifest,
  memoryReserve: number,
): Promise<StagingChoice> {
  let choice: StagingChoice
  if (requested !== 'auto') {
    choice = { dir: requested, kind: 'given', removeAfter: false }
  } else if (freemem() > manifest.size + memoryReserve) {
    choice = { dir: join('/tmp', `imageswarm-${manifest.name}`), kind: 'memory', removeAfter: true }
  } else {
    choice = {
      dir: join(target, 'tmp', `${TARGET_STAGING_PREFIX}${manifest.name}`),
      kind: 'target-disk',
      removeAfter: true,
    }
  }
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

async function ensureRoom(dir: string, manifest: ImageManifest): Promise<void> {
  const free = await freeBytes(dir)
  // An interrupted download's partial archive already occupies part of what it needs.
  const existing = await allocatedBytes(join(dir, manifest.archiveFile))
  const needed = manifest.size - existing
  if (free < needed) {
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
