/**
 * The HTTP surface of an imageswarm server, shared by the seeder (which serves it) and
 * the client (which reads it), so neither imports the other.
 */
export const WIRE = {
  images: '/images',
  announce: '/announce',
  scrape: '/scrape',
  api: '/api',
  health: '/healthz',
  /** What a client needs to know of the server itself: `ServerDescription`. */
  server: '/server.json',
} as const

/**
 * `GET /server.json`. The seeder's BitTorrent port lets a client dial the image server
 * itself and treat only that connection as the server: a peer id's prefix, which anyone
 * can claim, no longer decides who is trusted.
 *
 * @example { "seeder": { "port": 6881 } }
 */
export interface ServerDescription {
  seeder: { port: number }
}

export function manifestPath(image: string): string {
  return `/images/${encodeURIComponent(image)}/manifest.json`
}

export function torrentPath(image: string): string {
  return `/images/${encodeURIComponent(image)}/image.torrent`
}

/** The archive itself; also the BEP 19 web seed URL of the image's torrent. */
export function archivePath(image: string, archiveFile: string): string {
  return `/images/${encodeURIComponent(image)}/${encodeURIComponent(archiveFile)}`
}

/** Joins a server base URL (`http://10.0.0.1:8080`, with or without a trailing slash) and a path. */
export function serverUrl(base: string, path: string): string {
  return base.replace(/\/+$/, '') + path
}
