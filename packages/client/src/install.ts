import { copyFile, rm, rmdir } from 'node:fs/promises'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  type ArchiveKey,
  archivePath as archiveUrlPath,
  createDecryptStream,
  extractArchive,
  type ImageManifest,
  ImageSwarmError,
  type InstallEvent,
  isImageSwarmError,
  type Logger,
  makePeerId,
  serverUrl,
  sha256File,
  silentLogger,
  type TransferTotals,
} from '@imageswarm/core'
import type { ClientConfig, ImageMode } from './config.js'
import { openArchiveKey } from './group-key.js'
import { downloadArchiveOverHttp } from './http-download.js'
import { ImageCache } from './image-cache.js'
import {
  type MountedImage,
  mountImage,
  mountRamImageDir,
  mountsImage,
  unmountImage,
} from './image-mount.js'
import { ImageServers, type RequestSettings } from './image-servers.js'
import {
  installedVersionOf,
  recordInstalledImage,
  recordTrustState,
  trustedInstallOf,
} from './image-trust.js'
import { InstallState } from './install-state.js'
import { fetchTorrent, type ImageWait } from './server-api.js'
import type { ServerConnection } from './server-connection.js'
import { chooseStaging } from './staging.js'
import { StatusReporter } from './status-reporter.js'
import { SwarmSession } from './swarm-session.js'
import {
  captureTimes,
  markComplete,
  markIncomplete,
  type PreparedTarget,
  prepareTargetRoot,
  restoreTimes,
} from './target-root.js'
import { UploadFloor } from './upload-floor.js'

export interface InstallOptions {
  config: ClientConfig
  logger?: Logger
  onEvent?: (event: InstallEvent) => void
  signal?: AbortSignal
  /**
   * The installer's disks (packages/installer): run in state `partitioning` once the
   * manifest and .torrent are in, before the target root is checked; it makes and mounts
   * the node's filesystems at the target.
   */
  prepareTarget?: (manifest: ImageManifest) => Promise<TargetPreparation | undefined>
  /**
   * The installer's configuration of the new root (fstab, bootloader, post-install
   * scripts): run in state `configuring` after extraction, before seeding, so the install
   * is reported done only once the node can boot what it installed.
   */
  configureTarget?: (target: string, manifest: ImageManifest) => Promise<void>
  /**
   * The image servers and their connections, when the caller makes requests of its own to
   * them (the installer's node config, overrides, scripts): it then learns which server
   * gave the manifest (`current`), and after the key list is verified their connections
   * accept only the certificates it pins. Default: the install's own, made from
   * `config.server` and closed at its end; ones handed in are the caller's to close.
   */
  servers?: ImageServers
}

/** What `prepareTarget` made of the target root. */
export interface TargetPreparation {
  /**
   * The target root holds what the hook put there (mount points of the layout's other
   * filesystems, a filesystem it kept): accept it as `force` does.
   */
  force?: boolean
}

export interface InstallResult {
  manifest: ImageManifest
  target: string
  totals: TransferTotals
  /** Where the archive came from: the swarm, or this node's cache. */
  source: 'swarm' | 'cache'
  seconds: number
  /** With a trust root: what the manifest's signature was checked under. */
  trust?: { serial: number; signingKeyId: string; keyListVersion: number; seconds: number }
  /** Image mode `disk` or `ram`: the image mounted read-only under an overlay at `target`. */
  mounted?: MountedImage
}

/** Where this install keeps the archive, and what happens to it afterwards. */
interface ArchivePlace {
  dir: string
  path: string
  /** After the install: delete it, move it into the cache, or leave it (already cached). */
  afterwards: 'delete' | 'admit-to-cache' | 'keep'
  /** A directory made for this install, removed when empty. */
  madeDir?: string
}

/**
 * Installs an image into the target root: manifest → .torrent → (the installer's
 * `prepareTarget`) → cache or staging → download from the swarm → sha256 of the whole
 * archive → extract → (the installer's `configureTarget`) → keep seeding while others
 * download → clean up. With `downloadProtocol: 'http'` there is no .torrent, the download
 * is one GET from the server (downloadArchiveOverHttp) and nothing is seeded afterwards.
 * Throws an `ImageSwarmError` on any failure, after emitting a `failed` event; a target
 * root that did not finish keeps its `.imageswarm-incomplete` marker.
 */
export async function installImage(options: InstallOptions): Promise<InstallResult> {
  const { config, signal } = options
  const logger = options.logger ?? silentLogger()
  const peerId = makePeerId('client')
  // Every request to a server goes over its connections: over HTTPS, once the key list is
  // verified, only to a server presenting a certificate it pins.
  const servers = options.servers ?? new ImageServers(config.server, { logger })
  const reporter = config.report
    ? new StatusReporter({
        // Every server's dashboard shows the whole swarm: each gets this node's reports.
        server: servers.urls,
        image: config.image,
        peerId,
        logger,
        connectionOf: (server) => servers.connectionOf(server),
        ...(config.node ? { node: config.node } : {}),
        ...(config.bootMac ? { mac: config.bootMac } : {}),
      })
    : undefined
  const emit = (event: InstallEvent) => {
    options.onEvent?.(event)
    reporter?.update(event)
  }
  const state = new InstallState(emit)
  const started = performance.now()
  let session: SwarmSession | undefined
  let place: ArchivePlace | undefined
  let cache: ImageCache | undefined
  let failure: ImageSwarmError | undefined
  let finished = false
  let mounted: MountedImage | undefined
  const mountMode = mountsImage(config.imageMode)
  try {
    const settings: RequestSettings = {
      connectTimeoutSeconds: config.connectTimeoutSeconds,
      ...(signal ? { signal } : {}),
      imageTimeoutSeconds: config.imageTimeoutSeconds,
      onRetry: (attempt: number, err: unknown) =>
        logger.warn({ attempt, err: String(err) }, 'image server not reachable yet; retrying'),
      onWait: (wait: ImageWait) => reportImageWait(wait, logger),
    }
    // From the first server that answers (see ImageServers): with a trust root, the key
    // list and the manifest are checked against it, and the .torrent below against the
    // signed infohash, before any disk is touched.
    const served = await servers.fetchImage(config, settings)
    const { manifest, verified } = served
    emit({ type: 'manifest', manifest })
    if (mountMode) refuseUnmountable(manifest, config.imageMode)
    // An encrypted image: its archive key, before any disk is touched, so a node that cannot
    // open it stops here with the target untouched.
    const archiveKey = await archiveKeyFor(
      manifest,
      config,
      Boolean(verified),
      { server: served.server, connection: servers.connectionOf(served.server) },
      logger,
      signal,
    )
    // Over plain HTTP the .torrent is not needed: the manifest's sha256 checks the archive.
    // It is checked against the manifest, so any server's will do: the current one's first.
    const torrent =
      config.downloadProtocol === 'torrent'
        ? (
            await servers.firstAnswer(
              { what: '.torrent', image: manifest.name },
              settings,
              (request) => fetchTorrent(manifest, request),
            )
          ).value
        : undefined
    const archiveUrl = serverUrl(
      servers.current,
      archiveUrlPath(manifest.name, manifest.archiveFile),
    )

    let force = config.force
    if (options.prepareTarget) {
      state.moveTo('partitioning')
      const preparation = await options.prepareTarget(manifest)
      force ||= preparation?.force === true
    }
    const prepared = await prepareTargetRoot(config.target, force, manifest)
    reportTargetPreparation(prepared, config.target, manifest, logger)
    cache = config.cache ? await ImageCache.open(config.cache, logger) : undefined
    const cached = await cache?.lookup(manifest)
    place = await placeImage(config, manifest, cache, cached)
    emit({ type: 'staging', dir: place.dir, archivePath: place.path })
    logger.info({ dir: place.dir, cached: Boolean(cached) }, 'archive location chosen')

    if (torrent) {
      session = await SwarmSession.start({
        torrent,
        servers,
        peerId,
        manifest,
        archivePath: place.path,
        alreadyVerified: Boolean(cached),
        settings: config.swarm,
        nodeName: config.node ?? hostname(),
        webSeedFallbackSeconds: config.webSeedFallbackSeconds,
        stallTimeoutSeconds: config.stallTimeoutSeconds,
        logger,
        emit,
      })
    }
    let httpTotals: TransferTotals | undefined
    // A cached copy's sha256 was checked by the cache lookup; the node seeds it at once.
    if (!cached) {
      state.moveTo('downloading')
      if (session) {
        await session.downloadArchive(signal)
      } else {
        httpTotals = await downloadArchiveOverHttp({
          url: archiveUrl,
          path: place.path,
          manifest,
          stallTimeoutSeconds: config.stallTimeoutSeconds,
          logger,
          emit,
          connection: servers.connectionOf(servers.current),
          ...(signal ? { signal } : {}),
        })
      }
    }
    state.moveTo('verifying')
    await verifyArchive(place.path, manifest, emit, {
      checkDigest: !cached,
      ...(signal ? { signal } : {}),
    })

    state.moveTo('extracting')
    const extractStarted = performance.now()
    // The record goes into the root (for a mounted image, its writable layer): the version
    // an update starts from, signed or not, and the server that gave it.
    const trusted = verified && trustedInstallOf(verified, served.server)
    const record = trusted || installedVersionOf(manifest, served.server)
    let times: Awaited<ReturnType<typeof captureTimes>> | undefined
    if (mountMode) {
      // The verified file, read-only under a writable layer: nothing is extracted.
      mounted = await mountImage({
        image: place.path,
        manifest,
        target: config.target,
        overlay: config.overlay,
        logger,
      })
      if (record) await recordInstalledImage(config.target, record, logger)
    } else {
      times = await extractIntoTarget({
        config,
        manifest,
        archive: place.path,
        targetWasEmpty: prepared.targetWasEmpty,
        archiveKey,
        record,
        logger,
        emit,
        ...(signal ? { signal } : {}),
      })
    }
    // The floor the next install of this node starts from, after its disk was wiped.
    if (trusted && cache) await recordTrustState(cache.dir, trusted, logger)
    emit({
      type: 'extracted',
      target: config.target,
      seconds: (performance.now() - extractStarted) / 1000,
    })
    if (options.configureTarget) {
      state.moveTo('configuring')
      await options.configureTarget(config.target, manifest)
    }

    let totals: TransferTotals = httpTotals ?? {
      downloaded: 0,
      downloadedFromServer: 0,
      uploaded: 0,
    }
    if (session) {
      state.moveTo('seeding')
      await linger(session, config.seedTimeSeconds, emit, logger, signal, config.seedUploadMin)
      totals = session.totals
      await session.close()
      session = undefined
    }
    await settleArchive(place, manifest, cache, logger)
    place = undefined
    if (times) await restoreTimes(times)

    state.moveTo('done')
    const seconds = (performance.now() - started) / 1000
    emit({ type: 'installed', target: config.target, totals, seconds })
    finished = true
    return {
      manifest,
      target: config.target,
      totals,
      source: cached ? 'cache' : 'swarm',
      seconds,
      ...(mounted ? { mounted } : {}),
      ...(verified
        ? {
            trust: {
              serial: verified.manifest.serial,
              signingKeyId: verified.signingKeyId,
              keyListVersion: verified.keyList.version,
              seconds: verified.seconds,
            },
          }
        : {}),
    }
  } catch (err) {
    const error = asInstallError(err, signal)
    failure = error
    if (state.current !== 'failed' && state.current !== 'done') state.moveTo('failed')
    emit({ type: 'failed', error: error.toJSON() })
    if (mounted) await unmountImage(mounted, logger)
    throw error
  } finally {
    await session?.close()
    if (place && !finished) await abandonArchive(place, failure)
    await reporter?.flush()
    if (!options.servers) await servers.close()
  }
}

/**
 * The archive key of an encrypted image (see openArchiveKey); undefined for a plain one.
 * Without a trust root the manifest's wrappings are not signed: logged, since then anyone
 * in the way could hand the node an image encrypted under a key of their own.
 */
async function archiveKeyFor(
  manifest: ImageManifest,
  config: ClientConfig,
  verified: boolean,
  /** The server that gave the manifest, and its connections. */
  from: { server: string; connection: ServerConnection },
  logger: Logger,
  signal: AbortSignal | undefined,
): Promise<ArchiveKey | undefined> {
  if (!manifest.encryption) return undefined
  if (manifest.serial === undefined) {
    throw new ImageSwarmError(
      'E_MANIFEST_INVALID',
      `the manifest of encrypted image ${manifest.name} has no serial, which its chunks are bound to`,
      {
        operation: 'read manifest',
        path: manifest.name,
        hint: 'republish the image with serve --encrypt --keys DIR',
      },
    )
  }
  if (!verified) {
    logger.warn(
      { image: manifest.name },
      'encrypted image without a trust root: its manifest (and the key wrappings in it) is not verified; give the node a root key (--trust-root)',
    )
  }
  // Over HTTPS with a pin, the group key goes only to the server the key list vouches for.
  const agent = from.connection.agent
  return openArchiveKey(
    manifest,
    config,
    { server: from.server, ...(agent ? { agent } : {}), ...(signal ? { signal } : {}) },
    logger,
  )
}

/** Says what the install waits for: logged when the wait starts, then once a minute. */
function reportImageWait(wait: ImageWait, logger: Logger): void {
  const why =
    wait.reason === 'publishing'
      ? 'it is packing it'
      : 'it does not publish it yet; --image-timeout'
  logger.warn(
    {
      image: wait.image,
      waitedSeconds: wait.waitedSeconds,
      limitSeconds: wait.limitSeconds,
      ...(wait.message ? { server: wait.message } : {}),
    },
    `waiting for the server to publish image ${wait.image} (${why}; up to ${wait.limitSeconds} s)`,
  )
}

/** Says what was found in the target root: an interrupted install resumed or removed. */
function reportTargetPreparation(
  prepared: PreparedTarget,
  target: string,
  manifest: ImageManifest,
  logger: Logger,
): void {
  if (prepared.resumed) {
    logger.warn(
      { target, infoHash: manifest.infoHash, started: prepared.resumed.started },
      'target root holds an interrupted install of this archive; extracting over it',
    )
  }
  if (prepared.startedOver) {
    const { previous, removed } = prepared.startedOver
    const what = previous
      ? `of image ${previous.image} infohash ${previous.infoHash} (started ${previous.started})`
      : 'that did not record its archive (an older client)'
    logger.warn(
      { target, previous, removed, infoHash: manifest.infoHash },
      `target root held an interrupted install ${what}; removed what it wrote (${removed.length} top-level entries) to install infohash ${manifest.infoHash} from scratch`,
    )
  }
}

/**
 * Extracts the verified archive into the target root, marked incomplete until it is whole
 * (with the install record inside). Returns the root's and tmp/'s times, which removing
 * the marker and the staging change after tar set them.
 */
async function extractIntoTarget(options: {
  config: ClientConfig
  manifest: ImageManifest
  archive: string
  targetWasEmpty: boolean
  archiveKey: Awaited<ReturnType<typeof archiveKeyFor>>
  record: Parameters<typeof recordInstalledImage>[1] | undefined
  logger: Logger
  emit: (event: InstallEvent) => void
  signal?: AbortSignal
}): Promise<Awaited<ReturnType<typeof captureTimes>>> {
  const { config, manifest, archive, archiveKey, logger, signal } = options
  await markIncomplete(config.target, {
    image: manifest.name,
    infoHash: manifest.infoHash,
    targetWasEmpty: options.targetWasEmpty,
  })
  await extractArchive({
    archive,
    target: config.target,
    format: manifest.format ?? 'tar',
    compression: manifest.compression,
    // No alreadyValidated: into an empty target root, extractArchive checks every
    // header for hostile paths as the stream passes on its way to tar (one
    // decompression); a refused archive leaves the target as it was. With staging on
    // the target's disk (/a/tmp/imageswarm-*), the root holds tmp/, so it validates
    // the whole archive first, then extracts.
    logger,
    ...(signal ? { signal } : {}),
    onProgress: (bytes, size) => options.emit({ type: 'extract-progress', bytes, size }),
    // The ciphertext's sha256 matched the (signed) manifest above; each chunk's tag is
    // checked on the way to tar, and a failing one stops the gated extraction, which
    // removes what tar wrote (E_DECRYPT_FAILED).
    ...(archiveKey
      ? {
          decrypt: () =>
            createDecryptStream(
              archiveKey,
              { image: manifest.name, serial: manifest.serial ?? 0 },
              archive,
            ),
        }
      : {}),
  })
  // In the root while it is still marked incomplete: the record is part of the install.
  if (options.record) await recordInstalledImage(config.target, options.record, logger)
  const times = await captureTimes([config.target, join(config.target, 'tmp')])
  await markComplete(config.target)
  return times
}

/** Image modes `disk` and `ram` mount the image: it must be SquashFS. */
function refuseUnmountable(manifest: ImageManifest, mode: ImageMode): void {
  if ((manifest.format ?? 'tar') === 'squashfs') return
  throw new ImageSwarmError(
    'E_CONFIG_INVALID',
    `image ${manifest.name} is a tar archive; image mode ${mode} mounts the image, which needs a SquashFS image`,
    {
      operation: 'install',
      path: 'imageMode',
      hint: `publish it with imageswarm serve --format ${manifest.name}=squashfs, or install it with image mode extract`,
    },
  )
}

/**
 * Where the image is kept: the cache's verified copy; for image mode `ram`, a tmpfs of its
 * own (a cached copy copied there, not fetched); else the cache when it has room, or
 * staging. Image mode `disk` keeps it in the cache or nowhere.
 */
async function placeImage(
  config: ClientConfig,
  manifest: ImageManifest,
  cache: ImageCache | undefined,
  cached: string | undefined,
): Promise<ArchivePlace> {
  if (config.imageMode === 'ram') {
    const dir = await mountRamImageDir(manifest)
    const path = join(dir, manifest.archiveFile)
    // A copy the cache holds is copied into RAM, not fetched again.
    if (cached) await copyFile(cached, path)
    return { dir, path, afterwards: 'keep' }
  }
  if (cached && cache) return { dir: cache.dir, path: cached, afterwards: 'keep' }
  const place = await placeDownload(config, manifest, cache)
  if (config.imageMode === 'disk' && place.afterwards === 'delete') {
    // The cache could not be opened (logged), or has no room even after evicting.
    throw new ImageSwarmError(
      cache ? 'E_NO_SPACE' : 'E_STAGING_NOT_WRITABLE',
      cache
        ? `the image cache ${config.cache} cannot hold image ${manifest.name} (${manifest.size} bytes), and image mode disk keeps it there`
        : `the image cache ${config.cache} cannot be used (see the log), and image mode disk keeps the image there`,
      {
        operation: 'place the image',
        path: config.cache ?? '',
        hint: cache
          ? 'make the cache partition larger (older images are evicted first), or use image mode ram'
          : 'check the cache partition (mountable, writable), or use image mode ram',
      },
    )
  }
  return place
}

/** Downloads go into the cache when it has room, else into staging. */
async function placeDownload(
  config: ClientConfig,
  manifest: ImageManifest,
  cache: ImageCache | undefined,
): Promise<ArchivePlace> {
  if (cache && (await cache.reserve(manifest))) {
    const dir = cache.incomingDir
    return { dir, path: join(dir, manifest.archiveFile), afterwards: 'admit-to-cache' }
  }
  const staging = await chooseStaging(config.staging, config.target, manifest, config.memoryReserve)
  return {
    dir: staging.dir,
    path: join(staging.dir, manifest.archiveFile),
    afterwards: 'delete',
    ...(staging.removeAfter ? { madeDir: staging.dir } : {}),
  }
}

/** The whole archive's sha256 against the manifest's (skipped for a cache hit, which
 * the cache lookup checked). */
async function verifyArchive(
  path: string,
  manifest: ImageManifest,
  emit: (event: InstallEvent) => void,
  options: { checkDigest: boolean; signal?: AbortSignal },
): Promise<void> {
  const started = performance.now()
  const digest = options.checkDigest ? await sha256File(path, options.signal) : manifest.sha256
  if (digest !== manifest.sha256) {
    throw new ImageSwarmError(
      'E_ARCHIVE_DIGEST_MISMATCH',
      `archive sha256 ${digest} does not match the manifest's ${manifest.sha256}`,
      {
        operation: 'verify archive',
        path,
        hint: 'the server’s manifest and archive disagree; republish the image (--update-image)',
      },
    )
  }
  emit({ type: 'verified', sha256: digest, seconds: (performance.now() - started) / 1000 })
}

/** After a good install: the archive goes into the cache, stays there, or is deleted. */
async function settleArchive(
  place: ArchivePlace,
  manifest: ImageManifest,
  cache: ImageCache | undefined,
  logger: Logger,
): Promise<void> {
  if (place.afterwards === 'admit-to-cache' && cache) {
    const path = await cache.admit(manifest)
    logger.info({ cache: path }, 'archive kept in the image cache for the next boot')
  } else if (place.afterwards === 'delete') {
    await rm(place.path, { force: true })
  }
  if (place.madeDir) await rmdir(place.madeDir).catch(() => {})
}

/**
 * After a failure: an archive that failed verification is deleted; anything else (a
 * partial download, a verified archive whose extraction failed) stays, so the next
 * attempt resumes from the pieces already there instead of starting over.
 */
async function abandonArchive(place: ArchivePlace, failure?: ImageSwarmError): Promise<void> {
  if (place.afterwards === 'keep' || failure?.code !== 'E_ARCHIVE_DIGEST_MISMATCH') return
  await rm(place.path, { force: true })
  if (place.madeDir) await rmdir(place.madeDir).catch(() => {})
}

/**
 * Keeps seeding while other nodes still download, for at most `seconds`; with
 * `uploadMin` (bytes/s, `seedUploadMin`), also leaves once this node's upload over 5 s
 * falls below it (SystemImager's BITTORRENT_UPLOAD_MIN).
 */
export async function linger(
  session: SwarmSession,
  seconds: number,
  emit: (event: InstallEvent) => void,
  logger: Logger,
  signal?: AbortSignal,
  uploadMin = 0,
): Promise<void> {
  const deadline = Date.now() + seconds * 1000
  const floor = new UploadFloor(uploadMin)
  while (Date.now() < deadline && !signal?.aborted) {
    const leechers = await session.leechers()
    emit({ type: 'seeding', totals: session.totals, leechers })
    if (leechers === 0) return
    if (floor.observe(Date.now(), session.totals.uploaded)) {
      logger.info({ uploadMin }, 'uploading less than the seed upload minimum; leaving the swarm')
      return
    }
    await sleep(Math.min(2000, Math.max(deadline - Date.now(), 0)), undefined, { signal }).catch(
      () => {},
    )
  }
  if (Date.now() >= deadline) logger.info({ seconds }, 'seed time is up; leaving the swarm')
}

function asInstallError(err: unknown, signal?: AbortSignal): ImageSwarmError {
  return asClientError(err, signal, {
    what: 'install',
    hint: 'run the install again; the download resumes from the pieces already in staging',
  })
}

/** An install's or an update's failure as an ImageSwarmError: interrupted, or a download. */
export function asClientError(
  err: unknown,
  signal: AbortSignal | undefined,
  pipeline: { what: string; hint: string },
): ImageSwarmError {
  if (isImageSwarmError(err)) return err
  if (signal?.aborted) {
    return new ImageSwarmError('E_INTERRUPTED', `${pipeline.what} interrupted`, {
      hint: pipeline.hint,
      cause: err,
    })
  }
  return new ImageSwarmError('E_DOWNLOAD_FAILED', `${pipeline.what} failed: ${String(err)}`, {
    cause: err,
  })
}
