import { lstat, readFile } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import {
  ARCHIVE_EXTENSIONS,
  archiveFileName,
  type Compression,
  errnoOf,
  type ImageManifest,
  ImageSwarmError,
} from '@imageswarm/core'
import parseTorrent from 'parse-torrent'

/** `sourceFingerprint` of a tarball served as it was found: imageswarm did not write it. */
export const SERVED_AS_IS = 'as-is'

/**
 * True when imageswarm packed the archive the manifest names. Its manifest, written last
 * and durably, is the record: a packed archive's manifest carries the image root's
 * fingerprint, a tarball served as it was found carries `as-is`.
 */
export function packedByImageswarm(manifest: ImageManifest): boolean {
  return manifest.sourceFingerprint !== undefined && manifest.sourceFingerprint !== SERVED_AS_IS
}

/**
 * The tarball to serve for an image that has no root: `image-NAME.tar.zst`,
 * `image-NAME.tar.gz` or `image-NAME.tar` (SystemImager's names, its installer preferring
 * `.tar.gz` to `.tar`), the one the last publication served first; only the one for
 * `compression` when it is given. Undefined when there is none.
 */
export async function findTarball(
  tarballsDir: string,
  image: string,
  compression: Compression | undefined,
  previous: ImageManifest | undefined,
): Promise<string | undefined> {
  const names = compression
    ? [archiveFileName(image, compression)]
    : [
        ...(previous && !previous.encryption ? [previous.archiveFile] : []),
        ...(['zstd', 'gzip', 'none'] as const).map((kind) => archiveFileName(image, kind)),
      ]
  for (const name of new Set(names)) {
    const path = join(tarballsDir, name)
    const st = await lstat(path).catch(() => undefined)
    if (st?.isFile()) return path
  }
  return undefined
}

/**
 * Refuses to go on when an archive imageswarm is about to write is there and imageswarm did
 * not write it: a SystemImager tarball is never overwritten. It is imageswarm's when the
 * image's manifest names it as packed (`packedByImageswarm`), or, for a publication
 * interrupted before its manifest was written, when the `.torrent` imageswarm writes right
 * after packing describes this very file (its name and size).
 */
export async function refuseForeignArchive(options: {
  image: string
  archivePath: string
  torrentPath: string
  previous: ImageManifest | undefined
  imagesDir: string
}): Promise<void> {
  const { image, archivePath, previous } = options
  const st = await lstat(archivePath).catch((err: unknown) => {
    if (errnoOf(err) === 'ENOENT') return undefined
    throw err
  })
  if (st === undefined) return
  const named =
    previous !== undefined &&
    previous.archiveFile === basename(archivePath) &&
    packedByImageswarm(previous)
  if (named) return
  const torrent = await readTorrent(options.torrentPath)
  const described =
    torrent?.createdBy === 'imageswarm' &&
    torrent.name === basename(archivePath) &&
    torrent.length === st.size
  if (described) return
  throw foreignFile(
    archivePath,
    `image ${image}: ${archivePath} was not written by imageswarm (no manifest of a packed image names it); it is not overwritten`,
    `to serve this tarball as it is, move the image root ${join(options.imagesDir, image)} away and publish again; to pack the image root instead, move the tarball away (mv ${archivePath} ${archivePath}.systemimager) or publish with another --compression (${Object.keys(ARCHIVE_EXTENSIONS).join(', ')})`,
  )
}

/**
 * Refuses to go on when a `.torrent` imageswarm is about to write is there and imageswarm
 * did not make it: it is imageswarm's when its `created by` says so or it is the torrent of
 * the manifest's infohash. SystemImager's torrents announce its own tracker.
 */
export async function refuseForeignTorrent(options: {
  image: string
  torrentPath: string
  previous: ImageManifest | undefined
}): Promise<void> {
  const { image, torrentPath, previous } = options
  if (!(await exists(torrentPath))) return
  const torrent = await readTorrent(torrentPath)
  const ours =
    torrent !== undefined &&
    (torrent.createdBy === 'imageswarm' || torrent.infoHash === previous?.infoHash)
  if (ours) return
  throw foreignFile(
    torrentPath,
    `image ${image}: ${torrentPath} was not made by imageswarm; it is not overwritten`,
    `move it away (mv ${torrentPath} ${torrentPath}.systemimager): imageswarm writes its own .torrent in ${dirname(torrentPath)}, announcing its own tracker`,
  )
}

/** The `.torrent` at `path`, parsed; undefined when there is none or it does not parse. */
async function readTorrent(path: string) {
  const bytes = await readFile(path).catch(() => undefined)
  return bytes === undefined ? undefined : parseTorrent(bytes).catch(() => undefined)
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path)
    return true
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return false
    throw err
  }
}

function foreignFile(path: string, message: string, hint: string): ImageSwarmError {
  return new ImageSwarmError('E_FOREIGN_FILE', message, {
    operation: 'publish image',
    path,
    hint,
  })
}
