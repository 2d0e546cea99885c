import { createReadStream } from 'node:fs'
import { link, mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { gunzipSync, gzipSync } from 'node:zlib'
import {
  compressWithReference,
  copyTarMembers,
  type DeltaDescriptor,
  DeltaDescriptorSchema,
  type DeltasDocument,
  diffFileIndexes,
  encodeVersionDocument,
  type FileIndexDocument,
  FileIndexDocumentSchema,
  type FileIndexEntry,
  type ImageManifest,
  ImageSwarmError,
  type ImageVersion,
  ImageVersionSchema,
  indexArchiveMembers,
  type Logger,
  type MemberRange,
  PieceHasher,
  parseUpdateExcludes,
  parseVersionDocument,
  sha256File,
  sha256Hex,
  silentLogger,
  type VersionList,
  writeFileAtomically,
  writeReferenceContents,
} from '@imageswarm/core'
import parseTorrent from 'parse-torrent'
import { PublishedArchive } from './published-archive.js'
import { createImageTorrent } from './torrent-file.js'

/**
 * An image's versions and the deltas to its newest one (issue 16, docs/updates.md), kept
 * beside its archive in `TARBALLS/NAME.versions/`:
 *
 * - `vN.json` (ImageVersion), `vN.file-index.json.gz` (its file index) and `vN.archive` (a
 *   hard link to the archive it was published with: the next publication renames a new
 *   archive over the path, the link keeps the old one for making deltas);
 * - `delta-V-N.tar.zst` with `delta-V-N.json.gz` (DeltaDescriptor, gzipped): a delta from each kept
 *   version V to the newest N, seeded like an image;
 * - `deltas.json` (DeltasDocument): what the newest manifest's `digests.deltas` names.
 */

/** One delta to the newest version, as served and seeded. */
export interface PublishedDelta {
  descriptor: DeltaDescriptor
  /** `delta-V-N.json`'s exact bytes, whose SHA-256 `deltas.json` names. */
  descriptorBytes: Buffer
  torrent: Uint8Array
  /** The delta file, held open since it was checked. */
  archive: PublishedArchive
}

/** What the server serves of an image's versions. */
export interface PublishedVersions {
  list: VersionList
  /** The newest version's file index, gzipped JSON: `digests.fileIndex` is its SHA-256. */
  fileIndexBytes: Buffer
  /** `deltas.json`: `digests.deltas` is its SHA-256. */
  deltasBytes: Buffer
  deltas: PublishedDelta[]
  /**
   * Writes a tar of some members of the newest version to `output`, copied from its
   * archive (not from the image root, which may be changing for the next version): what a
   * node fetches by file. Throws E_USAGE for a path the version does not have.
   */
  writeMembers(paths: readonly string[], output: string): Promise<void>
}

export interface VersionOptions {
  image: string
  /** The newest manifest (its `serial` is the version), before `digests` are set. */
  manifest: ImageManifest
  archivePath: string
  /** The image root, for the image's own update exclude list. */
  root: string
  tarballsDir: string
  /** How many versions to keep, the newest included (`--keep-versions`). */
  keep: number
  pieceLength: number
  announce: string
  /** The web seed URL of a file beside the archive. */
  webSeedOf: (file: string) => string
  logger?: Logger
}

/** The image's own exclude list for updates, as SystemImager keeps it inside the image. */
const IMAGE_UPDATE_EXCLUDE_FILE = 'etc/systemimager/updateclient.local.exclude'

/** The version's directory beside the archives. */
export function versionsDir(tarballsDir: string, image: string): string {
  return join(tarballsDir, `${image}.versions`)
}

/**
 * Records the newest version (its file index, a link to its archive), drops the versions
 * beyond `keep`, and makes (or reuses) a delta from every other kept version to it.
 *
 * @example const versions = await publishVersions({ image: 'compute', manifest, … })
 */
export async function publishVersions(options: VersionOptions): Promise<PublishedVersions> {
  const logger = options.logger ?? silentLogger()
  const { image, manifest } = options
  const newest = manifest.serial
  if (newest === undefined) throw new Error('internal error: a published manifest without a serial')
  const dir = versionsDir(options.tarballsDir, image)
  await mkdir(dir, { recursive: true })

  let newestIndex: { entries: FileIndexEntry[]; ranges?: Map<string, MemberRange> }
  const recorded = await readVersion(dir, newest)
  if (recorded?.sha256 === manifest.sha256 && (await exists(join(dir, `v${newest}.archive`)))) {
    newestIndex = { entries: await readFileIndex(dir, newest) }
  } else {
    const started = performance.now()
    newestIndex = await indexArchiveMembers({
      archive: options.archivePath,
      compression: manifest.compression,
    })
    const previous = (await listVersions(dir)).filter((v) => v < newest).at(-1)
    const indexBytes = gzipSync(
      encodeVersionDocument({
        type: 'imageswarm-file-index',
        schemaVersion: 1,
        image,
        version: newest,
        entries: newestIndex.entries,
      } satisfies FileIndexDocument),
    )
    await writeFileAtomically(join(dir, `v${newest}.file-index.json.gz`), indexBytes)
    await rm(join(dir, `v${newest}.archive`), { force: true })
    await link(options.archivePath, join(dir, `v${newest}.archive`))
    const version: ImageVersion = {
      version: newest,
      ...(previous === undefined ? {} : { parent: previous }),
      created: manifest.created,
      archiveFile: manifest.archiveFile,
      size: manifest.size,
      sha256: manifest.sha256,
      infoHash: manifest.infoHash,
      entries: newestIndex.entries.length,
      fileIndexSha256: sha256Hex(indexBytes),
    }
    await writeFileAtomically(join(dir, `v${newest}.json`), encodeVersionDocument(version))
    logger.info(
      { image, version: newest, entries: newestIndex.entries.length, seconds: seconds(started) },
      'version recorded with its file index',
    )
  }

  // Keep the newest `keep` versions up to this one; anything above it is from a state
  // that was rolled back and goes too.
  const all = await listVersions(dir)
  const kept = all.filter((v) => v <= newest).slice(-options.keep)
  for (const version of all.filter((v) => !kept.includes(v))) {
    await Promise.all(
      ['json', 'file-index.json.gz', 'archive'].map((suffix) =>
        rm(join(dir, `v${version}.${suffix}`), { force: true }),
      ),
    )
    logger.info({ image, version }, 'version no longer kept: its file index and archive removed')
  }
  const deltaNames = new Set(kept.filter((v) => v < newest).map((v) => `delta-${v}-${newest}`))
  for (const name of await readdir(dir)) {
    const stem = name.replace(/\.(tar\.zst|json\.gz|torrent)$/, '')
    if (name.startsWith('delta-') && !deltaNames.has(stem))
      await rm(join(dir, name), { force: true })
  }

  const deltas: PublishedDelta[] = []
  try {
    for (const from of kept.filter((v) => v < newest)) {
      const reused = await openDelta(dir, from, newest, options)
      if (reused) {
        deltas.push(reused)
        continue
      }
      if (newestIndex.ranges === undefined) {
        newestIndex = await indexArchiveMembers({
          archive: options.archivePath,
          compression: manifest.compression,
        })
      }
      deltas.push(
        await makeDelta({
          ...options,
          dir,
          from,
          to: newest,
          older: await readFileIndex(dir, from),
          newer: newestIndex.entries,
          ranges: newestIndex.ranges!,
          logger,
        }),
      )
    }
  } catch (err) {
    await Promise.all(deltas.map((delta) => delta.archive.close()))
    throw err
  }

  const versions = (await Promise.all(kept.map((v) => readVersion(dir, v)))).filter(
    (v): v is ImageVersion => v !== undefined,
  )
  const excludes = parseUpdateExcludes(
    await readFile(join(options.root, IMAGE_UPDATE_EXCLUDE_FILE), 'utf8').catch(() => ''),
  )
  const document: DeltasDocument = {
    type: 'imageswarm-deltas',
    schemaVersion: 1,
    image,
    version: newest,
    kept,
    excludes,
    deltas: deltas.map(({ descriptor, descriptorBytes }) => ({
      from: descriptor.from,
      descriptor: `delta-${descriptor.from}-${descriptor.to}.json.gz`,
      descriptorSha256: sha256Hex(descriptorBytes),
      size: descriptor.size,
    })),
  }
  const deltasBytes = encodeVersionDocument(document)
  await writeFileAtomically(join(dir, 'deltas.json'), deltasBytes)
  return {
    list: {
      image,
      newest,
      keep: options.keep,
      versions,
      deltas: deltas.map(({ descriptor }) => ({
        from: descriptor.from,
        size: descriptor.size,
        members: descriptor.members.length,
        removals: descriptor.removals.length,
        seconds: descriptor.seconds,
      })),
    },
    fileIndexBytes: await readFile(join(dir, `v${newest}.file-index.json.gz`)),
    deltasBytes,
    deltas,
    writeMembers: membersWriter(
      join(dir, `v${newest}.archive`),
      manifest.compression,
      newestIndex.ranges,
    ),
  }
}

/** `PublishedVersions.writeMembers`: the member ranges are read once, when first asked. */
function membersWriter(
  archive: string,
  compression: ImageManifest['compression'],
  known: Map<string, MemberRange> | undefined,
): PublishedVersions['writeMembers'] {
  let ranges: Promise<Map<string, MemberRange>> | undefined = known && Promise.resolve(known)
  return async (paths, output) => {
    ranges ??= indexArchiveMembers({ archive, compression }).then((index) => index.ranges)
    const all = await ranges
    const chosen = paths.map((path) => {
      const range = all.get(path)
      if (range === undefined) {
        throw new ImageSwarmError('E_USAGE', `the newest version has no ${path}`, {
          path,
          hint: 'ask for paths of the newest version’s file index',
        })
      }
      return range
    })
    await copyTarMembers({ archive, compression, ranges: chosen, output })
  }
}

/**
 * A delta's piece length: about 64 pieces or more, so that 16 nodes fetching a few MB have
 * pieces to trade (with the image's 1 MiB pieces a 6 MB delta has six), between 16 KiB and
 * the image's piece length.
 */
export function deltaPieceLength(size: number, imagePieceLength: number): number {
  let length = 16 * 1024
  while (length < imagePieceLength && size / (length * 2) >= 64) length *= 2
  return length
}

/** The level a delta is compressed at: 19 for the common small update, lower for a big one. */
export function deltaLevel(tarSize: number): number {
  if (tarSize <= 64 * 1024 * 1024) return 19
  if (tarSize <= 512 * 1024 * 1024) return 15
  return 9
}

async function makeDelta(
  options: VersionOptions & {
    dir: string
    from: number
    to: number
    older: FileIndexEntry[]
    newer: FileIndexEntry[]
    ranges: Map<string, MemberRange>
    logger: Logger
  },
): Promise<PublishedDelta> {
  const { dir, from, to, logger } = options
  const started = performance.now()
  const stem = join(dir, `delta-${from}-${to}`)
  const diff = diffFileIndexes(options.older, options.newer)
  const referencePath = `${stem}.reference`
  const tarPath = `${stem}.tar`
  const partial = `${stem}.tar.zst.partial`
  try {
    const referenceSize = await writeReferenceContents({
      archive: join(dir, `v${from}.archive`),
      compression: options.manifest.compression,
      paths: new Set(diff.reference.map((file) => file.path)),
      output: referencePath,
    })
    const tar = await copyTarMembers({
      archive: options.archivePath,
      compression: options.manifest.compression,
      ranges: diff.members.map((path) => options.ranges.get(path)!),
      output: tarPath,
    })
    const level = deltaLevel(tar.size)
    const windowLog = Math.min(31, Math.max(27, Math.ceil(Math.log2(referenceSize + tar.size + 1))))
    await compressWithReference({
      input: tarPath,
      output: partial,
      reference: referenceSize > 0 ? referencePath : undefined,
      level,
      windowLog,
    })
    await rename(partial, `${stem}.tar.zst`)
    const file = `delta-${from}-${to}.tar.zst`
    const deltaSize = (await stat(`${stem}.tar.zst`)).size
    const pieceLength = deltaPieceLength(deltaSize, options.pieceLength)
    const { size, sha256, pieces } = await hashFile(`${stem}.tar.zst`, pieceLength)
    const torrent = createImageTorrent({
      name: file,
      length: size,
      pieceLength,
      pieces,
      announce: options.announce,
      webSeed: options.webSeedOf(file),
      created: new Date(options.manifest.created),
    })
    const parsed = await parseTorrent(torrent)
    const descriptor: DeltaDescriptor = {
      type: 'imageswarm-delta',
      schemaVersion: 1,
      image: options.image,
      from,
      to,
      file,
      size,
      sha256,
      infoHash: parsed.infoHash,
      pieceLength,
      tarSize: tar.size,
      tarSha256: tar.sha256,
      level,
      windowLog,
      members: diff.members,
      removals: diff.removals,
      reference: diff.reference,
      seconds: Number(seconds(started).toFixed(2)),
    }
    // Gzipped: its paths and digests are most of what a node fetches besides the delta.
    const descriptorBytes = gzipSync(encodeVersionDocument(descriptor))
    await writeFileAtomically(`${stem}.torrent`, torrent)
    await writeFileAtomically(`${stem}.json.gz`, descriptorBytes)
    logger.info(
      {
        image: options.image,
        from,
        to,
        size,
        members: diff.members.length,
        removals: diff.removals.length,
        referenceBytes: referenceSize,
        tarBytes: tar.size,
        level,
        seconds: descriptor.seconds,
      },
      'delta made',
    )
    return {
      descriptor,
      descriptorBytes,
      torrent,
      archive: await PublishedArchive.openPacked(`${stem}.tar.zst`, { size, sha256 }),
    }
  } finally {
    await Promise.all([referencePath, tarPath, partial].map((path) => rm(path, { force: true })))
  }
}

/** A delta made before, when its descriptor, torrent and file are whole. */
async function openDelta(
  dir: string,
  from: number,
  to: number,
  options: VersionOptions,
): Promise<PublishedDelta | undefined> {
  const stem = join(dir, `delta-${from}-${to}`)
  try {
    const descriptorBytes = await readFile(`${stem}.json.gz`)
    const descriptor = parseVersionDocument(
      DeltaDescriptorSchema,
      JSON.parse(gunzipSync(descriptorBytes).toString('utf8')),
      `${stem}.json.gz`,
    )
    if (
      descriptor.image !== options.image ||
      descriptor.pieceLength !== deltaPieceLength(descriptor.size, options.pieceLength)
    ) {
      return undefined
    }
    const torrent = await readFile(`${stem}.torrent`)
    const parsed = await parseTorrent(torrent)
    if (parsed.infoHash !== descriptor.infoHash || parsed.announce?.[0] !== options.announce)
      return undefined
    const archive = await PublishedArchive.openVerified(`${stem}.tar.zst`, descriptor)
    return archive && { descriptor, descriptorBytes, torrent, archive }
  } catch {
    return undefined
  }
}

async function listVersions(dir: string): Promise<number[]> {
  const names = await readdir(dir).catch(() => [] as string[])
  return names
    .map((name) => /^v([0-9]+)\.json$/.exec(name)?.[1])
    .filter((v): v is string => v !== undefined)
    .map(Number)
    .sort((a, b) => a - b)
}

async function readVersion(dir: string, version: number): Promise<ImageVersion | undefined> {
  const path = join(dir, `v${version}.json`)
  try {
    return parseVersionDocument(ImageVersionSchema, JSON.parse(await readFile(path, 'utf8')), path)
  } catch {
    return undefined
  }
}

async function readFileIndex(dir: string, version: number): Promise<FileIndexEntry[]> {
  const path = join(dir, `v${version}.file-index.json.gz`)
  const document = parseVersionDocument(
    FileIndexDocumentSchema,
    JSON.parse(gunzipSync(await readFile(path)).toString('utf8')),
    path,
  )
  return document.entries
}

async function exists(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined)) !== undefined
}

async function hashFile(
  path: string,
  pieceLength: number,
): Promise<{ size: number; sha256: string; pieces: Buffer }> {
  const hasher = new PieceHasher(pieceLength)
  let size = 0
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    hasher.update(chunk as Buffer)
    size += (chunk as Buffer).length
  }
  return { size, sha256: await sha256File(path), pieces: hasher.digest() }
}

function seconds(started: number): number {
  return (performance.now() - started) / 1000
}
