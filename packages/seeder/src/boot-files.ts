import { lstat, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { errnoOf, ImageSwarmError, type Logger, silentLogger } from '@imageswarm/core'
import { z } from 'zod'
import { HeldFile, type HeldFileKind, isAbsent } from './held-file.js'

/** The files `imageswarm initrd --output DIR` writes, by their names in DIR. */
export const BOOT_FILE_NAMES = {
  kernel: 'vmlinuz',
  initrd: 'initrd.img',
  manifest: 'initrd.manifest.json',
} as const

/**
 * What the server reads of `initrd.manifest.json` (written by the installer package's
 * ramdisk builder): the size and sha256 of each file, to tell a complete pair from one
 * being rebuilt or mixed from two builds.
 */
const InitrdManifestDigestsSchema = z.object({
  vmlinuz: z.object({ bytes: z.number().int().min(0), sha256: z.string().regex(/^[0-9a-f]{64}$/) }),
  initrd: z.object({ bytes: z.number().int().min(0), sha256: z.string().regex(/^[0-9a-f]{64}$/) }),
})

/** The kernel and ramdisk a node boots, held open as one consistent pair. */
export interface BootSet {
  kernel: HeldFile
  initrd: HeldFile
  /** False when the directory has no initrd.manifest.json (a site's own kernel and ramdisk). */
  checkedAgainstManifest: boolean
}

const KIND: HeldFileKind = {
  what: 'boot file',
  changedHint:
    'rebuild the ramdisk with imageswarm initrd --output DIR (it writes new files beside the old ones and renames them: the server then hands out the new pair)',
}

/**
 * The installer's kernel and ramdisk from `--boot-dir`, held open like a published archive.
 * Rebuilding them (`imageswarm initrd --output DIR`, which writes each file beside its
 * name and renames it) is picked up without a restart: each request looks at the three
 * paths (an lstat each), and when one names another file the pair is opened anew,
 * checked against the new manifest (sizes and sha256) and only then handed out; a
 * transfer under way finishes from the old files. While the files do not match their
 * manifest (a build still renaming, or two builds mixed) the previous pair stays, or,
 * without one, the routes answer 503.
 */
export class BootFiles {
  readonly dir: string
  readonly #logger: Logger
  #set: BootSet | undefined
  #problem: ImageSwarmError | undefined
  /** The paths' identities when the current pair (or the last failure) was read. */
  #seen: string | undefined
  #loading: Promise<void> | undefined

  private constructor(dir: string, logger: Logger) {
    this.dir = dir
    this.#logger = logger
  }

  /** Opens the pair if it is there; a missing or incomplete directory is logged, not thrown. */
  static async open(dir: string, logger: Logger = silentLogger()): Promise<BootFiles> {
    const boot = new BootFiles(dir, logger)
    await boot.#refresh()
    if (boot.#problem) {
      logger.warn(
        { bootDir: dir, err: boot.#problem.message, hint: boot.#problem.hint },
        'no installer ramdisk to hand out: /boot/* answer 404 until there is one',
      )
    } else if (boot.#set) {
      logger.info(
        {
          bootDir: dir,
          kernel: boot.#set.kernel.size,
          initrd: boot.#set.initrd.size,
          manifest: boot.#set.checkedAgainstManifest,
        },
        'serving the installer kernel and ramdisk',
      )
    }
    return boot
  }

  /**
   * The pair to serve now, or why there is none: `E_IMAGE_NOT_FOUND` (no files: 404) or
   * `E_SERVER_ARCHIVE_CHANGED` (files that do not match their manifest: 503).
   */
  async current(): Promise<BootSet | ImageSwarmError> {
    if ((await this.#identities()) !== this.#seen) await this.#refresh()
    return this.#set ?? this.#problem ?? missing(this.dir, [BOOT_FILE_NAMES.kernel])
  }

  async close(): Promise<void> {
    await this.#loading?.catch(() => undefined)
    this.#set?.kernel.retire()
    this.#set?.initrd.retire()
    this.#set = undefined
  }

  /** One load at a time; requests arriving meanwhile wait for it. */
  async #refresh(): Promise<void> {
    this.#loading ??= this.#load().finally(() => {
      this.#loading = undefined
    })
    await this.#loading
  }

  async #load(): Promise<void> {
    const seen = await this.#identities()
    if (seen === this.#seen) return
    const loaded: BootSet | ImageSwarmError = await openBootSet(this.dir).catch((err: unknown) => {
      if (err instanceof ImageSwarmError) return err
      throw err
    })
    this.#seen = seen
    if (loaded instanceof ImageSwarmError) {
      this.#problem = loaded
      if (this.#set) {
        this.#logger.warn(
          { bootDir: this.dir, err: loaded.message, hint: loaded.hint },
          'the boot files changed and are not a complete pair yet: still handing out the previous ones',
        )
      }
      return
    }
    const previous = this.#set
    this.#set = loaded
    this.#problem = undefined
    previous?.kernel.retire()
    previous?.initrd.retire()
    if (previous) {
      this.#logger.info(
        { bootDir: this.dir, kernel: loaded.kernel.size, initrd: loaded.initrd.size },
        'the boot files were rebuilt: handing out the new kernel and ramdisk',
      )
    }
  }

  /** Device, inode, size and times of the three paths: any change means a rebuild. */
  async #identities(): Promise<string> {
    const names = Object.values(BOOT_FILE_NAMES)
    const stats = await Promise.all(
      names.map((name) => lstat(join(this.dir, name), { bigint: true }).catch(() => undefined)),
    )
    return stats
      .map((st) => (st ? `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}` : '-'))
      .join(' ')
  }
}

async function openBootSet(dir: string): Promise<BootSet> {
  const manifestPath = join(dir, BOOT_FILE_NAMES.manifest)
  const manifestText = await readFile(manifestPath, 'utf8').catch((err: unknown) => {
    if (isAbsent(err)) return undefined
    throw unreadable(manifestPath, err)
  })
  let manifest: z.output<typeof InitrdManifestDigestsSchema> | undefined
  if (manifestText !== undefined) {
    let parsed: ReturnType<typeof InitrdManifestDigestsSchema.safeParse>
    try {
      parsed = InitrdManifestDigestsSchema.safeParse(JSON.parse(manifestText))
    } catch {
      parsed = InitrdManifestDigestsSchema.safeParse(undefined)
    }
    if (!parsed.success)
      throw unmatched(
        manifestPath,
        'it is not an initrd manifest (JSON with vmlinuz and initrd sizes and sha256)',
      )
    manifest = parsed.data
  }
  const opened: HeldFile[] = []
  try {
    const absent: string[] = []
    for (const name of [BOOT_FILE_NAMES.kernel, BOOT_FILE_NAMES.initrd]) {
      const file = await HeldFile.open(join(dir, name), KIND).catch((err: unknown) => {
        if (isAbsent(err)) return undefined
        if (err instanceof ImageSwarmError) throw err
        throw unreadable(join(dir, name), err)
      })
      if (file) opened.push(file)
      else absent.push(name)
    }
    if (absent.length > 0) throw missing(dir, absent)
    const [kernel, initrd] = opened as [HeldFile, HeldFile]
    if (manifest) {
      for (const [file, digest] of [
        [kernel, manifest.vmlinuz],
        [initrd, manifest.initrd],
      ] as const) {
        if (file.size !== digest.bytes || file.sha256 !== digest.sha256) {
          throw unmatched(
            file.path,
            `${file.size} bytes, sha256 ${file.sha256.slice(0, 12)}…; the manifest says ${digest.bytes} bytes, ${digest.sha256.slice(0, 12)}…`,
          )
        }
      }
    }
    return { kernel, initrd, checkedAgainstManifest: manifest !== undefined }
  } catch (err) {
    for (const file of opened) await file.close()
    throw err
  }
}

function missing(dir: string, names: string[]): ImageSwarmError {
  return new ImageSwarmError(
    'E_IMAGE_NOT_FOUND',
    `no installer ramdisk in ${dir}: ${names.join(' and ')} missing (or a symlink, which is not followed)`,
    {
      operation: 'serve boot files',
      path: dir,
      hint: `build it: imageswarm initrd --output ${dir} (or start imageswarm serve with --boot-dir DIR where it is)`,
    },
  )
}

function unreadable(path: string, err: unknown): ImageSwarmError {
  return new ImageSwarmError(
    'E_IMAGE_NOT_FOUND',
    `cannot read boot file ${path}: ${errnoOf(err) ?? String(err)}`,
    {
      operation: 'serve boot files',
      path,
      hint: 'check the file and its permissions (the server reads it as the user it runs as)',
      cause: err,
    },
  )
}

function unmatched(path: string, why: string): ImageSwarmError {
  return new ImageSwarmError(
    'E_SERVER_ARCHIVE_CHANGED',
    `boot file ${path} does not match ${BOOT_FILE_NAMES.manifest}: ${why}`,
    {
      operation: 'serve boot files',
      path,
      hint: 'a build is still writing them, or they come from two builds: wait for imageswarm initrd to finish, or run it again',
    },
  )
}
