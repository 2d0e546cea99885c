import { mkdir, readFile, rm, stat } from 'node:fs/promises'
import { basename, join } from 'node:path'
import {
  archiveFileName,
  archivePath as archiveUrlPath,
  type Compression,
  detectCompression,
  encodeManifest,
  errnoOf,
  type GroupKey,
  generateArchiveKey,
  type ImageManifest,
  ImageSwarmError,
  type Logger,
  manifestFileName,
  manifestSignatureFileName,
  packArchive,
  packSquashfs,
  parseImageName,
  parseInfoHash,
  parseManifest,
  serverUrl,
  sha256Hex,
  silentLogger,
  torrentFileName,
  WIRE,
  writeFileAtomically,
} from '@imageswarm/core'
import parseTorrent from 'parse-torrent'
import type { PublishingStage } from './catalog.js'
import { configuredFormat, type SeederConfig } from './config.js'
import {
  compareWrappings,
  encryptedArchiveFileName,
  encryptionOf,
  extendWrappings,
  type ManifestEncryption,
  sealArchive,
} from './encrypted-archive.js'
import { fingerprintTree } from './fingerprint.js'
import {
  findTarball,
  packedByImageswarm,
  refuseForeignArchive,
  refuseForeignTorrent,
  SERVED_AS_IS,
} from './foreign-files.js'
import { type PublishedVersions, publishVersions } from './image-versions.js'
import { type ManifestSigner, nextSerial } from './manifest-signer.js'
import { PublishedArchive } from './published-archive.js'
import { createImageTorrent, retargetTorrent } from './torrent-file.js'

/** An image ready to serve: its manifest, archive and `.torrent`, all on disk. */
export interface PublishedImage {
  manifest: ImageManifest
  /** The image root packed; for a tarball served as it is (no root), the tarball. */
  root: string
  archivePath: string
  /** The archive, held open since it was checked against the manifest; the caller closes it. */
  archive: PublishedArchive
  torrentPath: string
  manifestPath: string
  /** The manifest file's exact bytes: what is served, and what the signature covers. */
  manifestBytes: Buffer
  /** `image-NAME.manifest.json.minisig` beside the manifest. */
  manifestSignaturePath: string
  /** The `.minisig` over `manifestBytes`; undefined for an unsigned image. */
  manifestSignature?: string
  /** The key that made `manifestSignature`. */
  signingKeyId?: string
  torrent: Uint8Array
  /** True when this call packed the archive (false: an existing one was reused). */
  packed: boolean
  /**
   * Its kept versions, file index and deltas to this version (issue 16); none for an
   * encrypted image, whose file index and deltas would show in the clear what the
   * encryption hides.
   */
  versions?: PublishedVersions
}

export interface PublishOptions {
  image: string
  config: SeederConfig
  /** The base URL clients reach this server at, e.g. `http://10.0.0.1:6969`. */
  serverUrl: string
  /** Pack again even if the existing archive is up to date (`--update-image`). */
  update?: boolean
  logger?: Logger
  signal?: AbortSignal
  /** Told when publishing moves on (what a node asking for the image is told it waits for). */
  onStage?: (stage: PublishingStage) => void
  /**
   * Signs the manifest (`--keys DIR`): it gets a serial (the previous one, plus one when the
   * archive changed) and an expiry, and `image-NAME.manifest.json.minisig` is written after
   * it. Without it the manifest is written unsigned, as before.
   */
  signer?: ManifestSigner
  /**
   * Encrypts the archive (`--encrypt`, docs/trust.md): the published file, the torrent and
   * the manifest's size, sha256 and infohash are the ciphertext's, and the archive key is
   * wrapped for each of these groups. The ciphertext is kept while the plaintext and the
   * groups are unchanged; a group revoked or rekeyed gets a new archive key (a new serial).
   */
  encryption?: { groupKeys: readonly GroupKey[] }
}

/**
 * Publishes an image: packs its root into one deterministic archive, writes the
 * `.torrent` and the manifest. An existing archive is reused when the root has not
 * changed since it was packed (same fingerprint) and `update` is not set. The archive
 * comes back open (`archive`): what is served is the file that was hashed, whatever
 * happens to its path later.
 *
 * An image without a root whose tarball exists (SystemImager's `image-NAME.tar[.gz]`) is
 * published from that tarball as it is (see `publishTarball`). Nothing imageswarm did not
 * write is ever overwritten: `E_FOREIGN_FILE` (see `refuseForeignArchive`).
 */
export async function publishImage(options: PublishOptions): Promise<PublishedImage> {
  const { config } = options
  const logger = options.logger ?? silentLogger()
  const name = parseImageName(options.image)
  const root = join(config.imagesDir, name)
  const { encryption } = options
  const manifestPath = join(config.torrentsDir, manifestFileName(name))
  // The previous manifest carries the image's serial, even when its archive is packed again.
  const previous = await readPreviousManifest(manifestPath)
  if (!(await isImageRoot(root))) {
    // No root, but a tarball (SystemImager's, or one published before): served as it is.
    const tarball = encryption
      ? undefined
      : await findTarball(config.tarballsDir, name, config.compression, previous?.manifest)
    if (tarball === undefined) throw imageNotFound(root, name, config.tarballsDir)
    return publishTarball({ ...options, logger }, name, tarball, previous)
  }
  // Unset, as the image was last published: an archive si_installbtimage made (tar, gzip)
  // is served as it is, with its infohash, not packed again as zstd.
  const format = configuredFormat(config, name) ?? previous?.manifest.format ?? 'tar'
  const compression =
    format === 'squashfs'
      ? squashfsCompression(name, config.compression)
      : (config.compression ?? previous?.manifest.compression ?? 'zstd')
  if (format === 'squashfs' && encryption) throw encryptedSquashfs(name)
  const plaintextFile = archiveFileName(name, compression, format)
  const plaintextPath = join(config.tarballsDir, plaintextFile)
  // Encrypted, the ciphertext is the published archive: what the torrent, the seeder and
  // the web seed name and serve. The plaintext is removed once it is encrypted.
  const archiveFile = encryption ? encryptedArchiveFileName(plaintextFile) : plaintextFile
  const archivePath = join(config.tarballsDir, archiveFile)
  const torrentPath = join(config.torrentsDir, torrentFileName(archiveFile))
  const manifestSignaturePath = join(config.torrentsDir, manifestSignatureFileName(name))
  const writeManifest = (manifest: ImageManifest, serial: number | undefined, bytes?: Buffer) =>
    writeManifestFiles({
      manifest,
      serial,
      manifestPath,
      manifestSignaturePath,
      ...(bytes ? { unchangedBytes: bytes } : {}),
      ...(options.signer ? { signer: options.signer } : {}),
    })
  const announce = serverUrl(options.serverUrl, WIRE.announce)
  const webSeed = serverUrl(options.serverUrl, archiveUrlPath(name, archiveFile))
  // Versions and deltas, for an image that is not encrypted (see PublishedImage.versions).
  const recordVersions = async (manifest: ImageManifest, serial: number) => {
    // Versions and deltas are made of tar members; a SquashFS image is sent whole.
    if (encryption || format === 'squashfs') return undefined
    options.onStage?.('recording the version and making deltas')
    return publishVersions({
      image: name,
      manifest: { ...manifest, serial },
      archivePath,
      root,
      tarballsDir: config.tarballsDir,
      keep: config.keepVersions,
      pieceLength: config.pieceLength,
      announce,
      webSeedOf: (file) => serverUrl(options.serverUrl, archiveUrlPath(name, file)),
      logger,
    })
  }
  await ensureDir(config.tarballsDir, 'archives (--tarballs-dir)')
  await ensureDir(config.torrentsDir, 'torrents (--torrents-dir)')
  options.onStage?.('checking the image root and its archive')

  const packing = [
    // `tar` leaves the string as it was before SquashFS: published tar images stay unchanged.
    ...(format === 'squashfs' ? ['squashfs'] : []),
    compression,
    config.compressionLevel ?? 'default',
    config.pieceLength,
    config.excludeFile ?? '',
  ].join(':')
  const fingerprint = await fingerprintTree(root, packing)
  const wrappings =
    encryption && previous?.manifest.encryption
      ? compareWrappings(previous.manifest.encryption, encryption.groupKeys)
      : undefined
  // Encrypted or not as asked, and (encrypted) for no group that has since been revoked.
  const reusable =
    previous !== undefined &&
    (encryption
      ? wrappings !== undefined && wrappings !== 'changed'
      : !previous.manifest.encryption)
  const existing =
    options.update || !previous || !reusable
      ? undefined
      : await openExisting(previous.manifest, archivePath)
  if (previous && existing && existing.manifest.sourceFingerprint === fingerprint) {
    const torrent = await keptTorrent(torrentPath, announce, webSeed, existing.manifest.infoHash)
    if (torrent) {
      logger.info(
        { image: name, archive: archivePath, infoHash: existing.manifest.infoHash },
        'image unchanged since it was packed: reusing its archive',
      )
      const serial = nextSerial(previous.manifest, previous.manifest)
      const rewrapped = wrappings === 'added' && withNewGroups(existing.manifest, encryption)
      let versions: PublishedVersions | undefined
      try {
        versions = await recordVersions(existing.manifest, serial)
      } catch (err) {
        await existing.archive.close()
        throw err
      }
      const described = withVersionDigests(rewrapped || existing.manifest, versions)
      const same =
        !rewrapped &&
        existing.manifest.serial === serial &&
        JSON.stringify(described.digests) === JSON.stringify(existing.manifest.digests)
      const files = same
        ? await writeManifest(existing.manifest, serial, previous.bytes)
        : await writeManifest(described, serial)
      return {
        ...existing,
        ...files,
        ...(versions ? { versions } : {}),
        manifestPath,
        manifestSignaturePath,
        root,
        torrentPath,
        torrent,
        packed: false,
      }
    }
  }
  await existing?.archive.close()
  // A SystemImager tarball (or .torrent) where the archive would go is never overwritten.
  await refuseForeignArchive({
    image: name,
    archivePath: plaintextPath,
    torrentPath,
    previous: previous?.manifest,
    imagesDir: config.imagesDir,
  })
  await refuseForeignTorrent({ image: name, torrentPath, previous: previous?.manifest })

  logger.info(
    { image: name, root, archive: archivePath, format, compression },
    options.update ? 'packing image (update requested)' : 'packing image',
  )
  options.onStage?.('packing the image root')
  const started = performance.now()
  const packOptions = {
    root,
    output: plaintextPath,
    compression,
    // Encrypted, the pieces are the ciphertext's, hashed as it is written.
    ...(encryption ? {} : { pieceLength: config.pieceLength }),
    ...(config.compressionLevel === undefined ? {} : { level: config.compressionLevel }),
    ...(config.excludeFile === undefined ? {} : { excludeFile: config.excludeFile }),
    logger,
    ...(options.signal ? { signal: options.signal } : {}),
  }
  const packed =
    format === 'squashfs' ? await packSquashfs(packOptions) : await packArchive(packOptions)
  const packSeconds = (performance.now() - started) / 1000
  if (encryption) {
    const kept = await reuseCiphertext({
      previous,
      packed,
      fingerprint,
      wrappings,
      encryption,
      archivePath,
      torrentPath,
      announce,
      webSeed,
    })
    if (kept) {
      await rm(plaintextPath, { force: true })
      logger.info(
        { image: name, archive: archivePath, infoHash: kept.manifest.infoHash },
        'packed the same plaintext again: keeping its ciphertext, infohash and serial',
      )
      const files = await writeManifest(
        kept.manifest,
        nextSerial(previous?.manifest, kept.manifest),
      )
      return {
        ...kept,
        ...files,
        root,
        archivePath,
        torrentPath,
        manifestPath,
        manifestSignaturePath,
        packed: true,
      }
    }
  }
  // The AAD binds the serial, so it is fixed before encrypting: a new ciphertext is a new
  // archive (nextSerial gives the previous serial plus one).
  const serial = encryption === undefined ? undefined : (previous?.manifest.serial ?? 0) + 1
  // Unencrypted, packArchive hashed the pieces (pieceLength was given).
  let published: { size: number; sha256: string; pieces: Buffer } = {
    size: packed.size,
    sha256: packed.sha256,
    pieces: packed.pieces ?? Buffer.alloc(0),
  }
  let encrypted: ManifestEncryption | undefined
  if (encryption && serial !== undefined) {
    options.onStage?.('encrypting the archive')
    const archiveKey = generateArchiveKey()
    published = await sealArchive(
      plaintextPath,
      archivePath,
      archiveKey,
      { image: name, serial },
      config.pieceLength,
    )
    encrypted = encryptionOf(archiveKey, packed, encryption.groupKeys)
    // Only the ciphertext stays on the server's disk beside the image root.
    await rm(plaintextPath, { force: true })
    logger.info(
      {
        image: name,
        archive: archivePath,
        plaintextSize: packed.size,
        size: published.size,
        groups: encryption.groupKeys.map((key) => key.group),
      },
      'archive encrypted',
    )
  }
  const created = new Date()
  const torrent = createImageTorrent({
    name: archiveFile,
    length: published.size,
    pieceLength: config.pieceLength,
    pieces: published.pieces,
    announce,
    webSeed,
    created,
  })
  const parsed = await parseTorrent(torrent)
  const manifest = parseManifest(
    {
      schemaVersion: 1,
      name,
      archiveFile,
      size: published.size,
      sha256: published.sha256,
      infoHash: parseInfoHash(parsed.infoHash),
      pieceLength: config.pieceLength,
      compression,
      // Only for SquashFS: a tar image's manifest reads as it did before the format existed.
      ...(format === 'squashfs' ? { format } : {}),
      created: created.toISOString(),
      sourceFingerprint: fingerprint,
      ...(encrypted ? { encryption: encrypted } : {}),
    },
    manifestPath,
  )
  await writeFileAtomically(torrentPath, torrent)
  const version = serial ?? nextSerial(previous?.manifest, manifest)
  const versions = await recordVersions(manifest, version)
  // The manifest is written last and marks the image complete (its signature follows it).
  // The torrent reaches the disk before it; the archive is not forced there (see
  // packArchive), so after a crash openExisting's sha256 check is what tells a torn archive
  // from a whole one.
  const files = await writeManifest(withVersionDigests(manifest, versions), version)
  const archive = await PublishedArchive.openPacked(archivePath, published)
  logger.info(
    {
      image: name,
      size: manifest.size,
      sha256: manifest.sha256,
      infoHash: manifest.infoHash,
      ...(files.manifest.serial === undefined ? {} : { serial: files.manifest.serial }),
      seconds: Number(packSeconds.toFixed(2)),
    },
    'image packed and published',
  )
  return {
    ...files,
    root,
    archivePath,
    archive,
    torrentPath,
    manifestPath,
    manifestSignaturePath,
    torrent,
    packed: true,
    ...(versions ? { versions } : {}),
  }
}

/** The manifest naming its file index's and deltas document's SHA-256 (what an update checks). */
function withVersionDigests(
  manifest: ImageManifest,
  versions: PublishedVersions | undefined,
): ImageManifest {
  if (!versions) return manifest
  return {
    ...manifest,
    digests: {
      ...manifest.digests,
      fileIndex: sha256Hex(versions.fileIndexBytes),
      deltas: sha256Hex(versions.deltasBytes),
    },
  }
}

/** What `writeManifestFiles` wrote (or kept): the manifest as served. */
type ManifestFiles = Pick<
  PublishedImage,
  'manifest' | 'manifestBytes' | 'manifestSignature' | 'signingKeyId'
>

/**
 * Writes the manifest, then (signed) its `.minisig`, each durably. Signed: the manifest gets
 * `serial` and a new expiry. Unsigned: `unchangedBytes` (a reused manifest) are kept as they
 * are, without writing; a manifest written anew loses a signature left from a signed
 * publication, which would no longer match it.
 */
async function writeManifestFiles(options: {
  manifest: ImageManifest
  serial: number | undefined
  manifestPath: string
  manifestSignaturePath: string
  unchangedBytes?: Buffer
  signer?: ManifestSigner
}): Promise<ManifestFiles> {
  const { signer, serial } = options
  if (signer) {
    const signed = signer.sign(options.manifest, serial ?? 1)
    await writeFileAtomically(options.manifestPath, signed.bytes)
    await writeFileAtomically(options.manifestSignaturePath, signed.signature)
    return {
      manifest: signed.manifest,
      manifestBytes: signed.bytes,
      manifestSignature: signed.signature,
      signingKeyId: signed.signingKeyId,
    }
  }
  if (options.unchangedBytes) {
    return { manifest: options.manifest, manifestBytes: options.unchangedBytes }
  }
  const manifest = serial === undefined ? options.manifest : { ...options.manifest, serial }
  const bytes = encodeManifest(manifest)
  await writeFileAtomically(options.manifestPath, bytes)
  await rm(options.manifestSignaturePath, { force: true })
  return { manifest, manifestBytes: bytes }
}

/**
 * Signs a published image's manifest again (same serial, same archive, a new expiry; or a
 * new signing key) and writes it; returns the image as it is now to be served.
 *
 * @example catalog.add(await resignPublishedImage(image, signer))
 */
export async function resignPublishedImage(
  image: PublishedImage,
  signer: ManifestSigner,
): Promise<PublishedImage> {
  const files = await writeManifestFiles({
    manifest: image.manifest,
    serial: image.manifest.serial ?? 1,
    manifestPath: image.manifestPath,
    manifestSignaturePath: image.manifestSignaturePath,
    signer,
  })
  return { ...image, ...files }
}

async function isImageRoot(root: string): Promise<boolean> {
  try {
    return (await stat(root)).isDirectory()
  } catch (err) {
    if (errnoOf(err) !== 'ENOENT' && errnoOf(err) !== 'ENOTDIR') throw err
    return false
  }
}

function imageNotFound(root: string, name: string, tarballsDir: string): ImageSwarmError {
  return new ImageSwarmError(
    'E_IMAGE_NOT_FOUND',
    `image ${name}: no image root at ${root} and no tarball image-${name}.tar[.gz|.zst] in ${tarballsDir}`,
    {
      operation: 'publish image',
      path: root,
      hint: 'check the image name, --images-dir and --tarballs-dir (SystemImager keeps images in /var/lib/systemimager/images, tarballs in /var/lib/systemimager/tarballs); an encrypted image needs its root',
    },
  )
}

/**
 * Publishes a tarball as it is, for an image without a root (a SystemImager
 * `image-NAME.tar` or `.tar.gz`, or an archive whose root was removed): the bytes are not
 * touched, the `.torrent` and the manifest are made over them, so the same tarball has
 * the same infohash on every run. The manifest records the compression its magic bytes
 * show. No versions or deltas: they are made from the image root.
 */
async function publishTarball(
  options: PublishOptions & { logger: Logger },
  name: string,
  archivePath: string,
  previous: { manifest: ImageManifest; bytes: Buffer } | undefined,
): Promise<PublishedImage> {
  const { config, logger } = options
  const archiveFile = basename(archivePath)
  const torrentPath = join(config.torrentsDir, torrentFileName(archiveFile))
  const manifestPath = join(config.torrentsDir, manifestFileName(name))
  const manifestSignaturePath = join(config.torrentsDir, manifestSignatureFileName(name))
  const announce = serverUrl(options.serverUrl, WIRE.announce)
  const webSeed = serverUrl(options.serverUrl, archiveUrlPath(name, archiveFile))
  await ensureDir(config.torrentsDir, 'torrents (--torrents-dir)')
  options.onStage?.('checking the tarball')
  const writeManifest = (manifest: ImageManifest, bytes?: Buffer) =>
    writeManifestFiles({
      manifest,
      serial: nextSerial(previous?.manifest, manifest),
      manifestPath,
      manifestSignaturePath,
      ...(bytes ? { unchangedBytes: bytes } : {}),
      ...(options.signer ? { signer: options.signer } : {}),
    })
  const common = {
    root: archivePath,
    archivePath,
    torrentPath,
    manifestPath,
    manifestSignaturePath,
  }
  const same =
    previous !== undefined &&
    !options.update &&
    previous.manifest.archiveFile === archiveFile &&
    previous.manifest.pieceLength === config.pieceLength &&
    !previous.manifest.encryption &&
    // A manifest from when the image had a root names its versions, which are not served now.
    previous.manifest.digests === undefined
  const existing = same ? await openExisting(previous.manifest, archivePath) : undefined
  if (previous && existing) {
    const torrent = await keptTorrent(torrentPath, announce, webSeed, previous.manifest.infoHash)
    if (torrent) {
      logger.info(
        { image: name, archive: archivePath, infoHash: previous.manifest.infoHash },
        'no image root: serving the tarball as it is (unchanged since it was last published)',
      )
      const files = await writeManifest(previous.manifest, previous.bytes)
      return { ...existing, ...files, ...common, torrent, packed: false }
    }
    await existing.archive.close()
  }
  // The .torrent is ours to write unless someone else's is there.
  await refuseForeignTorrent({ image: name, torrentPath, previous: previous?.manifest })
  const compression = await detectCompression(archivePath)
  options.onStage?.('hashing the tarball')
  const hashed = await PublishedArchive.openHashed(archivePath, config.pieceLength)
  if (hashed === undefined)
    throw imageNotFound(join(config.imagesDir, name), name, config.tarballsDir)
  const { archive, pieces } = hashed
  try {
    const created = new Date()
    const torrent = createImageTorrent({
      name: archiveFile,
      length: archive.size,
      pieceLength: config.pieceLength,
      pieces,
      announce,
      webSeed,
      created,
    })
    const parsed = await parseTorrent(torrent)
    // A tarball imageswarm packed before its root was removed stays imageswarm's.
    const ownedBefore =
      previous?.manifest.archiveFile === archiveFile && packedByImageswarm(previous.manifest)
    const manifest = parseManifest(
      {
        schemaVersion: 1,
        name,
        archiveFile,
        size: archive.size,
        sha256: archive.sha256,
        infoHash: parseInfoHash(parsed.infoHash),
        pieceLength: config.pieceLength,
        compression,
        created: created.toISOString(),
        sourceFingerprint: ownedBefore ? previous.manifest.sourceFingerprint : SERVED_AS_IS,
      },
      manifestPath,
    )
    await writeFileAtomically(torrentPath, torrent)
    const files = await writeManifest(manifest)
    logger.info(
      {
        image: name,
        archive: archivePath,
        compression,
        size: archive.size,
        infoHash: manifest.infoHash,
      },
      'no image root: serving the tarball as it is',
    )
    return { ...files, ...common, archive, torrent, packed: false }
  } catch (err) {
    await archive.close()
    throw err
  }
}

async function ensureDir(dir: string, what: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true })
  } catch (err) {
    throw new ImageSwarmError('E_PACK_FAILED', `cannot create the directory for ${what}: ${dir}`, {
      operation: 'publish image',
      path: dir,
      hint: 'choose a writable directory',
      cause: err,
    })
  }
}

/** The manifest a previous publication wrote, with its bytes; undefined if none is readable. */
async function readPreviousManifest(
  manifestPath: string,
): Promise<{ manifest: ImageManifest; bytes: Buffer } | undefined> {
  try {
    const bytes = await readFile(manifestPath)
    return { manifest: parseManifest(JSON.parse(bytes.toString('utf8')), manifestPath), bytes }
  } catch {
    return undefined
  }
}

async function openExisting(
  manifest: ImageManifest,
  archivePath: string,
): Promise<Pick<PublishedImage, 'manifest' | 'archivePath' | 'archive'> | undefined> {
  try {
    // One sequential read (GB/s), through the descriptor that is then served from, proves
    // the archive is the one the manifest describes, so the seeder can start without
    // hashing every piece again, and that no crash tore it after packing (it is not
    // fsynced).
    const archive = await PublishedArchive.openVerified(archivePath, manifest)
    return archive && { manifest, archivePath, archive }
  } catch {
    return undefined
  }
}

/** The manifest with the archive key wrapped for the groups added since (same ciphertext). */
function withNewGroups(
  manifest: ImageManifest,
  encryption: PublishOptions['encryption'],
): ImageManifest | undefined {
  if (!manifest.encryption || !encryption) return undefined
  return {
    ...manifest,
    encryption: extendWrappings(manifest.encryption, encryption.groupKeys, manifest.name),
  }
}

/**
 * After packing again (`--update-image`, or a root touched without a change in content): the
 * same plaintext keeps its ciphertext, and so its infohash and serial, when the previous
 * version's ciphertext and torrent are intact and no group was revoked since. Re-encrypting
 * would give other bytes (a new random key) and force a new serial on every node.
 */
async function reuseCiphertext(options: {
  previous: { manifest: ImageManifest } | undefined
  packed: { sha256: string }
  fingerprint: string
  wrappings: ReturnType<typeof compareWrappings> | undefined
  encryption: NonNullable<PublishOptions['encryption']>
  archivePath: string
  torrentPath: string
  announce: string
  webSeed: string
}): Promise<Pick<PublishedImage, 'manifest' | 'archive' | 'torrent'> | undefined> {
  const previous = options.previous?.manifest
  if (
    !previous?.encryption ||
    previous.encryption.plaintextSha256 !== options.packed.sha256 ||
    options.wrappings === undefined ||
    options.wrappings === 'changed'
  ) {
    return undefined
  }
  const existing = await openExisting(previous, options.archivePath)
  if (!existing) return undefined
  const torrent = await keptTorrent(
    options.torrentPath,
    options.announce,
    options.webSeed,
    previous.infoHash,
  )
  if (!torrent) {
    await existing.archive.close()
    return undefined
  }
  const manifest: ImageManifest = {
    ...(withNewGroups(previous, options.encryption) ?? previous),
    sourceFingerprint: options.fingerprint,
  }
  return { manifest, archive: existing.archive, torrent }
}

/**
 * The `.torrent` kept from the last publishing, pointed at this server's announce URL and
 * web seed (rewritten only if they changed); undefined when it is not the torrent of
 * `infoHash` any more (or unreadable), and must be made again.
 */
async function keptTorrent(
  torrentPath: string,
  announce: string,
  webSeed: string,
  infoHash: string,
): Promise<Uint8Array | undefined> {
  const current = await retargetTorrent(await readFile(torrentPath), announce, webSeed).catch(
    () => undefined,
  )
  if (!current || current.parsed.infoHash !== infoHash) return undefined
  if (current.changed) await writeFileAtomically(torrentPath, current.torrent)
  return current.torrent
}

/** A SquashFS image's blocks are zstd: another `--compression` for it is a mistake. */
function squashfsCompression(image: string, asked: Compression | undefined): 'zstd' {
  if (asked === undefined || asked === 'zstd') return 'zstd'
  throw new ImageSwarmError(
    'E_CONFIG_INVALID',
    `image ${image} is packed as SquashFS, whose blocks are zstd; --compression ${asked} is for tar images`,
    {
      operation: 'publish',
      path: image,
      hint: 'leave --compression out for SquashFS images, or publish this image with --format tar',
    },
  )
}

/** The kernel mounts a SquashFS image with seeks over its plaintext: not encrypted ones. */
function encryptedSquashfs(image: string): ImageSwarmError {
  return new ImageSwarmError(
    'E_CONFIG_INVALID',
    `image ${image} is packed as SquashFS, which imageswarm does not encrypt`,
    {
      operation: 'publish',
      path: image,
      hint: 'publish encrypted images with --format tar (docs/trust.md), or this one unencrypted',
    },
  )
}
