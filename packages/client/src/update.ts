import { createHash } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { mkdir, open, readFile, rm, stat } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { gunzipSync } from 'node:zlib'
import {
  archivePath as archiveUrlPath,
  clearTypeChanges,
  commitStaged,
  compareRootWithIndex,
  DEFAULT_UPDATE_EXCLUDES,
  type DeltaDescriptor,
  DeltaDescriptorSchema,
  type DeltasDocument,
  DeltasDocumentSchema,
  decompressWithReference,
  deltaSwarmName,
  errnoOf,
  FileIndexDocumentSchema,
  type FileIndexEntry,
  type ImageManifest,
  ImageSwarmError,
  INSTALLED_RECORD_PATH,
  type InstallEvent,
  type InstalledImageRecord,
  isImageSwarmError,
  type Logger,
  type MemberSource,
  makePeerId,
  NODE_UPDATE_EXCLUDE_FILE,
  parseInstalledImageRecord,
  parseVersionDocument,
  type RootDifference,
  readUpdateExcludeFile,
  restoreDirectories,
  serverUrl,
  sha256File,
  silentLogger,
  stageMembers,
  type TransferTotals,
  UpdateExcludes,
  type UpdatePlan,
  VERSION_FILES,
  withHardlinkGroups,
} from '@imageswarm/core'
import type { ClientConfig } from './config.js'
import { downloadArchiveOverHttp } from './http-download.js'
import { installedVersionOf, recordInstalledImage, trustedInstallOf } from './image-trust.js'
import { linger, verifyImage } from './install.js'
import { InstallState } from './install-state.js'
import {
  fetchInstallFile,
  fetchManifest,
  fetchTorrent,
  type ServerRequestOptions,
} from './server-api.js'
import { ServerConnection } from './server-connection.js'
import { StatusReporter } from './status-reporter.js'
import { SwarmSession } from './swarm-session.js'
import { captureTimes, restoreTimes } from './target-root.js'

/** Where an update keeps what it downloads, inside the root it updates (a default exclude). */
export const UPDATE_STAGING_DIR = 'var/lib/imageswarm/update'

/** What the node keeps of its own inside the root, whatever the image has. */
const NODE_OWNED_PATHS = [INSTALLED_RECORD_PATH, UPDATE_STAGING_DIR]

/** The most a file index or a deltas document may be (a root of ~1 M entries). */
const VERSION_DOCUMENT_LIMIT = 256 * 1024 * 1024

export interface UpdateSettings {
  /** List what would change; change nothing (`--dry-run`). */
  dryRun: boolean
  /** Compare every regular file's SHA-256, not only size and mtime (`--checksum`). */
  checksum: boolean
  /** Remove what the image does not have (default; SystemImager's `--no-delete` turns it off). */
  delete: boolean
  /** More exclude patterns, from `--exclude` and `--exclude-file`. */
  excludes: readonly string[]
}

export interface UpdateOptions {
  /** The client's settings; `target` is the root to update (`/` on a live node). */
  config: ClientConfig
  update: UpdateSettings
  logger?: Logger
  onEvent?: (event: InstallEvent) => void
  signal?: AbortSignal
  connection?: ServerConnection
}

export interface UpdateResult {
  manifest: ImageManifest
  target: string
  plan: UpdatePlan
  totals: TransferTotals
  seconds: number
}

/**
 * Updates an installed root to the newest version of its image (issue 16, docs/updates.md):
 * newest manifest (verified with a trust root) → its file index and deltas document (their
 * SHA-256 in the manifest) → the root compared with the index, excludes aside → the source
 * of what differs: the delta from the version the root records (downloaded through the
 * swarm, opened against a reference read from the root's own old files), or the full image
 * when the server no longer keeps that version, plus members fetched by file for what the
 * source lacks (local changes) → each member staged beside its final name, checked against
 * the index, renamed into place → removals → directory metadata → the root compared again →
 * the version recorded in `/etc/imageswarm/installed.json`. An interrupted update leaves the
 * old record; run again, it compares afresh and finishes.
 */
export async function updateImage(options: UpdateOptions): Promise<UpdateResult> {
  const { config, signal } = options
  const logger = options.logger ?? silentLogger()
  const target = config.target
  const peerId = makePeerId('client')
  const connection = options.connection ?? new ServerConnection(config.server)
  // The dashboard shows an updating node in the swarm it downloads from (the delta's, or
  // the image's): made once the plan says which (`reportTo`).
  let reporter: StatusReporter | undefined
  const emit = (event: InstallEvent) => {
    options.onEvent?.(event)
    reporter?.update(event)
  }
  const reportTo = (swarm: string, archive: ImageManifest) => {
    if (!config.report || options.update.dryRun) return
    reporter = new StatusReporter({
      server: config.server,
      image: swarm,
      peerId,
      logger,
      connection,
      ...(config.node ? { node: config.node } : {}),
    })
    reporter.update({ type: 'manifest', manifest: archive })
  }
  const state = new InstallState(emit)
  const started = performance.now()
  const staging = join(target, UPDATE_STAGING_DIR)
  let session: SwarmSession | undefined
  let totals: TransferTotals = { downloaded: 0, downloadedFromServer: 0, uploaded: 0 }
  const temporary: string[] = []
  try {
    const request: ServerRequestOptions = {
      server: config.server,
      connectTimeoutSeconds: config.connectTimeoutSeconds,
      imageTimeoutSeconds: config.imageTimeoutSeconds,
      connection,
      ...(signal ? { signal } : {}),
      onRetry: (attempt, err) =>
        logger.warn({ attempt, err: String(err) }, 'image server not reachable yet; retrying'),
    }
    const record = await readInstalledRecord(target)
    if (record && record.image !== config.image) {
      throw new ImageSwarmError(
        'E_USAGE',
        `${target} holds image ${record.image}, not ${config.image}`,
        {
          operation: 'update',
          path: join(target, INSTALLED_RECORD_PATH),
          hint: `update it with --image ${record.image}, or install ${config.image} afresh`,
        },
      )
    }
    const verified = await verifyImage(config, request, logger)
    const manifest = verified?.manifest ?? (await fetchManifest(config.image, request))
    emit({ type: 'manifest', manifest })
    const newest = requireVersions(manifest)
    const [entries, deltas] = await Promise.all([
      fetchFileIndex(manifest, request),
      fetchDeltas(manifest, request),
    ])
    const excludes = new UpdateExcludes([
      ...DEFAULT_UPDATE_EXCLUDES,
      ...deltas.excludes,
      ...(await readUpdateExcludeFile(join(target, NODE_UPDATE_EXCLUDE_FILE), false)),
      ...options.update.excludes,
    ])
    const difference = await compareRootWithIndex({
      target,
      entries,
      excludes,
      checksum: options.update.checksum,
      keep: NODE_OWNED_PATHS,
    })
    if (!options.update.delete) difference.remove = []

    const from = record?.serial
    const deltaEntry =
      from === newest ? undefined : deltas.deltas.find((delta) => delta.from === from)
    const descriptor = deltaEntry && (await fetchDescriptor(manifest, deltaEntry, request))
    // What the quick comparison cannot see is written anyway: what changed since the
    // version the root records (a delta's members: an xattr changed, mtime kept), and, when
    // that version is unknown, every entry with xattrs or ACLs (the node does not read them).
    const attributed = entries.filter((entry) => entry.attributes !== undefined)
    addToWrite(
      difference,
      entries,
      descriptor
        ? descriptor.members
        : from !== newest || options.update.checksum
          ? attributed.map((entry) => entry.path)
          : [],
      excludes,
    )
    const nothing = difference.write.length === 0 && difference.remove.length === 0
    // A root at its recorded version with a few local changes needs those members by file,
    // not the image.
    const source: UpdatePlan['source'] = nothing
      ? 'none'
      : descriptor
        ? 'delta'
        : from === newest
          ? 'files'
          : 'image'
    const reason =
      source !== 'image'
        ? undefined
        : from === undefined
          ? `${target} records no installed version`
          : `the server no longer keeps version ${from} (it keeps ${deltas.kept.join(', ')})`
    const inSource = (path: string) =>
      source === 'image' || (descriptor !== undefined && deltaMembers(descriptor).has(path))
    const touchedDirectories = directoriesTouched(difference, entries, excludes)
    const byFile = [...difference.write.map(({ entry }) => entry), ...touchedDirectories].filter(
      (entry) => !inSource(entry.path),
    )
    const plan: UpdatePlan = {
      image: manifest.name,
      ...(from === undefined ? {} : { from }),
      to: newest,
      write: difference.write.length,
      remove: difference.remove.length,
      sample: {
        write: difference.write
          .slice(0, 20)
          .map(({ entry, reason }) => `${entry.path} (${reason})`),
        remove: difference.remove.slice(0, 20),
      },
      source,
      ...(reason === undefined ? {} : { reason }),
      byFile: byFile.length,
    }
    emit({ type: 'update-plan', plan })
    logPlan(plan, difference, logger)
    if (options.update.dryRun || source === 'none') {
      const seconds = (performance.now() - started) / 1000
      if (!options.update.dryRun) {
        if (record?.serial !== newest)
          await recordVersion(target, manifest, verified, config, logger)
        emit({ type: 'updated', target, version: newest, totals, seconds })
      }
      return { manifest, target, plan, totals, seconds }
    }

    await makeStaging(target)
    const sources: { source: MemberSource; entries: FileIndexEntry[] }[] = []
    const wanted = new Map<string, FileIndexEntry>()
    for (const { entry } of difference.write) wanted.set(entry.path, entry)
    for (const entry of touchedDirectories) wanted.set(entry.path, entry)

    if (source === 'delta' && descriptor) {
      reportTo(
        deltaSwarmName(manifest.name, descriptor.from, descriptor.to),
        deltaManifest(manifest, descriptor),
      )
      state.moveTo('downloading')
      const delta = await downloadFile({
        manifest: deltaManifest(manifest, descriptor),
        path: join(staging, descriptor.file),
        config,
        request,
        peerId,
        logger,
        emit,
        connection,
        signal,
      })
      session = delta.session
      state.moveTo('verifying')
      const tar = await openDelta(descriptor, target, staging, logger, signal)
      if (tar) {
        temporary.push(tar, join(staging, descriptor.file))
        sources.push({
          source: { path: tar, compression: 'none' },
          entries: [...wanted.values()].filter((entry) => inSource(entry.path)),
        })
      } else {
        // The root's old files are not what the delta was made against (changed by hand):
        // what the delta would have brought is fetched by file too.
        for (const entry of wanted.values()) if (inSource(entry.path)) byFile.push(entry)
      }
    } else if (source === 'image') {
      logger.warn({ reason }, `${reason}: updating from the full image`)
      reportTo(manifest.name, manifest)
      state.moveTo('downloading')
      const image = await downloadFile({
        manifest,
        path: join(staging, manifest.archiveFile),
        config,
        request,
        peerId,
        logger,
        emit,
        connection,
        signal,
      })
      session = image.session
      state.moveTo('verifying')
      await checkDigest(join(staging, manifest.archiveFile), manifest.sha256, manifest.archiveFile)
      temporary.push(join(staging, manifest.archiveFile))
      sources.push({
        source: { path: join(staging, manifest.archiveFile), compression: manifest.compression },
        entries: [...wanted.values()],
      })
    }
    if (byFile.length > 0) {
      if (reporter === undefined) reportTo(manifest.name, manifest)
      if (state.current === 'waiting') state.moveTo('downloading')
      const path = join(staging, `members-${newest}.tar`)
      await fetchMembers(manifest, uniqueByPath(byFile), path, request, logger)
      temporary.push(path)
      sources.push({ source: { path, compression: 'none' }, entries: uniqueByPath(byFile) })
    }

    // Applying: files first (staged, checked, renamed), removals, then directories.
    if (state.current !== 'verifying') state.moveTo('verifying')
    state.moveTo('extracting')
    const applyStarted = performance.now()
    await clearTypeChanges(target, [...wanted.values()])
    const staged: FileIndexEntry[][] = []
    for (const { source: member, entries: chosen } of sources) {
      staged.push(
        await stageMembers({
          target,
          source: member,
          entries: chosen,
          logger,
          ...(signal ? { signal } : {}),
        }),
      )
    }
    let committed = 0
    const total = staged.reduce((sum, list) => sum + list.length, 0)
    for (const list of staged) {
      await commitStaged(target, list, () => {
        committed++
        if (committed % 256 === 0 || committed === total) {
          emit({ type: 'extract-progress', bytes: committed, size: total })
        }
        afterCommitHook?.(committed)
      })
    }
    for (const path of difference.remove)
      await rm(join(target, path), { recursive: true, force: true })
    for (const { source: member, entries: chosen } of sources) {
      await restoreDirectories({
        target,
        source: member,
        entries: chosen,
        logger,
        ...(signal ? { signal } : {}),
      })
    }
    emit({ type: 'extracted', target, seconds: (performance.now() - applyStarted) / 1000 })

    // Only a root that now equals the version records it.
    const after = await compareRootWithIndex({
      target,
      entries,
      excludes,
      checksum: false,
      keep: NODE_OWNED_PATHS,
    })
    const left = [
      ...after.write.map(({ entry, reason: why }) => `${entry.path} (${why})`),
      ...(options.update.delete ? after.remove.map((path) => `${path} (not in the image)`) : []),
    ]
    if (left.length > 0) {
      throw new ImageSwarmError(
        'E_UPDATE_INCOMPLETE',
        `after the update ${target} still differs from version ${newest} in ${left.length} entries: ${left.slice(0, 5).join(', ')}`,
        {
          operation: 'update',
          path: target,
          hint: 'run the update again; if these entries stay, exclude them (--exclude) or check what changes them',
        },
      )
    }
    await recordVersion(target, manifest, verified, config, logger)
    await Promise.all(temporary.map((path) => rm(path, { force: true })))
    if (session) {
      state.moveTo('seeding')
      await linger(session, config.seedTimeSeconds, emit, logger, signal)
      totals = session.totals
      await session.close()
      session = undefined
    }
    state.moveTo('done')
    const seconds = (performance.now() - started) / 1000
    emit({ type: 'updated', target, version: newest, totals, seconds })
    return { manifest, target, plan, totals, seconds }
  } catch (err) {
    const error = asUpdateError(err, signal)
    if (state.current !== 'failed' && state.current !== 'done') state.moveTo('failed')
    emit({ type: 'failed', error: error.toJSON() })
    throw error
  } finally {
    await session?.close()
    await reporter?.flush()
    if (!options.connection) await connection.close()
  }
}

/** Test hook: told of every member renamed into place (the interrupted-update test). */
let afterCommitHook: ((committed: number) => void) | undefined
if (process.env.IMAGESWARM_TEST_KILL_AFTER_COMMITS) {
  const limit = Number(process.env.IMAGESWARM_TEST_KILL_AFTER_COMMITS)
  afterCommitHook = (committed) => {
    if (committed >= limit) process.kill(process.pid, 'SIGKILL')
  }
}

/**
 * Makes the update's staging directory in the root, putting back the mtimes of the image's
 * directories it is made in (`/var/lib` keeps the mtime the image gave it).
 */
async function makeStaging(target: string): Promise<void> {
  const parts = UPDATE_STAGING_DIR.split('/')
  const ancestors = [target, ...parts.map((_, i) => join(target, ...parts.slice(0, i + 1)))]
  const times = await captureTimes(ancestors)
  await mkdir(join(target, UPDATE_STAGING_DIR), { recursive: true })
  await restoreTimes(times)
}

/** The root's record of its image and version; undefined when it has none. */
export async function readInstalledRecord(
  target: string,
): Promise<InstalledImageRecord | undefined> {
  const path = join(target, INSTALLED_RECORD_PATH)
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return undefined
    throw err
  }
  return parseInstalledImageRecord(text, path)
}

function requireVersions(manifest: ImageManifest): number {
  if (manifest.encryption) {
    throw new ImageSwarmError(
      'E_UPDATE_UNSUPPORTED',
      `image ${manifest.name} is encrypted: the server publishes no file index or deltas for it`,
      {
        operation: 'update',
        path: manifest.name,
        hint: 'reinstall the node to move it to the newest version (imageswarm install)',
      },
    )
  }
  if (manifest.serial === undefined || !manifest.digests?.fileIndex || !manifest.digests.deltas) {
    throw new ImageSwarmError(
      'E_UPDATE_UNSUPPORTED',
      `the server publishes no versions of image ${manifest.name} (its manifest names no file index)`,
      {
        operation: 'update',
        path: manifest.name,
        hint: 'upgrade imageswarm on the server and restart it (serve records versions when it publishes)',
      },
    )
  }
  return manifest.serial
}

async function fetchVersionFile(
  manifest: ImageManifest,
  file: string,
  sha256: string,
  request: ServerRequestOptions,
): Promise<Buffer> {
  const path = archiveUrlPath(manifest.name, file)
  const body = await fetchInstallFile(
    path,
    `${manifest.name} ${file}`,
    VERSION_DOCUMENT_LIMIT,
    request,
  )
  if (body === undefined) {
    throw new ImageSwarmError(
      'E_SERVER_RESPONSE',
      `the server has no ${file} for image ${manifest.name}`,
      {
        operation: 'update',
        path,
        hint: 'the server restarted with another version meanwhile? run the update again',
      },
    )
  }
  const digest = createHash('sha256').update(body).digest('hex')
  if (digest !== sha256) {
    throw new ImageSwarmError(
      'E_ARCHIVE_DIGEST_MISMATCH',
      `${file} of image ${manifest.name} does not match the manifest (sha256 ${digest}, expected ${sha256})`,
      {
        operation: 'verify update',
        path,
        hint: 'the server sent another document than its manifest names: republish the image, then update again',
      },
    )
  }
  return body
}

async function fetchFileIndex(
  manifest: ImageManifest,
  request: ServerRequestOptions,
): Promise<FileIndexEntry[]> {
  const bytes = await fetchVersionFile(
    manifest,
    VERSION_FILES.fileIndex,
    manifest.digests!.fileIndex!,
    request,
  )
  const document = parseVersionDocument(
    FileIndexDocumentSchema,
    JSON.parse(gunzipSync(bytes).toString('utf8')),
    `${manifest.name} ${VERSION_FILES.fileIndex}`,
  )
  if (document.image !== manifest.name || document.version !== manifest.serial) {
    throw new ImageSwarmError(
      'E_MANIFEST_INVALID',
      `the file index is of ${document.image} version ${document.version}`,
      {
        path: VERSION_FILES.fileIndex,
        hint: 'republish the image on the server',
      },
    )
  }
  return document.entries
}

async function fetchDeltas(
  manifest: ImageManifest,
  request: ServerRequestOptions,
): Promise<DeltasDocument> {
  const bytes = await fetchVersionFile(
    manifest,
    VERSION_FILES.deltas,
    manifest.digests!.deltas!,
    request,
  )
  return parseVersionDocument(
    DeltasDocumentSchema,
    JSON.parse(bytes.toString('utf8')),
    VERSION_FILES.deltas,
  )
}

async function fetchDescriptor(
  manifest: ImageManifest,
  entry: DeltasDocument['deltas'][number],
  request: ServerRequestOptions,
): Promise<DeltaDescriptor> {
  const bytes = await fetchVersionFile(manifest, entry.descriptor, entry.descriptorSha256, request)
  const descriptor = parseVersionDocument(
    DeltaDescriptorSchema,
    JSON.parse(bytes.toString('utf8')),
    entry.descriptor,
  )
  if (descriptor.to !== manifest.serial || descriptor.from !== entry.from) {
    throw new ImageSwarmError(
      'E_MANIFEST_INVALID',
      `${entry.descriptor} is a delta from ${descriptor.from} to ${descriptor.to}`,
      {
        path: entry.descriptor,
        hint: 'republish the image on the server',
      },
    )
  }
  return descriptor
}

const membersOf = new WeakMap<DeltaDescriptor, Set<string>>()
function deltaMembers(descriptor: DeltaDescriptor): Set<string> {
  let members = membersOf.get(descriptor)
  if (!members) {
    members = new Set(descriptor.members)
    membersOf.set(descriptor, members)
  }
  return members
}

/** The delta as an archive the swarm code can fetch: its file, size, digest and infohash. */
function deltaManifest(manifest: ImageManifest, descriptor: DeltaDescriptor): ImageManifest {
  return {
    ...manifest,
    archiveFile: descriptor.file,
    size: descriptor.size,
    sha256: descriptor.sha256,
    infoHash: descriptor.infoHash as ImageManifest['infoHash'],
    pieceLength: descriptor.pieceLength,
    compression: 'zstd',
  }
}

/** Adds these index paths to what the update writes (whole hardlink groups), in index order. */
function addToWrite(
  difference: RootDifference,
  entries: readonly FileIndexEntry[],
  paths: readonly string[],
  excludes: UpdateExcludes,
): void {
  const writing = new Set(difference.write.map(({ entry }) => entry.path))
  const wanted = new Set(writing)
  for (const path of paths)
    if (!excludes.excludes(path) && !path.includes('\uFFFD')) wanted.add(path)
  if (wanted.size === writing.size) return
  const reasons = new Map(difference.write.map(({ entry, reason }) => [entry.path, reason]))
  const byPath = new Map(entries.map((entry) => [entry.path, entry]))
  difference.write = withHardlinkGroups(entries, wanted)
    .filter((path) => !excludes.excludes(path))
    .map((path) => ({
      entry: byPath.get(path)!,
      reason: reasons.get(path) ?? 'changed in the image, or not comparable on the node',
    }))
}

/**
 * Directories whose mtime the update disturbs (it renames into or removes from them) and
 * that are not themselves to be written: their metadata is set again from a source.
 */
function directoriesTouched(
  difference: RootDifference,
  entries: readonly FileIndexEntry[],
  excludes: UpdateExcludes,
): FileIndexEntry[] {
  const writing = new Set(difference.write.map(({ entry }) => entry.path))
  const parents = new Set<string>()
  for (const path of [...writing, ...difference.remove]) {
    const parent = dirname(path)
    parents.add(parent === '' ? '.' : parent)
  }
  return entries.filter(
    (entry) =>
      entry.type === 'directory' &&
      parents.has(entry.path) &&
      !writing.has(entry.path) &&
      !excludes.excludes(entry.path),
  )
}

function uniqueByPath(entries: readonly FileIndexEntry[]): FileIndexEntry[] {
  return [...new Map(entries.map((entry) => [entry.path, entry])).values()]
}

async function downloadFile(options: {
  manifest: ImageManifest
  path: string
  config: ClientConfig
  request: ServerRequestOptions
  peerId: string
  logger: Logger
  emit: (event: InstallEvent) => void
  connection: ServerConnection
  signal: AbortSignal | undefined
}): Promise<{ session?: SwarmSession }> {
  const { manifest, config, logger, emit, connection, signal } = options
  const url = serverUrl(config.server, archiveUrlPath(manifest.name, manifest.archiveFile))
  if (await isComplete(options.path, manifest)) return {}
  if (config.downloadProtocol === 'http') {
    await downloadArchiveOverHttp({
      url,
      path: options.path,
      manifest,
      stallTimeoutSeconds: config.stallTimeoutSeconds,
      logger,
      emit,
      connection,
      ...(signal ? { signal } : {}),
    })
    return {}
  }
  const torrent = await fetchTorrentOf(manifest, options.request)
  torrent.urlList = [url]
  const session = await SwarmSession.start({
    torrent,
    server: config.server,
    peerId: options.peerId,
    manifest,
    archivePath: options.path,
    settings: config.swarm,
    webSeedFallbackSeconds: config.webSeedFallbackSeconds,
    stallTimeoutSeconds: config.stallTimeoutSeconds,
    logger,
    emit,
    connection,
  })
  await session.downloadArchive(signal)
  return { session }
}

/** The image's `.torrent`, or a delta's (`delta-V-N.torrent` beside it), checked against it. */
async function fetchTorrentOf(manifest: ImageManifest, request: ServerRequestOptions) {
  if (manifest.archiveFile.startsWith('delta-')) {
    const torrentFile = manifest.archiveFile.replace(/\.tar\.zst$/, '.torrent')
    return fetchTorrent(manifest, request, archiveUrlPath(manifest.name, torrentFile))
  }
  return fetchTorrent(manifest, request)
}

async function isComplete(path: string, manifest: ImageManifest): Promise<boolean> {
  const st = await stat(path).catch(() => undefined)
  return st?.size === manifest.size && (await sha256File(path)) === manifest.sha256
}

async function checkDigest(path: string, sha256: string, what: string): Promise<void> {
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
async function openDelta(
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
async function writeReference(
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
        if (createHash('sha256').update(bytes).digest('hex') !== file.sha256) return file.path
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
async function fetchMembers(
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

async function recordVersion(
  target: string,
  manifest: ImageManifest,
  verified: Awaited<ReturnType<typeof verifyImage>>,
  config: ClientConfig,
  logger: Logger,
): Promise<void> {
  const record =
    (verified && trustedInstallOf(verified, config.server)) ||
    installedVersionOf(manifest, config.server)
  if (record) await recordInstalledImage(target, record, logger)
}

function logPlan(plan: UpdatePlan, difference: RootDifference, logger: Logger): void {
  logger.info(
    {
      image: plan.image,
      from: plan.from,
      to: plan.to,
      write: plan.write,
      remove: plan.remove,
      unchanged: difference.unchanged,
      source: plan.source,
      byFile: plan.byFile,
    },
    plan.source === 'none'
      ? `the root holds version ${plan.to}: nothing to update`
      : `update to version ${plan.to}: ${plan.write} entries to write, ${plan.remove} to remove (from the ${plan.source === 'image' ? 'full image' : plan.source === 'delta' ? `delta from version ${plan.from}` : 'server, by file'})`,
  )
}

function asUpdateError(err: unknown, signal?: AbortSignal): ImageSwarmError {
  if (isImageSwarmError(err)) return err
  if (signal?.aborted) {
    return new ImageSwarmError('E_INTERRUPTED', 'update interrupted', {
      hint: 'run the update again: it compares the root afresh and finishes',
      cause: err,
    })
  }
  return new ImageSwarmError('E_DOWNLOAD_FAILED', `update failed: ${String(err)}`, { cause: err })
}
