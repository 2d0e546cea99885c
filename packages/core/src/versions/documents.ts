import { z } from 'zod'
import { ImageSwarmError } from '../errors.js'
import { IMAGE_NAME_PATTERN } from '../image-ref.js'

/**
 * The documents of image versions and deltas (issue 16, docs/updates.md), as the server
 * writes and serves them and the update client reads them. The newest manifest names the
 * SHA-256 of its file index and of its deltas document (`digests`), so a signed manifest
 * vouches for every byte an update acts on.
 */

const Sha256 = z.string().regex(/^[0-9a-f]{64}$/, 'expected 64 lowercase hex digits')
const Version = z.number().int().positive().max(Number.MAX_SAFE_INTEGER)
const ImageName = z.string().regex(IMAGE_NAME_PATTERN, 'an image name (letters, digits, . _ + -)')
const FileName = z
  .string()
  .min(1)
  .regex(/^[^/\\]+$/, 'a file name, not a path')
  .refine((name) => name !== '.' && name !== '..', 'a file name, not a path')
/** A path in the image root, as a file index names it: relative, no `..`, `.` for the root. */
export function isIndexPath(path: string): boolean {
  return (
    path.length > 0 &&
    path.length <= 4096 &&
    !path.includes('\0') &&
    (path === '.' ||
      (!path.startsWith('/') &&
        !path.split('/').some((part) => part === '..' || part === '' || part === '.')))
  )
}
const IndexPath = z.string().refine(isIndexPath, 'a relative path inside the image root')

export const FileIndexEntrySchema = z.strictObject({
  path: IndexPath,
  type: z.string().min(1).max(32),
  mode: z.number().int().nonnegative(),
  uid: z.number().int().nonnegative(),
  gid: z.number().int().nonnegative(),
  size: z.number().int().nonnegative(),
  mtime: z.number(),
  sha256: Sha256.optional(),
  linkTarget: z.string().optional(),
  hardlinkTo: IndexPath.optional(),
  attributes: Sha256.optional(),
})

/** One version's file index as published (`file-index.json.gz`). */
export const FileIndexDocumentSchema = z.strictObject({
  type: z.literal('imageswarm-file-index'),
  schemaVersion: z.literal(1),
  image: ImageName,
  version: Version,
  entries: z.array(FileIndexEntrySchema),
})
export type FileIndexDocument = z.output<typeof FileIndexDocumentSchema>

/** One kept version of an image: what `imageswarm versions IMAGE` lists. */
export const ImageVersionSchema = z.strictObject({
  version: Version,
  /** The version it was published after; absent for the first. */
  parent: Version.optional(),
  created: z.iso.datetime(),
  archiveFile: FileName,
  size: z.number().int().nonnegative(),
  sha256: Sha256,
  infoHash: z.string().regex(/^[0-9a-f]{40}$/),
  /** Entries of its file index, and the index file's SHA-256. */
  entries: z.number().int().nonnegative(),
  fileIndexSha256: Sha256,
})
export type ImageVersion = z.output<typeof ImageVersionSchema>

/** The versions a server keeps of one image, oldest first (`GET /images/NAME/versions`). */
export const VersionListSchema = z.strictObject({
  image: ImageName,
  newest: Version,
  /** How many versions the server keeps (`--keep-versions`). */
  keep: z.number().int().positive(),
  versions: z.array(ImageVersionSchema),
  /** Deltas to the newest version, by the version they start from. */
  deltas: z.array(
    z.strictObject({
      from: Version,
      size: z.number().int().nonnegative(),
      members: z.number().int().nonnegative(),
      removals: z.number().int().nonnegative(),
      seconds: z.number().nonnegative(),
    }),
  ),
})
export type VersionList = z.output<typeof VersionListSchema>

/** A file of the old version whose bytes the node feeds to zstd as the delta's reference. */
export const ReferenceFileSchema = z.strictObject({
  path: IndexPath,
  size: z.number().int().positive(),
  sha256: Sha256,
})
export type ReferenceFile = z.output<typeof ReferenceFileSchema>

/** What a delta from one version to the newest holds and how to open it. */
export const DeltaDescriptorSchema = z.strictObject({
  type: z.literal('imageswarm-delta'),
  schemaVersion: z.literal(1),
  image: ImageName,
  from: Version,
  to: Version,
  /** The delta file: a tar of the members that differ, zstd `--patch-from` the reference. */
  file: FileName,
  size: z.number().int().nonnegative(),
  sha256: Sha256,
  infoHash: z.string().regex(/^[0-9a-f]{40}$/),
  pieceLength: z.number().int().positive(),
  /** The decompressed tar. */
  tarSize: z.number().int().nonnegative(),
  tarSha256: Sha256,
  /** zstd's level and window (`--long=N`) the delta was made with. */
  level: z.number().int().min(1).max(22),
  windowLog: z.number().int().min(10).max(31),
  /** Paths of the tar's members, in its order. */
  members: z.array(IndexPath),
  /** Paths in `from` that `to` no longer has. */
  removals: z.array(IndexPath),
  /** The reference, in order: the old contents of these files of `from`, concatenated. */
  reference: z.array(ReferenceFileSchema),
  /** Seconds it took the server to make it. */
  seconds: z.number().nonnegative(),
})
export type DeltaDescriptor = z.output<typeof DeltaDescriptorSchema>

/** The deltas a server offers to the newest version (`deltas.json`, digest in the manifest). */
export const DeltasDocumentSchema = z.strictObject({
  type: z.literal('imageswarm-deltas'),
  schemaVersion: z.literal(1),
  image: ImageName,
  version: Version,
  /** The versions the server keeps (a node at another version gets the full image). */
  kept: z.array(Version),
  /** The image's own update excludes (its `etc/systemimager/updateclient.local.exclude`). */
  excludes: z.array(z.string().max(4096)).max(10_000),
  deltas: z.array(
    z.strictObject({
      from: Version,
      descriptor: FileName,
      descriptorSha256: Sha256,
      size: z.number().int().nonnegative(),
    }),
  ),
})
export type DeltasDocument = z.output<typeof DeltasDocumentSchema>

/**
 * The name a delta's swarm is tracked and shown under on the dashboard, beside its image's:
 * nodes updating from one version share it.
 *
 * @example deltaSwarmName('compute', 3, 5) // 'compute.delta-3-5'
 */
export function deltaSwarmName(image: string, from: number, to: number): string {
  return `${image}.delta-${from}-${to}`
}

/**
 * Parses one of these documents, naming the key that is wrong.
 *
 * @example parseVersionDocument(DeltasDocumentSchema, JSON.parse(text), url)
 */
export function parseVersionDocument<T>(schema: z.ZodType<T>, value: unknown, source: string): T {
  const result = schema.safeParse(value)
  if (result.success) return result.data
  const issue = result.error.issues[0]
  throw new ImageSwarmError(
    'E_MANIFEST_INVALID',
    `${source} is invalid at ${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}`,
    {
      operation: 'read version document',
      path: source,
      hint: 'the server wrote a document this client does not understand: check that both run the same imageswarm version',
    },
  )
}

/** Two-space JSON and a newline: the bytes whose SHA-256 is published. */
export function encodeVersionDocument(value: unknown): Buffer {
  return Buffer.from(`${JSON.stringify(value, null, 2)}\n`)
}
