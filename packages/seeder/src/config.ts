import {
  COMPRESSIONS,
  IMAGE_FORMATS,
  IMAGE_NAME_PATTERN,
  type ImageFormat,
  resolveConfig,
  SwarmSettingsSchema,
  SYSTEMIMAGER_DIRS,
} from '@imageswarm/core'
import { z } from 'zod'
import { DEFAULT_MANIFEST_LIFETIME_SECONDS } from './manifest-signer.js'

export const SeederConfigSchema = z.object({
  imagesDir: z.string().min(1).default(SYSTEMIMAGER_DIRS.images),
  tarballsDir: z.string().min(1).default(SYSTEMIMAGER_DIRS.tarballs),
  torrentsDir: z.string().min(1).default(SYSTEMIMAGER_DIRS.torrents),
  /**
   * Unset: the compression the image was last published with (its manifest), so an image
   * published with gzip or none (si_installbtimage) is served as it is, not packed again;
   * zstd for an image published for the first time.
   */
  compression: z.enum(COMPRESSIONS).optional(),
  /**
   * How images are packed (`--format`): `tar` or `squashfs`, for every image, or by image
   * name (`{ "hpc": "squashfs", "*": "tar" }`, `*` for the images not named). Unset for an
   * image: as it was last published (its manifest), else tar.
   */
  format: z
    .union([
      z.enum(IMAGE_FORMATS),
      z.record(
        z
          .string()
          .refine((key) => key === '*' || IMAGE_NAME_PATTERN.test(key), 'an image name or *'),
        z.enum(IMAGE_FORMATS),
      ),
    ])
    .optional(),
  /** zstd 1–19 (default 3: 0.7 s for a Debian root, ratio 2.5) or gzip 1–9. */
  compressionLevel: z.number().int().min(1).max(19).optional(),
  /** 1 MiB pieces: large enough to keep per-piece overhead (hashing, HAVE messages,
   * bitfields) small for multi-GB images, small enough that a new client has a piece to
   * share within a fraction of a second on a gigabit LAN. */
  pieceLength: z
    .number()
    .int()
    .min(16 * 1024)
    .max(64 * 1024 * 1024)
    .refine((n) => (n & (n - 1)) === 0, 'a power of two')
    .default(1024 * 1024),
  /**
   * Versions of each image kept for updates, the newest included (`--keep-versions`): a node
   * at one of them updates by a delta, a node at an older one gets the full image. Each kept
   * version costs its archive's size on the server's disk.
   */
  keepVersions: z.number().int().min(1).max(100).default(4),
  /** SystemImager-style exclude file applied when packing every image. */
  excludeFile: z.string().optional(),
  /**
   * The key directory (`imageswarm key generate --output DIR`) whose signing key signs every
   * manifest; unset: manifests are unsigned, as before.
   */
  keys: z.string().min(1).optional(),
  /**
   * Encrypt every archive (docs/trust.md, "Encrypted archives"): the torrent, the seeder and
   * the web seed then hold ciphertext only, and the archive key is wrapped for every group
   * in `groupKeys`. Needs `keys` (the wrappings are only worth what the signature is).
   */
  encrypt: z.boolean().default(false),
  /** The group key directory (`imageswarm key group add NAME --group-keys DIR`). */
  groupKeys: z.string().min(1).optional(),
  /** Seconds a signed manifest is accepted: see DEFAULT_MANIFEST_LIFETIME_SECONDS. */
  manifestLifetime: z
    .number()
    .int()
    .min(1)
    .max(366 * 24 * 60 * 60)
    .default(DEFAULT_MANIFEST_LIFETIME_SECONDS),
  /**
   * Mirror another image server (`--mirror-of URL`): serve every image it publishes,
   * fetched through the swarm, as this server's own (see ImageMirror). Its base URL.
   */
  mirrorOf: z
    .url({ protocol: /^https?$/, error: 'an image server URL, e.g. http://10.0.0.1:6969' })
    .optional(),
  /**
   * Seconds between a mirror's polls of its primary: how soon a change there reaches the
   * mirror, and, three of them without a poll, when the primary stops listing the mirror in
   * its torrents. 10 s: a new version starts mirroring within seconds of being published,
   * at a few small requests per image per poll.
   */
  mirrorInterval: z.number().int().min(1).max(3600).default(10),
  /**
   * The root public key a mirror checks its primary's key list and manifests against
   * (`root.pub` of `imageswarm key generate`); unset: the mirror serves them unchecked.
   */
  trustRoot: z.string().min(1).optional(),
  /** TCP port of the server's BitTorrent seeder (BitTorrent's customary 6881). */
  torrentPort: z.number().int().min(0).max(65535).default(6881),
  swarm: SwarmSettingsSchema.default(SwarmSettingsSchema.parse({})),
})

export type SeederConfig = z.output<typeof SeederConfigSchema>
export type SeederConfigInput = z.input<typeof SeederConfigSchema>

/** The format `config` asks for `image`, if it names one (else: as last published). */
export function configuredFormat(config: SeederConfig, image: string): ImageFormat | undefined {
  const { format } = config
  return typeof format === 'string' ? format : (format?.[image] ?? format?.['*'])
}

/** Fills defaults and names the bad key. */
export function resolveSeederConfig(partial: SeederConfigInput = {}): SeederConfig {
  return resolveConfig(SeederConfigSchema, partial, 'seeder')
}
