import { execFile } from 'node:child_process'
import {
  access,
  constants,
  mkdir,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  utimes,
  writeFile,
} from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import {
  ARCHIVE_EXTENSIONS,
  type ImageManifest,
  type Logger,
  SQUASHFS_EXTENSION,
  sha256File,
} from '@imageswarm/core'
import { allocatedBytes, freeBytes } from './disk-space.js'

/** Where a cache given as a device (`/dev/sda3`, `LABEL=cache`) is mounted. */
export const CACHE_MOUNT_POINT = '/run/imageswarm/cache'

/** Where `peek` mounts a cache device, read-only, for a moment. */
const CACHE_PEEK_POINT = '/run/imageswarm/cache-peek'

/** Downloads bound for the cache land here first; only a verified archive is moved in. */
const INCOMING = '.incoming'

const ARCHIVE_SUFFIXES = [...Object.values(ARCHIVE_EXTENSIONS), SQUASHFS_EXTENSION]

/**
 * A node-local cache of compressed image archives (as Scyld ClusterWare's disk cache):
 * at the next boot an archive whose size and sha256 match the server's manifest is
 * installed and seeded from the cache without downloading. Least recently used
 * archives are evicted to make room. A cache that cannot be used is logged and skipped,
 * never fatal: the install goes on through staging.
 */
export class ImageCache {
  private constructor(
    readonly dir: string,
    private readonly logger: Logger,
  ) {}

  /** Opens (mounting if it names a device) the cache; `undefined` when it is unusable. */
  static async open(spec: string, logger: Logger): Promise<ImageCache | undefined> {
    try {
      const dir = isDeviceSpec(spec) ? await mountCache(spec) : spec
      await mkdir(join(dir, INCOMING), { recursive: true })
      await access(dir, constants.W_OK)
      const probe = join(dir, INCOMING, `.probe-${process.pid}`)
      await writeFile(probe, '')
      await rm(probe)
      return new ImageCache(dir, logger)
    } catch (err) {
      logger.warn(
        { cache: spec, err: err instanceof Error ? err.message : String(err) },
        'the image cache cannot be used; installing without it',
      )
      return undefined
    }
  }

  /**
   * Reads one small file of the cache before the install touches any disk (the node's trust
   * state, which must be checked before partitioning): a directory is read in place; a
   * device is mounted read-only beside the cache's mount point and unmounted again, so the
   * partitioning that follows finds it free. Undefined when the file is not there, or the
   * cache cannot be read (logged, as a cache that cannot be used is).
   */
  static async peek(
    spec: string,
    file: string,
    logger: Logger,
  ): Promise<{ text: string; path: string } | undefined> {
    const read = async (dir: string) => {
      const path = join(dir, file)
      try {
        return { text: await readFile(path, 'utf8'), path }
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
        throw err
      }
    }
    try {
      if (!isDeviceSpec(spec)) return await read(spec)
      if (await isMountPoint(CACHE_MOUNT_POINT)) return await read(CACHE_MOUNT_POINT)
      await mkdir(CACHE_PEEK_POINT, { recursive: true })
      await promisify(execFile)('mount', ['-o', 'ro', spec, CACHE_PEEK_POINT], { timeout: 30_000 })
      try {
        const found = await read(CACHE_PEEK_POINT)
        return found && { text: found.text, path: `${spec}:${file}` }
      } finally {
        await promisify(execFile)('umount', [CACHE_PEEK_POINT], { timeout: 30_000 })
      }
    } catch (err) {
      logger.warn(
        { cache: spec, file, err: err instanceof Error ? err.message : String(err) },
        'the image cache cannot be read; going on without what it records',
      )
      return undefined
    }
  }

  /** Where the verified archive of this image lives in the cache. */
  archivePath(manifest: ImageManifest): string {
    return join(this.dir, manifest.archiveFile)
  }

  /** Where a download bound for the cache is staged (and resumed after a reboot). */
  get incomingDir(): string {
    return join(this.dir, INCOMING)
  }

  /**
   * The cached archive if its size and sha256 match the manifest. A copy that does not
   * match (an older image, a corrupted disk) is deleted.
   */
  async lookup(manifest: ImageManifest): Promise<string | undefined> {
    const path = this.archivePath(manifest)
    let size: number
    try {
      size = (await stat(path)).size
    } catch {
      this.logger.info({ cache: this.dir, image: manifest.name }, 'image not in the cache')
      return undefined
    }
    const matches = size === manifest.size && (await sha256File(path)) === manifest.sha256
    if (!matches) {
      this.logger.warn(
        { cache: path, size, expected: manifest.size },
        'cached archive does not match the server’s manifest; deleting it',
      )
      await rm(path, { force: true })
      return undefined
    }
    await touch(path)
    this.logger.info({ cache: path }, 'cached archive matches the manifest: no download needed')
    return path
  }

  /**
   * Makes room for the archive, evicting the least recently used other archives.
   * Returns false when it cannot fit even in an empty cache.
   */
  async reserve(manifest: ImageManifest): Promise<boolean> {
    const partial = await allocatedBytes(join(this.incomingDir, manifest.archiveFile))
    const needed = manifest.size - partial
    if ((await freeBytes(this.dir)) >= needed) return true
    for (const victim of await this.#archivesByAge(manifest.archiveFile)) {
      this.logger.info(
        { evicted: victim },
        'evicting the least recently used archive from the cache',
      )
      await rm(victim, { force: true })
      if ((await freeBytes(this.dir)) >= needed) return true
    }
    this.logger.warn(
      { cache: this.dir, needed, free: await freeBytes(this.dir) },
      'the archive does not fit in the image cache; downloading to staging instead',
    )
    return false
  }

  /** Moves a verified download from the incoming directory into the cache. */
  async admit(manifest: ImageManifest): Promise<string> {
    const path = this.archivePath(manifest)
    await rename(join(this.incomingDir, manifest.archiveFile), path)
    await touch(path)
    return path
  }

  async #archivesByAge(keep: string): Promise<string[]> {
    const entries: { path: string; mtimeMs: number }[] = []
    for (const name of await readdir(this.dir)) {
      if (name === keep || !ARCHIVE_SUFFIXES.some((suffix) => name.endsWith(suffix))) continue
      const path = join(this.dir, name)
      const st = await stat(path).catch(() => undefined)
      if (st?.isFile()) entries.push({ path, mtimeMs: st.mtimeMs })
    }
    return entries.sort((a, b) => a.mtimeMs - b.mtimeMs).map((entry) => entry.path)
  }
}

export function isDeviceSpec(spec: string): boolean {
  return spec.startsWith('/dev/') || /^(LABEL|UUID|PARTLABEL|PARTUUID)=/.test(spec)
}

export async function isMountPoint(path: string): Promise<boolean> {
  const mounts = await readFile('/proc/mounts', 'utf8')
  return mounts.split('\n').some((line) => line.split(' ')[1] === path)
}

async function mountCache(spec: string): Promise<string> {
  await mkdir(CACHE_MOUNT_POINT, { recursive: true })
  if (!(await isMountPoint(CACHE_MOUNT_POINT))) {
    await promisify(execFile)('mount', [spec, CACHE_MOUNT_POINT], { timeout: 30_000 })
  }
  return CACHE_MOUNT_POINT
}

// Last use is the archive's mtime: it survives reboots and needs no index file.
async function touch(path: string): Promise<void> {
  const now = new Date()
  await utimes(path, now, now)
}
