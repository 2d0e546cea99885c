import { ImageSwarmError, parseImageName, SwarmSettingsSchema } from '@imageswarm/core'
import { z } from 'zod'

/** The port an imageswarm server listens on unless told otherwise (SystemImager's tracker port). */
export const DEFAULT_SERVER_PORT = 6969

export const ClientConfigSchema = z.object({
  /** Base URL of the image server, e.g. `http://10.0.0.1:6969`. */
  server: z.string().min(1),
  image: z.string().transform((name) => parseImageName(name)),
  /** Where the archive is downloaded; `auto` picks tmpfs when memory allows, else the target disk. */
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
  /** This node's name in the dashboard; default: the host name. */
  node: z.string().min(1).max(255).optional(),
  /** Post install status to the server for its dashboard. */
  report: z.boolean().default(true),
  /** Accept a target root that already has files in it (they may be overwritten). */
  force: z.boolean().default(false),
  swarm: SwarmSettingsSchema.default(SwarmSettingsSchema.parse({})),
})

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

function badServer(value: string, source: string): ImageSwarmError {
  return new ImageSwarmError('E_CONFIG_INVALID', `invalid ${source}: ${JSON.stringify(value)}`, {
    path: source,
    hint: 'give the image server as an address (10.0.0.1), address:port or http://address:port',
  })
}
