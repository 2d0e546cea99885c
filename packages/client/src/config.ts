import {
  GROUP_NAME_PATTERN,
  ImageSwarmError,
  MAC_PATTERN,
  parseImageName,
  SwarmSettingsSchema,
} from '@imageswarm/core'
import { z } from 'zod'

/** The port an imageswarm server listens on unless told otherwise (SystemImager's tracker port). */
export const DEFAULT_SERVER_PORT = 6969

/**
 * What the node does with a verified image (ClientConfig's imageMode): `extract` it into the
 * target root; or, for a SquashFS image, mount it read-only under an overlay at the target
 * root, the file kept on the node's disk (`disk`: in the image cache, `cache=`) or in RAM
 * (`ram`: a tmpfs of its own). ClusterWare's `disked`, and `roram` for `ram`.
 */
export const IMAGE_MODES = ['extract', 'disk', 'ram'] as const
export type ImageMode = (typeof IMAGE_MODES)[number]

/** The ways the archive can be fetched (ClientConfig's downloadProtocol). */
export const DOWNLOAD_PROTOCOLS = ['torrent', 'http'] as const
export type DownloadProtocol = (typeof DOWNLOAD_PROTOCOLS)[number]

export const ClientConfigSchema = z.object({
  /**
   * The image servers' base URLs, e.g. `http://10.0.0.1:6969`: a primary and its mirrors,
   * which serve the same signed image. The manifest comes from the first that answers; every
   * one is in the swarm (tracker, seeder, web seed) and gets the node's status reports.
   * Given as a list or as one string, commas separating servers (`10.0.0.1,10.0.0.2`);
   * each is normalized (normalizeServerUrl) and a repeated one dropped, order kept.
   */
  server: z.union([z.string(), z.array(z.string())]).transform((value, context) => {
    try {
      return parseServerList(value)
    } catch (err) {
      context.addIssue({ code: 'custom', message: (err as Error).message })
      return z.NEVER
    }
  }),
  image: z.string().transform((name) => parseImageName(name)),
  /**
   * Where the archive is downloaded: a directory, or one of STAGING_CHOICES: `auto` picks
   * tmpfs when memory allows, else the target disk; `tmpfs` and `target` pick one of them.
   */
  staging: z.string().min(1).default('auto'),
  /** Memory that `auto` staging leaves free beside the archive for the installer and tar. */
  memoryReserve: z
    .number()
    .int()
    .nonnegative()
    .default(512 * 1024 * 1024),
  /** The root of the system being installed (SystemImager's `/a`). */
  target: z.string().min(1).default('/a'),
  /** Longest time to keep seeding after the install while others still download. */
  seedTimeSeconds: z.number().min(0).max(86_400).default(600),
  /**
   * Leave the swarm early when this node's upload, over the last 5 s, falls below this many
   * bytes a second (SystemImager's `BITTORRENT_UPLOAD_MIN`); -1 or 0: no such minimum.
   */
  seedUploadMin: z.number().min(-1).default(0),
  /** How long to keep trying to reach the image server before giving up. */
  connectTimeoutSeconds: z.number().min(1).max(3600).default(30),
  /**
   * How long to wait for an image the server does not publish (404) to appear. 0: fail at
   * once, so a mistyped name shows at once. An image the server is still packing is
   * waited for anyway (503 E_IMAGE_PUBLISHING), for at most this or 2 h, whichever is longer.
   */
  imageTimeoutSeconds: z.number().min(0).max(86_400).default(0),
  /** With no peers, or no progress, for this long, also fetch from the server's web seed. */
  webSeedFallbackSeconds: z.number().min(0).max(3600).default(10),
  /** Give up when no byte arrives from anywhere for this long. */
  stallTimeoutSeconds: z.number().min(5).max(86_400).default(300),
  /** A local directory or partition (`/dev/sda3`, `LABEL=cache`) that keeps archives across boots. */
  cache: z.string().min(1).optional(),
  /** See IMAGE_MODES; `disk` and `ram` need a SquashFS image. */
  imageMode: z.enum(IMAGE_MODES).default('extract'),
  /**
   * The overlay's writable layer when the image is mounted (`disk`, `ram`): `tmpfs` (lost at
   * reboot), a partition (`/dev/sda4`, `LABEL=overlay`, mounted; kept across boots) or a
   * directory. Writes go there; the image file is never written.
   */
  overlay: z.string().min(1).default('tmpfs'),
  /** This node's name in the dashboard; default: the host name. */
  node: z.string().min(1).max(255).optional(),
  /** The MAC of the NIC this node booted from (`BOOTIF=`), reported beside its name. */
  bootMac: z.string().regex(MAC_PATTERN).optional(),
  /**
   * How the archive is fetched: `torrent`, over the swarm (the server's web seed only as a
   * fallback); `http`, one sequential GET from the server, resumed with Range after a cut,
   * with no swarm and no seeding: the baseline the VM benchmark measures the swarm against
   * (`si.dl-protocol=http`). Either way the archive is verified and extracted alike.
   */
  downloadProtocol: z.enum(DOWNLOAD_PROTOCOLS).default('torrent'),
  /** Post install status to the server for its dashboard. */
  report: z.boolean().default(true),
  /** Accept a target root that already has files in it (they may be overwritten). */
  force: z.boolean().default(false),
  /**
   * The root public key this node trusts (minisign, the `root.pub` of `imageswarm key
   * generate`; in the installer ramdisk a path inside it, `imageswarm initrd --trust-root`).
   * With it, only images whose manifest a key of the server's root-signed key list signed
   * are installed, checked before anything is written to the target (docs/trust.md).
   */
  trustRoot: z.string().min(1).optional(),
  /**
   * A root public key given as its `RW…` line instead of a file: accepted only with
   * `insecureTestMode`, since the kernel command line comes from the same unauthenticated
   * boot path an attacker would use.
   */
  trustRootKey: z.string().min(1).optional(),
  /** Accept `trustRootKey` (tests, labs): logged as insecure on every install. */
  insecureTestMode: z.boolean().default(false),
  /** Refuse a manifest serial below this (rollback), besides the serial the node recorded. */
  minSerial: z.number().int().positive().max(Number.MAX_SAFE_INTEGER).optional(),
  /** Refuse a key list version below this, besides the version the node recorded. */
  minKeyListVersion: z.number().int().positive().max(Number.MAX_SAFE_INTEGER).optional(),
  /**
   * This node's group (`imageswarm.group=`): whose key opens encrypted images. Default: the
   * group named in the node secret file.
   */
  group: z.string().regex(GROUP_NAME_PATTERN, 'a group name (letters, digits, . _ + -)').optional(),
  /**
   * The file holding this node's secret (`imageswarm key node add … --output FILE`), which
   * fetches its group key from the server. A path, never the secret: the kernel command
   * line is readable by every process on the node.
   */
  nodeSecretFile: z.string().min(1).optional(),
  swarm: SwarmSettingsSchema.default(SwarmSettingsSchema.parse({})),
})

/**
 * Staging chosen by the client rather than given as a directory: `auto` (tmpfs when memory
 * allows, else the target disk), `tmpfs` (`/tmp/imageswarm-NAME`), `target` (the target
 * disk's `tmp/imageswarm-NAME`). The last two are SystemImager 5's `si.tmpfs-staging=y|n`.
 */
export const STAGING_CHOICES = ['auto', 'tmpfs', 'target'] as const
export type StagingChoiceName = (typeof STAGING_CHOICES)[number]

export function isStagingChoice(staging: string): staging is StagingChoiceName {
  return (STAGING_CHOICES as readonly string[]).includes(staging)
}

export type ClientConfig = z.output<typeof ClientConfigSchema>
export type ClientConfigInput = z.input<typeof ClientConfigSchema>

/**
 * Turns what an installer hands us into a server base URL: SystemImager's `IMAGESERVER`
 * is a bare address (`10.0.0.1`), imageswarm's may carry a port or a full URL.
 *
 * @example normalizeServerUrl('10.0.0.1') // 'http://10.0.0.1:6969'
 */
export function normalizeServerUrl(value: string, source = 'server'): string {
  const text = value.trim()
  const hasScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(text)
  let url: URL
  try {
    url = new URL(hasScheme ? text : `http://${text}`)
  } catch {
    throw badServer(value, source)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw badServer(value, source)
  if (!url.hostname || (url.pathname.length > 1 && !hasScheme)) throw badServer(value, source)
  // A bare address is SystemImager's IMAGESERVER: the imageswarm server's default port.
  if (!hasScheme && !/:\d+$/.test(text)) url.port = String(DEFAULT_SERVER_PORT)
  return url.toString().replace(/\/+$/, '')
}

/** One or more image servers, in the order they are asked; never empty. */
export type ServerList = [string, ...string[]]

/**
 * The image servers a setting names: entries separated by commas (in one string or across
 * a list), each normalized with normalizeServerUrl, repeats dropped and the order kept. An
 * empty entry, or one that is no server address, is E_CONFIG_INVALID naming it.
 *
 * @example parseServerList('10.0.0.1, http://10.0.0.2:7000,10.0.0.1')
 *   // ['http://10.0.0.1:6969', 'http://10.0.0.2:7000']
 */
export function parseServerList(value: string | readonly string[], source = 'server'): ServerList {
  const given = typeof value === 'string' ? [value] : value
  const servers: string[] = []
  for (const text of given) {
    for (const entry of text.split(',')) {
      if (entry.trim() === '') {
        throw new ImageSwarmError(
          'E_CONFIG_INVALID',
          `invalid ${source}: an empty entry in ${JSON.stringify(text)}`,
          {
            path: source,
            hint: 'separate image servers with single commas: 10.0.0.1,10.0.0.2',
          },
        )
      }
      const url = normalizeServerUrl(entry, source)
      if (!servers.includes(url)) servers.push(url)
    }
  }
  const [first, ...rest] = servers
  if (first === undefined) {
    throw new ImageSwarmError('E_CONFIG_INVALID', `invalid ${source}: no image server in it`, {
      path: source,
      hint: 'give at least one image server: an address (10.0.0.1), address:port or URL',
    })
  }
  return [first, ...rest]
}

function badServer(value: string, source: string): ImageSwarmError {
  return new ImageSwarmError('E_CONFIG_INVALID', `invalid ${source}: ${JSON.stringify(value)}`, {
    path: source,
    hint: 'give the image server as an address (10.0.0.1), address:port or http://address:port',
  })
}
