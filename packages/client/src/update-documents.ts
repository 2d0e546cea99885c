import { gunzipSync } from 'node:zlib'
import {
  archivePath as archiveUrlPath,
  type DeltaDescriptor,
  DeltaDescriptorSchema,
  type DeltasDocument,
  DeltasDocumentSchema,
  FileIndexDocumentSchema,
  type FileIndexEntry,
  type ImageManifest,
  ImageSwarmError,
  parseVersionDocument,
  sha256Hex,
  VERSION_FILES,
} from '@imageswarm/core'
import { fetchInstallFile, type ServerRequestOptions } from './server-api.js'

// The documents an update reads, each checked against the SHA-256 the manifest (or deltas.json) names.
/** The most a file index or a deltas document may be (a root of ~1 M entries). */
const VERSION_DOCUMENT_LIMIT = 256 * 1024 * 1024

export async function fetchVersionFile(
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
  const digest = sha256Hex(body)
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

export async function fetchFileIndex(
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

export async function fetchDeltas(
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

export async function fetchDescriptor(
  manifest: ImageManifest,
  entry: DeltasDocument['deltas'][number],
  request: ServerRequestOptions,
): Promise<DeltaDescriptor> {
  const bytes = await fetchVersionFile(manifest, entry.descriptor, entry.descriptorSha256, request)
  const descriptor = parseVersionDocument(
    DeltaDescriptorSchema,
    JSON.parse(gunzipSync(bytes).toString('utf8')),
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

/** The delta as an archive the swarm code can fetch: its file, size, digest and infohash. */
export function deltaManifest(manifest: ImageManifest, descriptor: DeltaDescriptor): ImageManifest {
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
