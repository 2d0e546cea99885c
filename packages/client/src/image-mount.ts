import { execFile } from 'node:child_process'
import { mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { errnoOf, type ImageManifest, ImageSwarmError, type Logger } from '@imageswarm/core'
import type { ImageMode } from './config.js'
import { isDeviceSpec, isMountPoint } from './image-cache.js'

const execFileAsync = promisify(execFile)

/** Where a mounted image's parts live: its RAM copy, its read-only mount, its layer. */
export const MOUNTED_IMAGES_DIR = '/run/imageswarm/images'

/** Runs a command (mount, umount); tests may watch it. */
export type RunCommand = (command: string, args: readonly string[]) => Promise<void>

const runCommand: RunCommand = async (command, args) => {
  await execFileAsync(command, [...args], { timeout: 120_000 })
}

/** What `mountImage` mounted, in order, for `unmountImage` and the log. */
export interface MountedImage {
  /** The merged root: the image under its writable layer. */
  target: string
  /** The SquashFS file, mounted read-only. */
  image: string
  lower: string
  upper: string
  /** Mount points to unmount, the last mounted first. */
  mounts: string[]
}

export interface MountImageOptions {
  /** The verified SquashFS file. */
  image: string
  manifest: Pick<ImageManifest, 'name' | 'infoHash'>
  /** Where the merged root is mounted: the client's target root. */
  target: string
  /** `tmpfs`, a device (`/dev/sda4`, `LABEL=…`) or a directory: see ClientConfig.overlay. */
  overlay: string
  logger: Logger
  run?: RunCommand
  /** Default MOUNTED_IMAGES_DIR. */
  baseDir?: string
}

/**
 * Mounts a verified SquashFS image read-only (through a loop device) and, over it, an
 * overlay whose writable layer is a tmpfs, a partition or a directory, at `target`: the
 * node sees the image's files and writes only to its layer; the file itself is never
 * written. A persistent layer (a partition, a directory) keeps one upper directory per
 * image version (`NAME-INFOHASH/upper`), so a new version never runs on top of changes
 * made to another; older ones are left for the operator. On failure, what was mounted is
 * unmounted again.
 */
export async function mountImage(options: MountImageOptions): Promise<MountedImage> {
  const run = options.run ?? runCommand
  const { manifest, target, overlay } = options
  const base = join(options.baseDir ?? MOUNTED_IMAGES_DIR, manifest.name)
  const lower = join(base, 'lower')
  const mounts: string[] = []
  const mount = async (args: string[], at: string, what: string) => {
    try {
      await run('mount', [...args, at])
    } catch (err) {
      throw mountFailed(what, at, err)
    }
    mounts.push(at)
  }
  try {
    await mkdir(lower, { recursive: true })
    await mount(['-t', 'squashfs', '-o', 'ro,loop', options.image], lower, 'the image')
    let layer: string
    if (overlay === 'tmpfs') {
      layer = join(base, 'layer')
      await mkdir(layer, { recursive: true })
      await mount(['-t', 'tmpfs', '-o', 'mode=0755', 'tmpfs'], layer, 'the tmpfs layer')
    } else if (isDeviceSpec(overlay)) {
      layer = join(base, 'layer')
      await mkdir(layer, { recursive: true })
      if (!(await isMountPoint(layer))) await mount([overlay], layer, `the layer ${overlay}`)
    } else {
      layer = overlay
    }
    const version = overlay === 'tmpfs' ? '' : `${manifest.name}-${manifest.infoHash.slice(0, 12)}`
    const upper = join(layer, version, 'upper')
    const work = join(layer, version, 'work')
    await mkdir(upper, { recursive: true })
    // overlayfs wants an empty work directory of its own.
    await rm(work, { recursive: true, force: true })
    await mkdir(work, { recursive: true })
    await mkdir(target, { recursive: true })
    await mount(
      ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${upper},workdir=${work}`],
      target,
      'the overlay',
    )
    options.logger.info(
      { image: options.image, target, lower, upper },
      'image mounted read-only under an overlay',
    )
    return { target, image: options.image, lower, upper, mounts: [...mounts].reverse() }
  } catch (err) {
    await unmountAll([...mounts].reverse(), run, options.logger)
    throw err
  }
}

/** Unmounts what `mountImage` mounted; the problems, for the log (never throws). */
export async function unmountImage(
  mounted: MountedImage,
  logger: Logger,
  run: RunCommand = runCommand,
): Promise<string[]> {
  return unmountAll(mounted.mounts, run, logger)
}

async function unmountAll(mounts: string[], run: RunCommand, logger: Logger): Promise<string[]> {
  const problems: string[] = []
  for (const at of mounts) {
    try {
      await run('umount', [at])
    } catch (err) {
      const problem = `${at}: ${err instanceof Error ? err.message : String(err)}`
      logger.warn({ mount: at, err: problem }, 'could not unmount')
      problems.push(problem)
    }
  }
  return problems
}

/**
 * Where a `ram` image is downloaded: a tmpfs of its own, sized for the file, so that it
 * outlives the installer's root (switch_root empties only the root it leaves) and the
 * memory it takes shows in `df`. Returns the directory.
 */
export async function mountRamImageDir(
  manifest: Pick<ImageManifest, 'name' | 'size'>,
  run: RunCommand = runCommand,
  baseDir = MOUNTED_IMAGES_DIR,
): Promise<string> {
  const dir = join(baseDir, manifest.name, 'ram')
  await mkdir(dir, { recursive: true })
  if (await isMountPoint(dir)) return dir
  // The file, and room for the download's state beside it.
  const size = manifest.size + 16 * 1024 * 1024
  try {
    await run('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', dir])
  } catch (err) {
    throw mountFailed('a tmpfs for the image in RAM', dir, err)
  }
  return dir
}

/** Which image modes mount the image. */
export function mountsImage(mode: ImageMode): mode is 'disk' | 'ram' {
  return mode !== 'extract'
}

function mountFailed(what: string, at: string, err: unknown): ImageSwarmError {
  const stderr = (err as { stderr?: string }).stderr?.trim()
  return new ImageSwarmError(
    'E_EXTRACT_FAILED',
    `cannot mount ${what} at ${at}: ${stderr || errnoOf(err) || String(err)}`,
    {
      operation: 'mount image',
      path: at,
      hint: 'the node needs squashfs, loop and overlay in its kernel (or modules in the ramdisk), and root',
      cause: err,
    },
  )
}
