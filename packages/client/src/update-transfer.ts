import { createWriteStream } from 'node:fs'
import { open, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import {
  archivePath as archiveUrlPath,
  type DeltaDescriptor,
  decompressWithReference,
  type FileIndexEntry,
  type ImageManifest,
  ImageSwarmError,
  type InstallEvent,
  type Logger,
  serverUrl,
  sha256File,
  sha256Hex,
  VERSION_FILES,
} from '@imageswarm/core'
import type { ClientConfig } from './config.js'
import { downloadArchiveOverHttp } from './http-download.js'
import type { ImageServers, RequestSettings } from './image-servers.js'
import { fetchTorrent, type ServerRequestOptions } from './server-api.js'
import { SwarmSession } from './swarm-session.js'

// Where an update's bytes come from: the delta or the image through the swarm (or HTTP), opened
// against the root's own old files, and members by file.

export async function downloadFile(options: {
  manifest: ImageManifest
  path: string
  config: ClientConfig
  /** The image servers: the .torrent from the first that answers, every one in the swarm. */
  servers: ImageServers
  settings: RequestSettings
  peerId: string
  logger: Logger
  emit: (event: InstallEvent) => void
  signal: AbortSignal | undefined
}): Promise<{ session?: SwarmSession }> {
  const { manifest, config, servers, logger, emit, signal } = options
  if (await isComplete(options.path, manifest)) return {}
  if (config.downloadProtocol === 'http') {
    await downloadArchiveOverHttp({
      url: serverUrl(servers.current, archiveUrlPath(manifest.name, manifest.archiveFile)),
      path: options.path,
      manifest,
      stallTimeoutSeconds: config.stallTimeoutSeconds,
      logger,
      emit,
      connection: servers.connectionOf(servers.current),
      ...(signal ? { signal } : {}),
    })
    return {}
  }
  const { value: torrent } = await servers.firstAnswer(
    { what: `.torrent of ${manifest.archiveFile}` },
    options.settings,
    (request) => fetchTorrentOf(manifest, request),
  )
  const session = await SwarmSession.start({
    torrent,
    servers,
    peerId: options.peerId,
    manifest,
    archivePath: options.path,
    settings: config.swarm,
    webSeedFallbackSeconds: config.webSeedFallbackSeconds,
    stallTimeoutSeconds: config.stallTimeoutSeconds,
    logger,
    emit,
  })
  await session.downloadArchive(signal)
  return { session }
}

/** The image's `.torrent`, or a delta's (`delta-V-N.torrent` beside it), checked against it. */
export async function fetchTorrentOf(manifest: ImageManifest, request: ServerRequestOptions) {
  if (manifest.archiveFile.startsWith('delta-')) {
    const torrentFile = manifest.archiveFile.replace(/\.tar\.zst$/, '.torrent')
    return fetchTorrent(manifest, request, archiveUrlPath(manifest.name, torrentFile))
  }
  return fetchTorrent(manifest, request)
}

export async function isComplete(path: string, manifest: ImageManifest): Promise<boolean> {
  const st = await stat(path).catch(() => undefined)
  return st?.size === manifest.size && (await sha256File(path)) === manifest.sha256
}

export async function checkDigest(path: string, sha256: string, what: string): Promise<void> {
  const digest = await sha256File(path)
  if (digest === sha256) return
  await rm(path, { force: true })
  throw new ImageSwarmError(
    'E_ARCHIVE_DIGEST_MISMATCH',
    `${what} sha256 ${digest} does not match ${sha256}, which the manifest vouches for`,
    {
      operation: 'verify update',
      path,
      hint: 'the server’s files and manifest disagree; republish the image, then update again',
    },
  )
}

/**
 * The delta's tar: kept from an earlier run, or decompressed against the reference read
 * from the root's own old files (each checked against its SHA-256 first). Undefined when
 * the root's old files are not the ones the delta was made against.
 */
export async function openDelta(
  descriptor: DeltaDescriptor,
  target: string,
  staging: string,
  logger: Logger,
  signal: AbortSignal | undefined,
): Promise<string | undefined> {
  const deltaPath = join(staging, descriptor.file)
  const tar = join(staging, `delta-${descriptor.from}-${descriptor.to}.tar`)
  if ((await stat(tar).catch(() => undefined))?.size === descriptor.tarSize) {
    if ((await sha256File(tar)) === descriptor.tarSha256) return tar
  }
  await checkDigest(deltaPath, descriptor.sha256, descriptor.file)
  const reference = join(staging, `delta-${descriptor.from}-${descriptor.to}.reference`)
  try {
    const drifted = await writeReference(descriptor, target, reference)
    if (drifted !== undefined) {
      logger.warn(
        { path: drifted, from: descriptor.from },
        `${drifted} is not as version ${descriptor.from} had it: the delta cannot be opened against this root; fetching its members by file`,
      )
      return undefined
    }
    await decompressWithReference({
      input: deltaPath,
      output: tar,
      reference: descriptor.reference.length > 0 ? reference : undefined,
      windowLog: descriptor.windowLog,
      ...(signal ? { signal } : {}),
    })
  } finally {
    await rm(reference, { force: true })
  }
  const digest = await sha256File(tar)
  if (digest !== descriptor.tarSha256) {
    await rm(tar, { force: true })
    throw new ImageSwarmError(
      'E_ARCHIVE_DIGEST_MISMATCH',
      `the delta from version ${descriptor.from} opens to a tar with sha256 ${digest}, not ${descriptor.tarSha256}`,
      {
        operation: 'verify update',
        path: tar,
        hint: 'republish the image on the server, then update again',
      },
    )
  }
  return tar
}

/** Writes the reference; returns the first path whose contents are not the old version's. */
export async function writeReference(
  descriptor: DeltaDescriptor,
  target: string,
  output: string,
): Promise<string | undefined> {
  const out = createWriteStream(output)
  try {
    for (const file of descriptor.reference) {
      const path = join(target, file.path)
      const handle = await open(path, 'r').catch(() => undefined)
      if (!handle) return file.path
      try {
        const st = await handle.stat()
        if (!st.isFile() || st.size !== file.size) return file.path
        const bytes = await handle.readFile()
        if (sha256Hex(bytes) !== file.sha256) return file.path
        if (!out.write(bytes))
          await new Promise<void>((resolve) => out.once('drain', () => resolve()))
      } finally {
        await handle.close()
      }
    }
    return undefined
  } finally {
    await new Promise<void>((resolve, reject) =>
      out.end((err?: Error | null) => (err ? reject(err) : resolve())),
    )
  }
}

/** Members of the newest version fetched by file: a tar the server packs from its root. */
export async function fetchMembers(
  manifest: ImageManifest,
  entries: readonly FileIndexEntry[],
  output: string,
  request: ServerRequestOptions,
  logger: Logger,
): Promise<void> {
  const url = serverUrl(request.server, archiveUrlPath(manifest.name, VERSION_FILES.members))
  logger.info({ members: entries.length }, 'fetching members by file from the server')
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ version: manifest.serial, paths: entries.map((entry) => entry.path) }),
    ...(request.connection?.dispatcher ? { dispatcher: request.connection.dispatcher } : {}),
    ...(request.signal ? { signal: request.signal } : {}),
  } as RequestInit)
  if (!response.ok || response.body === null) {
    throw new ImageSwarmError(
      'E_SERVER_RESPONSE',
      `the server refused members of ${manifest.name}: HTTP ${response.status}`,
      {
        operation: 'update',
        path: url,
        hint: (await response.text().catch(() => '')).slice(0, 300) || 'see the server log',
      },
    )
  }
  await pipeline(response.body as unknown as NodeJS.ReadableStream, createWriteStream(output))
}
