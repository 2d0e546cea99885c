import { mkdir, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import {
  clearTypeChanges,
  commitStaged,
  compareRootWithIndex,
  DEFAULT_UPDATE_EXCLUDES,
  deltaSwarmName,
  errnoOf,
  type FileIndexEntry,
  type ImageManifest,
  ImageSwarmError,
  INSTALLED_RECORD_PATH,
  type InstallEvent,
  type InstalledImageRecord,
  type Logger,
  type MemberSource,
  makePeerId,
  NODE_UPDATE_EXCLUDE_FILE,
  parseInstalledImageRecord,
  readUpdateExcludeFile,
  restoreDirectories,
  silentLogger,
  stageMembers,
  type TransferTotals,
  UpdateExcludes,
  type UpdatePlan,
} from '@imageswarm/core'
import type { ClientConfig } from './config.js'
import { ImageServers, type RequestSettings, type ServedImage } from './image-servers.js'
import { installedVersionOf, recordInstalledImage, trustedInstallOf } from './image-trust.js'
import { asClientError, linger } from './install.js'
import { InstallState } from './install-state.js'
import type { ServerRequestOptions } from './server-api.js'
import { StatusReporter } from './status-reporter.js'
import type { SwarmSession } from './swarm-session.js'
import { captureTimes, restoreTimes } from './target-root.js'
import { deltaManifest, fetchDeltas, fetchDescriptor, fetchFileIndex } from './update-documents.js'
import { addToWrite, directoriesTouched, logPlan, uniqueByPath } from './update-plan.js'
import { checkDigest, downloadFile, fetchMembers, openDelta } from './update-transfer.js'

/** Where an update keeps what it downloads, inside the root it updates (a default exclude). */
export const UPDATE_STAGING_DIR = 'var/lib/imageswarm/update'

/** What the node keeps of its own inside the root, whatever the image has. */
const NODE_OWNED_PATHS = [INSTALLED_RECORD_PATH, UPDATE_STAGING_DIR]

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
  /** The image servers and their connections (see InstallOptions.servers); default: the
   * update's own, from `config.server`. */
  servers?: ImageServers
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
  const servers = options.servers ?? new ImageServers(config.server, { logger })
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
      server: servers.urls,
      image: swarm,
      peerId,
      logger,
      connectionOf: (server) => servers.connectionOf(server),
      ...(config.node ? { node: config.node } : {}),
      ...(config.bootMac ? { mac: config.bootMac } : {}),
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
    const settings: RequestSettings = {
      connectTimeoutSeconds: config.connectTimeoutSeconds,
      imageTimeoutSeconds: config.imageTimeoutSeconds,
      ...(signal ? { signal } : {}),
      onRetry: (attempt, err) =>
        logger.warn({ attempt, err: String(err) }, 'image server not reachable yet; retrying'),
    }
    // The documents below are checked against the manifest's digests: any server's will do.
    const ask = <T>(what: string, fetch: (request: ServerRequestOptions) => Promise<T>) =>
      servers.firstAnswer({ what }, settings, fetch).then(({ value }) => value)
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
    const served = await servers.fetchImage(config, settings)
    const { manifest } = served
    emit({ type: 'manifest', manifest })
    const newest = requireVersions(manifest)
    const [entries, deltas] = await Promise.all([
      ask('file index', (request) => fetchFileIndex(manifest, request)),
      ask('deltas', (request) => fetchDeltas(manifest, request)),
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
    const descriptor =
      deltaEntry &&
      (await ask('delta descriptor', (request) => fetchDescriptor(manifest, deltaEntry, request)))
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
    const deltaPaths = new Set(descriptor?.members)
    const inSource = (path: string) => source === 'image' || deltaPaths.has(path)
    const touchedDirectories = directoriesTouched(difference, entries, excludes)
    const byFile = difference.write
      .map(({ entry }) => entry)
      .filter((entry) => !inSource(entry.path))
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
        if (record?.serial !== newest) await recordVersion(target, served, logger)
        emit({ type: 'updated', target, version: newest, totals, seconds })
      }
      return { manifest, target, plan, totals, seconds }
    }

    await makeStaging(target)
    // The delta or the image, into staging, through the swarm (or HTTP).
    const fetchArchive = (archive: ImageManifest) =>
      downloadFile({
        manifest: archive,
        path: join(staging, archive.archiveFile),
        config,
        servers,
        settings,
        peerId,
        logger,
        emit,
        signal,
      })
    const sources: { source: MemberSource; entries: FileIndexEntry[]; verified: boolean }[] = []
    const wanted = new Map<string, FileIndexEntry>()
    for (const { entry } of difference.write) wanted.set(entry.path, entry)

    if (source === 'delta' && descriptor) {
      reportTo(
        deltaSwarmName(manifest.name, descriptor.from, descriptor.to),
        deltaManifest(manifest, descriptor),
      )
      state.moveTo('downloading')
      const delta = await fetchArchive(deltaManifest(manifest, descriptor))
      session = delta.session
      state.moveTo('verifying')
      const tar = await openDelta(descriptor, target, staging, logger, signal)
      if (tar) {
        temporary.push(tar, join(staging, descriptor.file))
        sources.push({
          source: { path: tar, compression: 'none' },
          entries: [...wanted.values()].filter((entry) => inSource(entry.path)),
          verified: true,
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
      const image = await fetchArchive(manifest)
      session = image.session
      state.moveTo('verifying')
      await checkDigest(join(staging, manifest.archiveFile), manifest.sha256, manifest.archiveFile)
      temporary.push(join(staging, manifest.archiveFile))
      sources.push({
        source: { path: join(staging, manifest.archiveFile), compression: manifest.compression },
        entries: [...wanted.values()],
        verified: true,
      })
    }
    if (byFile.length > 0) {
      if (reporter === undefined) reportTo(manifest.name, manifest)
      if (state.current === 'waiting') state.moveTo('downloading')
      const path = join(staging, `members-${newest}.tar`)
      await fetchMembers(
        manifest,
        uniqueByPath(byFile),
        path,
        servers.requestTo(servers.current, settings),
        logger,
      )
      temporary.push(path)
      // Packed from the server's image root: only the index vouches for these bytes.
      sources.push({
        source: { path, compression: 'none' },
        entries: uniqueByPath(byFile),
        verified: false,
      })
    }

    // Applying: files first (staged, checked, renamed), removals, then directories.
    if (state.current !== 'verifying') state.moveTo('verifying')
    state.moveTo('extracting')
    const applyStarted = performance.now()
    await clearTypeChanges(target, [...wanted.values()])
    const staged: FileIndexEntry[][] = []
    // The directories the update renames into or removes from, and does not rewrite, get
    // their mtimes back (they match the index: the comparison found them equal).
    const touchedTimes = await captureTimes(
      touchedDirectories.map((entry) => join(target, entry.path)),
    )
    for (const { source: member, entries: chosen, verified } of sources) {
      staged.push(
        await stageMembers({
          target,
          source: member,
          entries: chosen,
          // A delta's tar and the image matched their SHA-256: their metadata is checked.
          contents: !verified,
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
    await restoreTimes(touchedTimes)
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
    await recordVersion(target, served, logger)
    await Promise.all(temporary.map((path) => rm(path, { force: true })))
    if (session) {
      state.moveTo('seeding')
      await linger(session, config.seedTimeSeconds, emit, logger, signal, config.seedUploadMin)
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
    if (!options.servers) await servers.close()
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
  if (manifest.format === 'squashfs') {
    throw new ImageSwarmError(
      'E_UPDATE_UNSUPPORTED',
      `image ${manifest.name} is a SquashFS image: the server publishes no file index or deltas for it`,
      {
        operation: 'update',
        path: manifest.name,
        hint: 'a node that mounts it (image mode disk or ram) runs the newest version from its next boot; one that extracted it is reinstalled (imageswarm install)',
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

/** Records the version in the root, with the server that gave its manifest. */
async function recordVersion(target: string, served: ServedImage, logger: Logger): Promise<void> {
  const { manifest, verified, server } = served
  const record =
    (verified && trustedInstallOf(verified, server)) || installedVersionOf(manifest, server)
  if (record) await recordInstalledImage(target, record, logger)
}

function asUpdateError(err: unknown, signal?: AbortSignal): ImageSwarmError {
  return asClientError(err, signal, {
    what: 'update',
    hint: 'run the update again: it compares the root afresh and finishes',
  })
}
