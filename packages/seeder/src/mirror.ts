import { rename, rm } from 'node:fs/promises'
import { join } from 'node:path'
import {
  type ImageManifest,
  ImageSwarmError,
  type KeyList,
  type Logger,
  type MinisignPublicKey,
  manifestFileName,
  manifestPath,
  manifestSignatureFileName,
  manifestSignaturePath,
  parseImageName,
  parseManifest,
  readTrustRootFile,
  type ServerList,
  SIGNED_MANIFEST_MAX_BYTES,
  serverUrl,
  silentLogger,
  TRUST_PATHS,
  torrentFileName,
  torrentPath,
  verifyKeyList,
  verifySignedManifest,
  WIRE,
  writeFileAtomically,
} from '@imageswarm/core'
import parseTorrent from 'parse-torrent'
import type { ImageCatalog } from './catalog.js'
import type { SeederConfig } from './config.js'
import type { PublishedImage } from './publish.js'
import { PublishedArchive } from './published-archive.js'
import type { ImageSeeder } from './seeding.js'
import type { ServerRegistry } from './server-registry.js'
import { torrentForServers } from './torrent-file.js'
import type { KeyListSource } from './trust-routes.js'

/** One request to the primary gives up after this long; the next poll asks again. */
const REQUEST_TIMEOUT_MS = 10_000
/** The image list and the server list are a few KiB; a torrent of a 100 GB image at 1 MiB
 * pieces holds 2 MB of piece hashes. */
const LIST_MAX_BYTES = 4 * 1024 * 1024
const TORRENT_MAX_BYTES = 64 * 1024 * 1024
/** A mirror falls back to the primary's web seed after this long without progress from
 * the swarm, as a node does (ClientConfig's webSeedFallbackSeconds). */
const WEB_SEED_FALLBACK_SECONDS = 10
/** A mirror's download attempt ends after this long without a verified byte; the next
 * poll resumes it. */
const STALL_TIMEOUT_SECONDS = 120
/** The key list's entry among the failures (image names cannot contain a space). */
const KEY_LIST = 'key list'

export interface ImageMirrorOptions {
  config: SeederConfig & { mirrorOf: string }
  /** This server's base URL, once it listens. */
  self: () => string | undefined
  seeder: ImageSeeder
  catalog: ImageCatalog
  registry: ServerRegistry
  /** Puts a mirrored image into service: the tracker allows it, the seeder seeds it, the
   * catalog serves it (the previous version's archive is closed by the catalog). */
  serve: (image: PublishedImage) => Promise<void>
  logger?: Logger
}

/**
 * `imageswarm serve --mirror-of URL`: keeps this server a copy of every image the primary
 * publishes, and serves it as its own (same manifest bytes and signature, same infohash;
 * its own tracker, seeder and web seed).
 *
 * Every `mirrorInterval` seconds it registers with the primary (`POST /mirrors`: where
 * clients reach it, which infohashes it serves; the answer is every server the primary
 * knows), reads the primary's image list and each manifest, and fetches what changed:
 * a manifest signed again is taken as it is, a new archive is downloaded through the swarm
 * (the primary's seeder and any node that holds pieces; the primary's web seed only when
 * the swarm gives nothing), checked against the manifest's sha256 and only then served.
 * With `trustRoot`, the primary's key list must verify against that root and each manifest
 * against the key list before anything is downloaded: a mirror never serves what the
 * primary's root did not sign.
 *
 * While the primary does not answer, the mirror keeps serving what it holds.
 */
export class ImageMirror {
  readonly #options: ImageMirrorOptions
  readonly #logger: Logger
  readonly #primary: string
  #root: MinisignPublicKey | undefined
  #keyList: { keyList: KeyList; sha256: string } | undefined
  /** The primary's key list and signature, served verbatim (see handleKeyListRequest). */
  #keyListSource: KeyListSource | undefined
  #timer: NodeJS.Timeout | undefined
  #syncing: Promise<void> | undefined
  readonly #stopping = new AbortController()
  #primaryDown = false
  /** Images whose last attempt failed, with the message logged, so a failure repeating at
   * every poll is logged once. */
  readonly #failing = new Map<string, string>()

  constructor(options: ImageMirrorOptions) {
    this.#options = options
    this.#logger = options.logger ?? silentLogger()
    this.#primary = options.config.mirrorOf.replace(/\/+$/, '')
  }

  /** The primary's base URL. */
  get primary(): string {
    return this.#primary
  }

  /** The key list this mirror serves: its primary's, once read (and verified with a root). */
  get keyListSource(): KeyListSource | undefined {
    return this.#keyListSource
  }

  /** Reads the trust root (refusing one that cannot be read), then polls the primary:
   * at once, then every `mirrorInterval` seconds. */
  async start(): Promise<void> {
    const { trustRoot } = this.#options.config
    if (trustRoot !== undefined) {
      this.#root = await readTrustRootFile(
        trustRoot,
        'start mirror',
        "give the primary's root public key (root.pub of imageswarm key generate) with --trust-root",
      )
    } else {
      this.#logger.warn(
        { primary: this.#primary },
        "mirroring without --trust-root: the primary's signatures are not checked here (nodes with a trust root still check them)",
      )
    }
    this.#schedule(0)
  }

  /** One poll, now; a poll already under way is waited for instead (polls never overlap). */
  async syncNow(): Promise<void> {
    if (!this.#syncing) {
      this.#syncing = this.#sync().finally(() => {
        this.#syncing = undefined
      })
    }
    await this.#syncing
  }

  async stop(): Promise<void> {
    clearTimeout(this.#timer)
    this.#timer = undefined
    this.#stopping.abort(new Error('the server is stopping'))
    await this.#syncing?.catch(() => {})
  }

  #schedule(delayMs: number): void {
    if (this.#stopping.signal.aborted) return
    this.#timer = setTimeout(() => {
      void this.syncNow()
        .catch((err: unknown) => this.#logger.error({ err }, 'mirror poll failed'))
        .finally(() => this.#schedule(this.#options.config.mirrorInterval * 1000))
    }, delayMs)
    this.#timer.unref()
  }

  async #sync(): Promise<void> {
    let images: { name: string }[]
    try {
      await this.#register()
      images = await this.#readImageList()
    } catch (err) {
      if (this.#stopping.signal.aborted) return
      if (!this.#primaryDown) {
        this.#primaryDown = true
        this.#logger.warn(
          { primary: this.#primary, err: describe(err) },
          'the primary does not answer: serving the images this mirror holds',
        )
      }
      return
    }
    if (this.#primaryDown) {
      this.#primaryDown = false
      this.#logger.info({ primary: this.#primary }, 'the primary answers again')
    }
    try {
      await this.#readKeyList()
      this.#failing.delete(KEY_LIST)
    } catch (err) {
      if (!this.#stopping.signal.aborted) this.#reportFailure(KEY_LIST, err)
      return
    }
    for (const { name } of images) {
      if (this.#stopping.signal.aborted) return
      try {
        const served = await this.#mirrorImage(parseImageName(name))
        this.#failing.delete(name)
        // The primary lists this mirror in the image's torrent, and counts it in the split
        // of the first copy, from now rather than from the next poll.
        if (served) await this.#register().catch(() => {})
      } catch (err) {
        if (this.#stopping.signal.aborted) return
        this.#reportFailure(name, err)
      }
    }
  }

  /** Logs a failure to mirror an image (or to trust the key list) once while it repeats. */
  #reportFailure(what: string, err: unknown): void {
    const message = describe(err)
    if (this.#failing.get(what) === message) return
    this.#failing.set(what, message)
    this.#logger.error(
      {
        ...(what === KEY_LIST ? {} : { image: what }),
        primary: this.#primary,
        err: message,
        ...(err instanceof ImageSwarmError ? { code: err.code, hint: err.hint } : {}),
      },
      what === KEY_LIST
        ? "the primary's key list is refused: nothing is mirrored until it verifies"
        : 'cannot mirror the image; trying again at the next poll',
    )
  }

  /** Tells the primary where this mirror is and what it serves; adopts its server list. */
  async #register(): Promise<void> {
    const self = this.#options.self()
    if (self === undefined) return
    const { catalog, config, registry } = this.#options
    const answer = await this.#request(WIRE.mirrors, LIST_MAX_BYTES, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        url: self,
        images: catalog.published.map((image) => image.manifest.infoHash),
        intervalSeconds: config.mirrorInterval,
      }),
    })
    registry.adopt(
      parseServerList(answer, serverUrl(this.#primary, WIRE.mirrors)),
      config.mirrorInterval,
    )
  }

  /**
   * The primary's key list: served by this mirror as it is, and, with a trust root,
   * verified against it (never an older version than one verified before).
   */
  async #readKeyList(): Promise<void> {
    const bytes = await this.#request(TRUST_PATHS.keyList, LIST_MAX_BYTES, {}, true)
    if (bytes === undefined) {
      if (this.#root) {
        throw new ImageSwarmError(
          'E_SIGNATURE_MISSING',
          `the primary ${this.#primary} publishes no key list, and this mirror has a trust root`,
          {
            operation: 'mirror image',
            path: serverUrl(this.#primary, TRUST_PATHS.keyList),
            hint: 'run the primary with serve --keys DIR, or the mirror without --trust-root',
          },
        )
      }
      this.#keyListSource = undefined
      return
    }
    const signature = await this.#request(TRUST_PATHS.keyListSignature, LIST_MAX_BYTES, {}, true)
    const signatureText = signature === undefined ? undefined : signature.toString('utf8')
    if (this.#root) {
      const verified = verifyKeyList(
        bytes,
        signatureText,
        this.#root,
        {
          now: new Date(),
          ...(this.#keyList
            ? { seenVersion: this.#keyList.keyList.version, seenSha256: this.#keyList.sha256 }
            : {}),
        },
        serverUrl(this.#primary, TRUST_PATHS.keyList),
      )
      this.#keyList = { keyList: verified.keyList, sha256: verified.sha256 }
    }
    if (signatureText !== undefined) {
      this.#keyListSource = { keyListBytes: bytes, keyListSignature: signatureText }
    }
  }

  async #readImageList(): Promise<{ name: string }[]> {
    const source = serverUrl(this.#primary, WIRE.images)
    const body = await this.#request(WIRE.images, LIST_MAX_BYTES)
    const parsed = parseJson(body, source) as { images?: unknown }
    if (!Array.isArray(parsed.images)) throw invalidAnswer(source, 'no image list')
    return parsed.images.filter(
      (entry): entry is { name: string } =>
        typeof entry === 'object' && entry !== null && typeof entry.name === 'string',
    )
  }

  /**
   * Brings one image up to the primary's manifest: nothing, a new manifest, or a new
   * archive. True when a new archive went into service.
   */
  async #mirrorImage(name: string): Promise<boolean> {
    const { catalog, config } = this.#options
    const manifestBytes = await this.#request(manifestPath(name), SIGNED_MANIFEST_MAX_BYTES)
    const signatureBytes = await this.#request(
      manifestSignaturePath(name),
      SIGNED_MANIFEST_MAX_BYTES,
      {},
      true,
    )
    const signature = signatureBytes?.toString('utf8')
    const held = catalog.get(name)
    if (held?.manifestBytes.equals(manifestBytes) && held.manifestSignature === signature) {
      return false
    }
    const verified = this.#checkManifest(name, manifestBytes, signature, held?.manifest)
    const manifest = verified.manifest
    if (held && held.manifest.infoHash === manifest.infoHash) {
      // Signed again (a new expiry) or otherwise rewritten over the same archive.
      const files = await this.#writeManifest(name, manifestBytes, signature)
      await this.#options.serve({
        ...held,
        ...files,
        manifest,
        ...(verified.signingKeyId ? { signingKeyId: verified.signingKeyId } : {}),
      })
      this.#logger.debug({ image: name, infoHash: manifest.infoHash }, 'mirrored manifest renewed')
      return false
    }

    const torrentBytes = await this.#request(torrentPath(name), TORRENT_MAX_BYTES)
    const torrent = await parseTorrent(torrentBytes)
    if (torrent.infoHash.toLowerCase() !== manifest.infoHash.toLowerCase()) {
      throw new ImageSwarmError(
        'E_TORRENT_MISMATCH',
        `the primary's torrent of ${name} (infohash ${torrent.infoHash}) is not the one its manifest names (${manifest.infoHash})`,
        {
          operation: 'mirror image',
          path: serverUrl(this.#primary, torrentPath(name)),
          hint: 'the primary is republishing the image: the next poll tries again',
        },
      )
    }
    const archivePath = join(config.tarballsDir, manifest.archiveFile)
    // Kept from an earlier run of this mirror: nothing to download.
    let archive = await PublishedArchive.openVerified(archivePath, manifest)
    let fetched: { downloaded: number; downloadedFromWebSeed: number; seconds: number } = {
      downloaded: 0,
      downloadedFromWebSeed: 0,
      seconds: 0,
    }
    if (!archive) {
      const partPath = `${archivePath}.mirror-part`
      const self = this.#options.self()
      // The swarm as the primary describes it, less this server's own tracker (which does
      // not know the image yet).
      torrent.announce = torrent.announce.filter(
        (url) => self === undefined || !url.startsWith(self),
      )
      this.#logger.info(
        { image: name, infoHash: manifest.infoHash, size: manifest.size },
        'mirroring the image through the swarm',
      )
      fetched = await this.#options.seeder.fetch({
        name,
        torrent,
        path: partPath,
        webSeeds: torrent.urlList.filter((url) => self === undefined || !url.startsWith(self)),
        webSeedFallbackSeconds: WEB_SEED_FALLBACK_SECONDS,
        stallTimeoutSeconds: STALL_TIMEOUT_SECONDS,
        signal: this.#stopping.signal,
      })
      await rename(partPath, archivePath)
      archive = await PublishedArchive.openVerified(archivePath, manifest)
      if (!archive) {
        await rm(archivePath, { force: true })
        throw new ImageSwarmError(
          'E_ARCHIVE_DIGEST_MISMATCH',
          `the archive of ${name} the swarm delivered does not match the manifest's sha256`,
          {
            operation: 'mirror image',
            path: archivePath,
            hint: 'it was removed; the next poll downloads it again',
          },
        )
      }
    }
    try {
      const self = this.#options.self()
      // This server's tracker and web seed first, then the primary's: the seeder announces
      // to both, so the primary's nodes find this mirror's seeder as well.
      const servers = self === undefined ? [this.#primary] : [self, this.#primary]
      const ownTorrent = torrentForServers(torrentBytes, servers, name, manifest.archiveFile)
      const torrentFile = join(config.torrentsDir, torrentFileName(manifest.archiveFile))
      await writeFileAtomically(torrentFile, ownTorrent)
      const files = await this.#writeManifest(name, manifestBytes, signature)
      await this.#options.serve({
        manifest,
        root: serverUrl(this.#primary, manifestPath(name)),
        archivePath,
        archive,
        torrentPath: torrentFile,
        torrent: ownTorrent,
        packed: false,
        ...files,
        ...(verified.signingKeyId ? { signingKeyId: verified.signingKeyId } : {}),
      })
    } catch (err) {
      await archive.close()
      throw err
    }
    if (held && held.manifest.archiveFile !== manifest.archiveFile) {
      await rm(join(config.tarballsDir, held.manifest.archiveFile), { force: true })
    }
    this.#logger.info(
      {
        image: name,
        infoHash: manifest.infoHash,
        primary: this.#primary,
        downloaded: fetched.downloaded,
        downloadedFromWebSeed: fetched.downloadedFromWebSeed,
        seconds: Number(fetched.seconds.toFixed(2)),
      },
      'image mirrored',
    )
    return true
  }

  /**
   * The primary's manifest, parsed; with a trust root, verified against the primary's key
   * list (signature, image name, expiry, no serial below the one held).
   */
  #checkManifest(
    name: string,
    bytes: Buffer,
    signature: string | undefined,
    held: ImageManifest | undefined,
  ): { manifest: ImageManifest; signingKeyId?: string } {
    const source = serverUrl(this.#primary, manifestPath(name))
    if (this.#keyList) {
      const verified = verifySignedManifest(
        bytes,
        signature,
        {
          keyList: this.#keyList.keyList,
          now: new Date(),
          image: name,
          ...(held?.serial === undefined ? {} : { minSerial: held.serial }),
        },
        source,
      )
      return { manifest: verified.manifest, signingKeyId: verified.keyId }
    }
    const manifest = parseManifest(parseJson(bytes, source), source)
    if (manifest.name !== name) {
      throw new ImageSwarmError(
        'E_MANIFEST_WRONG_IMAGE',
        `the primary's manifest of ${name} names image ${manifest.name}`,
        { operation: 'mirror image', path: source, hint: 'check the primary server' },
      )
    }
    return { manifest }
  }

  /** The manifest's exact bytes and its signature (or none) into the torrents directory. */
  async #writeManifest(
    name: string,
    bytes: Buffer,
    signature: string | undefined,
  ): Promise<
    Pick<
      PublishedImage,
      'manifestPath' | 'manifestBytes' | 'manifestSignaturePath' | 'manifestSignature'
    >
  > {
    const { torrentsDir } = this.#options.config
    const path = join(torrentsDir, manifestFileName(name))
    const signaturePath = join(torrentsDir, manifestSignatureFileName(name))
    // The signature first: a manifest on disk never sits beside another one's signature.
    if (signature === undefined) await rm(signaturePath, { force: true })
    else await writeFileAtomically(signaturePath, signature)
    await writeFileAtomically(path, bytes)
    return {
      manifestPath: path,
      manifestBytes: bytes,
      manifestSignaturePath: signaturePath,
      ...(signature === undefined ? {} : { manifestSignature: signature }),
    }
  }

  /**
   * One request to the primary; its body, at most `limit` bytes. With `optional`, a 404 is
   * undefined (an unsigned image's signature, a server without keys).
   */
  async #request(path: string, limit: number, init?: RequestInit): Promise<Buffer>
  async #request(
    path: string,
    limit: number,
    init: RequestInit,
    optional: true,
  ): Promise<Buffer | undefined>
  async #request(
    path: string,
    limit: number,
    init: RequestInit = {},
    optional = false,
  ): Promise<Buffer | undefined> {
    const url = serverUrl(this.#primary, path)
    const response = await fetch(url, {
      ...init,
      signal: AbortSignal.any([AbortSignal.timeout(REQUEST_TIMEOUT_MS), this.#stopping.signal]),
    })
    if (optional && response.status === 404) {
      await response.body?.cancel()
      return undefined
    }
    if (!response.ok) {
      await response.body?.cancel()
      throw invalidAnswer(url, `HTTP ${response.status}`)
    }
    const declared = Number(response.headers.get('content-length') ?? Number.NaN)
    if (declared > limit) {
      await response.body?.cancel()
      throw invalidAnswer(url, `${declared} bytes, more than ${limit}`)
    }
    const body = Buffer.from(await response.arrayBuffer())
    if (body.byteLength > limit) throw invalidAnswer(url, `more than ${limit} bytes`)
    return body
  }
}

/** `ServerList` from the primary's answer to a registration, entries that are not one dropped. */
function parseServerList(body: Buffer, source: string): ServerList {
  const value = parseJson(body, source) as { servers?: unknown }
  if (!Array.isArray(value.servers)) throw invalidAnswer(source, 'no server list')
  const servers = value.servers.flatMap((entry: unknown) => {
    const { url, images } = (entry ?? {}) as { url?: unknown; images?: unknown }
    if (typeof url !== 'string' || !/^https?:\/\//.test(url) || !Array.isArray(images)) return []
    return [{ url, images: images.filter((hash): hash is string => typeof hash === 'string') }]
  })
  return { servers }
}

function parseJson(body: Buffer, source: string): unknown {
  try {
    return JSON.parse(body.toString('utf8'))
  } catch {
    throw invalidAnswer(source, 'not JSON')
  }
}

function invalidAnswer(source: string, why: string): ImageSwarmError {
  return new ImageSwarmError('E_SERVER_RESPONSE', `the primary answered ${source} with ${why}`, {
    operation: 'mirror image',
    path: source,
    hint: 'check that --mirror-of names an imageswarm server',
  })
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
