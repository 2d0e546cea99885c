import { z } from 'zod'
import { ImageSwarmError } from './errors.js'
import { IMAGE_NAME_PATTERN } from './image-ref.js'
import { type InfoHash, parseInfoHash } from './infohash.js'
import { GROUP_NAME_PATTERN } from './trust/archive-key.js'
import { ENCRYPTION_SCHEME } from './trust/archive-stream.js'

export const COMPRESSIONS = ['zstd', 'gzip', 'none'] as const
export type Compression = (typeof COMPRESSIONS)[number]

/**
 * How an image is packed: `tar` (GNU tar, pax, compressed as `compression` says) or
 * `squashfs` (one SquashFS file, zstd blocks, that a node can also mount read-only).
 */
export const IMAGE_FORMATS = ['tar', 'squashfs'] as const
export type ImageFormat = (typeof IMAGE_FORMATS)[number]

const Sha256 = z.string().regex(/^[0-9a-f]{64}$/, 'expected 64 lowercase hex digits')

/**
 * What the server says about one published image: enough for a client to check the
 * `.torrent` it is handed and, after the download, every byte of the archive.
 */
export const ImageManifestSchema = z.object({
  schemaVersion: z.literal(1),
  name: z.string().regex(IMAGE_NAME_PATTERN, 'an image name (letters, digits, . _ + -)'),
  archiveFile: z
    .string()
    .min(1)
    .regex(/^[^/\\]+$/, 'a file name, not a path')
    .refine((name) => name !== '.' && name !== '..', 'a file name, not a path'),
  size: z.number().int().nonnegative(),
  sha256: Sha256,
  infoHash: z
    .string()
    .regex(/^[0-9a-fA-F]{40}$/, 'an infohash (40 hex digits)')
    .transform((hash) => parseInfoHash(hash)),
  pieceLength: z.number().int().positive(),
  compression: z.enum(COMPRESSIONS),
  /** Absent: `tar` (manifests before SquashFS). For `squashfs`, `compression` is its blocks'. */
  format: z.enum(IMAGE_FORMATS).optional(),
  created: z.iso.datetime(),
  /**
   * A digest of the image root's tree when the archive was packed (server-side use); `as-is`
   * for a tarball imageswarm did not pack and serves as it found it (no image root).
   */
  sourceFingerprint: z.string().optional(),
  // Signed manifests (issue 17, docs/trust.md): optional, so unsigned manifests parse as
  // before; verifySignedManifest requires serial and expires.
  /** The image version: grows with every publication; nodes refuse a lower one (rollback). */
  serial: z.number().int().positive().max(Number.MAX_SAFE_INTEGER).optional(),
  /** After this time nodes refuse the manifest: an old signed manifest cannot be replayed. */
  expires: z.iso.datetime().optional(),
  /** SHA-256 of the other documents the client acts on, where the image has them. */
  digests: z
    .strictObject({
      fileIndex: Sha256.optional(),
      diskLayout: Sha256.optional(),
      deltas: Sha256.optional(),
    })
    .optional(),
  /** The archive is encrypted: archiveFile, size, sha256 and infoHash are the ciphertext's. */
  encryption: z
    .strictObject({
      scheme: z.literal(ENCRYPTION_SCHEME),
      archiveKeyId: z.string().regex(/^[0-9A-F]{16}$/, 'a key id (16 upper-case hex digits)'),
      plaintextSize: z.number().int().nonnegative(),
      plaintextSha256: Sha256,
      /** The archive key, wrapped once per node group (wrapArchiveKey). */
      wrappedKeys: z
        .array(
          z.strictObject({
            group: z.string().regex(GROUP_NAME_PATTERN, 'a group name'),
            groupKeyId: z.string().regex(/^[0-9A-F]{16}$/, 'a key id (16 upper-case hex digits)'),
            wrappedKey: z.base64(),
          }),
        )
        .max(1024),
    })
    .optional(),
})

export type ImageManifest = Omit<z.output<typeof ImageManifestSchema>, 'infoHash'> & {
  infoHash: InfoHash
}

/**
 * @example parseManifest(JSON.parse(text), 'http://server/images/demo/manifest.json')
 */
export function parseManifest(value: unknown, source: string): ImageManifest {
  const result = ImageManifestSchema.safeParse(value)
  if (result.success) return result.data as ImageManifest
  const issue = result.error.issues[0]
  const key = issue?.path.join('.') || '(root)'
  throw new ImageSwarmError(
    'E_MANIFEST_INVALID',
    `manifest from ${source} is invalid at ${key}: ${issue?.message ?? 'invalid'}`,
    {
      operation: 'read manifest',
      path: source,
      hint: 'republish the image on the server (imageswarm serve --update-image)',
    },
  )
}

/** One line of the server's image list (`GET /images`). */
export interface ImageSummary {
  name: string
  infoHash: InfoHash
  size: number
  compression: Compression
  format: ImageFormat
  created: string
}

export function summarizeManifest(manifest: ImageManifest): ImageSummary {
  return {
    name: manifest.name,
    infoHash: manifest.infoHash,
    size: manifest.size,
    compression: manifest.compression,
    format: manifest.format ?? 'tar',
    created: manifest.created,
  }
}
