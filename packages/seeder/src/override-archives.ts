import { mkdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { ImageSwarmError, type Logger, packArchive, silentLogger } from '@imageswarm/core'
import { fingerprintTree } from './fingerprint.js'
import { HeldFile, type HeldFileKind } from './held-file.js'

/**
 * An override's name, as a directory under the overrides directory and a file name in
 * the URL: letters, digits, `.`, `_`, `+`, `-`, not starting with a dot (so never `..`).
 */
export const OVERRIDE_NAME = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/

/** imageswarm's own subdirectory of the tarballs directory for packed overrides. */
const OVERRIDE_ARCHIVE_DIR = 'imageswarm-overrides'

/** Fingerprints a directory at most this often per override, however many nodes ask. */
const DEFAULT_FINGERPRINT_INTERVAL_MS = 1000

const KIND: HeldFileKind = {
  what: 'override archive',
  changedHint:
    'something other than imageswarm writes into --tarballs-dir: stop it; the next request packs the override again',
}

interface Packed {
  fingerprint: string
  file: HeldFile
  /** When the directory was last fingerprinted (ms since the epoch). */
  checkedAt: number
}

export interface OverrideArchivesOptions {
  /** SystemImager's overrides directory: one directory per override. */
  overridesDir: string
  /**
   * The tarballs directory: the archives go into its `imageswarm-overrides/` as
   * `override-NAME.tar`, never beside it, where SystemImager 4's `si_installbtimage
   * --overrides` wrote its own `override-NAME.tar` (not to be overwritten).
   */
  archiveDir: string
  logger?: Logger
  /** How long a directory's fingerprint is trusted; 0 fingerprints it on every request. */
  fingerprintIntervalMs?: number
  /** Default: Date.now. */
  now?: () => number
}

/**
 * Override directories (`/var/lib/systemimager/overrides/NAME`) as tar archives, packed
 * with the image's own deterministic packer (full metadata: owners, modes, xattrs, ACLs,
 * devices; the directory's own mode becomes the target root's, as with SystemImager's
 * `rsync -a overrides/NAME/ /a/`). Uncompressed: overrides are small, and a node under
 * emulation unpacks zstd about 20 times slower than the server packs it.
 *
 * An archive is packed once per content of its directory: each request fingerprints the
 * directory (names, types, modes, owners, sizes, times: `fingerprintTree`; at most once a
 * second per override, and one walk for all the requests that arrive meanwhile), and
 * packs it again only when that changed. 1,000 nodes asking for the same override make
 * one archive, served from its held descriptor.
 */
export class OverrideArchives {
  readonly #options: OverrideArchivesOptions
  readonly #logger: Logger
  readonly #packed = new Map<string, Packed>()
  readonly #pending = new Map<string, Promise<HeldFile>>()
  #closed = false

  constructor(options: OverrideArchivesOptions) {
    this.#options = options
    this.#logger = options.logger ?? silentLogger()
  }

  /** The override's directory; undefined for a name that cannot be one. */
  directoryOf(name: string): string | undefined {
    return OVERRIDE_NAME.test(name) ? join(this.#options.overridesDir, name) : undefined
  }

  /** True when the override's directory exists (SystemImager skips the others). */
  async exists(name: string): Promise<boolean> {
    const dir = this.directoryOf(name)
    if (dir === undefined) return false
    const st = await stat(dir).catch(() => undefined)
    return st?.isDirectory() === true
  }

  /**
   * The override packed as it is now, held open: acquire it for the transfer. Throws
   * E_IMAGE_NOT_FOUND when there is no such override, E_PACK_FAILED if packing fails.
   */
  archive(name: string): Promise<HeldFile> {
    const pending = this.#pending.get(name)
    if (pending) return pending
    const promise = this.#current(name).finally(() => this.#pending.delete(name))
    this.#pending.set(name, promise)
    return promise
  }

  async #current(name: string): Promise<HeldFile> {
    const dir = this.directoryOf(name)
    if (dir === undefined || !(await this.exists(name)))
      throw noSuchOverride(name, this.#options.overridesDir)
    const now = (this.#options.now ?? Date.now)()
    const interval = this.#options.fingerprintIntervalMs ?? DEFAULT_FINGERPRINT_INTERVAL_MS
    const packed = this.#packed.get(name)
    if (packed && now - packed.checkedAt < interval && !(await packed.file.check())) {
      return packed.file
    }
    const fingerprint = await fingerprintTree(dir, 'override archive: tar, no compression')
    if (packed && packed.fingerprint === fingerprint && !(await packed.file.check())) {
      packed.checkedAt = now
      return packed.file
    }
    const archives = join(this.#options.archiveDir, OVERRIDE_ARCHIVE_DIR)
    await mkdir(archives, { recursive: true })
    const output = join(archives, `override-${name}.tar`)
    const started = Date.now()
    const result = await packArchive({
      root: dir,
      output,
      compression: 'none',
      // An override is copied over the image as it is: /proc or /dev in it are files
      // the site put there on purpose.
      defaultExcludes: false,
      logger: this.#logger,
    })
    const file = await HeldFile.open(output, KIND, result.sha256)
    if (this.#closed) {
      await file.close()
      throw noSuchOverride(name, this.#options.overridesDir)
    }
    packed?.file.retire()
    this.#packed.set(name, { fingerprint, file, checkedAt: now })
    this.#logger.info(
      { override: name, archive: output, bytes: file.size, ms: Date.now() - started },
      packed ? 'override changed: packed it again' : 'packed override',
    )
    return file
  }

  async close(): Promise<void> {
    this.#closed = true
    await Promise.allSettled(this.#pending.values())
    for (const packed of this.#packed.values()) packed.file.retire()
    this.#packed.clear()
  }
}

function noSuchOverride(name: string, overridesDir: string): ImageSwarmError {
  return new ImageSwarmError('E_IMAGE_NOT_FOUND', `no override ${name} in ${overridesDir}`, {
    operation: 'serve override',
    path: name,
    hint: `overrides are directories ${overridesDir}/NAME (imageswarm serve --overrides-dir): node.json lists the ones that exist for each node`,
  })
}
