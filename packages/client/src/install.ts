import { rm, rmdir } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  archivePath as archiveUrlPath,
  extractArchive,
  type ImageManifest,
  ImageSwarmError,
  type InstallEvent,
  isImageSwarmError,
  type Logger,
  serverUrl,
  sha256File,
  silentLogger,
  type TransferTotals,
} from '@imageswarm/core'
import type { ClientConfig } from './config.js'
import { InstallState } from './install-state.js'
import { fetchManifest, fetchTorrent } from './server-api.js'
import { chooseStaging } from './staging.js'
import { SwarmSession } from './swarm-session.js'
import { markComplete, markIncomplete, prepareTargetRoot } from './target-root.js'

export interface InstallOptions {
  config: ClientConfig
  logger?: Logger
  onEvent?: (event: InstallEvent) => void
  signal?: AbortSignal
}

export interface InstallResult {
  manifest: ImageManifest
  target: string
  totals: TransferTotals
  seconds: number
}

/**
 * Installs an image into the target root: manifest → .torrent → staging → download
 * from the swarm → sha256 of the whole archive → extract → keep seeding while others
 * download → remove the archive. Throws an `ImageSwarmError` on any failure, after
 * emitting a `failed` event; a target root that did not finish keeps its
 * `.imageswarm-incomplete` marker.
 */
export async function installImage(options: InstallOptions): Promise<InstallResult> {
  const { config, signal } = options
  const logger = options.logger ?? silentLogger()
  const emit = options.onEvent ?? (() => {})
  const state = new InstallState(emit)
  const started = performance.now()
  let session: SwarmSession | undefined
  let archive: string | undefined
  let removeStagingDir: string | undefined
  try {
    const request = {
      server: config.server,
      connectTimeoutSeconds: config.connectTimeoutSeconds,
      ...(signal ? { signal } : {}),
      onRetry: (attempt: number, err: unknown) =>
        logger.warn({ attempt, err: String(err) }, 'image server not reachable yet; retrying'),
    }
    const manifest = await fetchManifest(config.image, request)
    emit({ type: 'manifest', manifest })
    const torrent = await fetchTorrent(manifest, request)
    // Offered as a fallback web seed even if the .torrent predates a server move.
    torrent.urlList = [
      serverUrl(config.server, archiveUrlPath(manifest.name, manifest.archiveFile)),
    ]

    await prepareTargetRoot(config.target, config.force)
    const staging = await chooseStaging(config.staging, config.target, manifest)
    archive = join(staging.dir, manifest.archiveFile)
    if (staging.removeAfter) removeStagingDir = staging.dir
    emit({ type: 'staging', dir: staging.dir, archivePath: archive })
    logger.info({ staging: staging.dir, kind: staging.kind }, 'staging directory chosen')

    state.moveTo('downloading')
    session = new SwarmSession({
      torrent,
      manifest,
      stagingDir: staging.dir,
      settings: config.swarm,
      webSeedFallbackSeconds: config.webSeedFallbackSeconds,
      stallTimeoutSeconds: config.stallTimeoutSeconds,
      logger,
      emit,
    })
    await session.downloadArchive(signal)

    state.moveTo('verifying')
    const verifyStarted = performance.now()
    const sha256 = await sha256File(archive, signal)
    if (sha256 !== manifest.sha256) {
      throw new ImageSwarmError(
        'E_ARCHIVE_DIGEST_MISMATCH',
        `archive sha256 ${sha256} does not match the manifest's ${manifest.sha256}`,
        {
          operation: 'verify archive',
          path: archive,
          hint: 'the server’s manifest and archive disagree; republish the image (--update-image)',
        },
      )
    }
    emit({ type: 'verified', sha256, seconds: (performance.now() - verifyStarted) / 1000 })

    state.moveTo('extracting')
    const extractStarted = performance.now()
    await markIncomplete(config.target)
    await extractArchive({
      archive,
      target: config.target,
      compression: manifest.compression,
      logger,
      ...(signal ? { signal } : {}),
      onProgress: (bytes, size) => emit({ type: 'extract-progress', bytes, size }),
    })
    await markComplete(config.target)
    emit({
      type: 'extracted',
      target: config.target,
      seconds: (performance.now() - extractStarted) / 1000,
    })

    state.moveTo('seeding')
    await linger(session, config.seedTimeSeconds, emit, logger, signal)
    const totals = session.totals
    state.moveTo('done')
    const seconds = (performance.now() - started) / 1000
    emit({ type: 'installed', target: config.target, totals, seconds })
    return { manifest, target: config.target, totals, seconds }
  } catch (err) {
    const error = asInstallError(err, signal)
    if (state.current !== 'failed' && state.current !== 'done') state.moveTo('failed')
    emit({ type: 'failed', error: error.toJSON() })
    throw error
  } finally {
    await session?.close()
    // The archive is only staging: it goes whether the install worked or not, except
    // after an interruption, where it lets the next attempt resume.
    if (archive && !signal?.aborted) await rm(archive, { force: true })
    if (removeStagingDir && !signal?.aborted) await rmdir(removeStagingDir).catch(() => {})
  }
}

/** Keeps seeding while other nodes still download, for at most `seconds`. */
async function linger(
  session: SwarmSession,
  seconds: number,
  emit: (event: InstallEvent) => void,
  logger: Logger,
  signal?: AbortSignal,
): Promise<void> {
  const deadline = Date.now() + seconds * 1000
  while (Date.now() < deadline && !signal?.aborted) {
    const leechers = await session.leechers()
    emit({ type: 'seeding', totals: session.totals, leechers })
    if (leechers === 0) return
    await sleep(Math.min(2000, Math.max(deadline - Date.now(), 0)), undefined, { signal }).catch(
      () => {},
    )
  }
  if (Date.now() >= deadline) logger.info({ seconds }, 'seed time is up; leaving the swarm')
}

function asInstallError(err: unknown, signal?: AbortSignal): ImageSwarmError {
  if (isImageSwarmError(err)) return err
  if (signal?.aborted) {
    return new ImageSwarmError('E_INTERRUPTED', 'install interrupted', {
      hint: 'run the install again; the download resumes from the pieces already in staging',
      cause: err,
    })
  }
  return new ImageSwarmError('E_DOWNLOAD_FAILED', `install failed: ${String(err)}`, { cause: err })
}
