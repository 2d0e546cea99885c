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
  /** A mirror's registration with its primary (`POST`, `MirrorRegistration`), answered
   * with every server the primary knows (`ServerList`). */
  mirrors: '/mirrors',
} as const

/**
 * `POST /mirrors`: a mirror (`serve --mirror-of URL`) tells its primary, at every poll,
 * where clients reach it and which archives it serves, by infohash. The primary lists it in
 * those images' `.torrent` (announce-list, url-list) until it has not been heard from for
 * three of its intervals.
 *
 * @example { "url": "http://10.0.0.2:6969", "images": ["4f1c…"], "intervalSeconds": 10 }
 */
export interface MirrorRegistration {
  url: string
  images: string[]
  intervalSeconds: number
}

/** One server serving images: its base URL and the infohashes it serves. */
export interface ServerEntry {
  url: string
  images: string[]
}

/** The answer to `POST /mirrors`: every live server the primary knows, itself first. */
export interface ServerList {
  servers: ServerEntry[]
}

/**
 * `GET /api/servers` (the dashboard): the servers serving this server's images, as this
 * one knows them, itself first. `role` is what each is to this server.
 *
 * @example { "servers": [{ "url": "http://10.0.0.2:6969", "role": "this server", "images": ["4f1c…"] },
 *   { "url": "http://10.0.0.1:6969", "role": "primary", "images": ["4f1c…"] }] }
 */
export interface DashboardServers {
  servers: (ServerEntry & { role: 'this server' | 'primary' | 'mirror' })[]
}

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

/** The root-signed key list and its signature (`serve --keys DIR`), served verbatim. */
export const TRUST_PATHS = {
  keyList: '/keys.json',
  keyListSignature: '/keys.json.minisig',
} as const

/** The manifest's minisign signature (`serve --keys DIR`); 404 when the image is unsigned. */
export function manifestSignaturePath(image: string): string {
  return `${manifestPath(image)}.minisig`
}

export function torrentPath(image: string): string {
  return `/images/${encodeURIComponent(image)}/image.torrent`
}

/**
 * What an update reads (issue 16): the versions the server keeps, the newest version's file
 * index (gzipped JSON, `digests.fileIndex`), its deltas document (`digests.deltas`; each
 * delta's descriptor, torrent and file are files beside the archive, `archivePath`), and
 * members of the newest version by file (`POST`, a JSON `{ version, paths }`, answered
 * with a tar).
 */
export const VERSION_FILES = {
  versions: 'versions',
  fileIndex: 'file-index.json.gz',
  deltas: 'deltas.json',
  members: 'members',
} as const

/** The archive itself; also the BEP 19 web seed URL of the image's torrent. */
export function archivePath(image: string, archiveFile: string): string {
  return `/images/${encodeURIComponent(image)}/${encodeURIComponent(archiveFile)}`
}

/**
 * What a bare node fetches before and after the image, from the same server: the iPXE
 * script and installer ramdisk it boots (`imageswarm serve --boot-dir`), and what the
 * installer needs besides the archive (see NodeInstallConfig).
 */
export const BOOT_PATHS = {
  /** iPXE script; `?mac=${net0/mac}` picks that node's image. */
  ipxe: '/boot/ipxe',
  kernel: '/boot/vmlinuz',
  initrd: '/boot/initrd.img',
} as const

export const INSTALL_PATHS = {
  /** `?image=NAME&mac=MAC&hostname=H&layout=L` → NodeInstallConfig. */
  node: '/install/node.json',
  /** The same query → the node config's minisign signature (`serve --keys`); 404 unsigned. */
  nodeSignature: '/install/node.json.minisig',
} as const

/** An override directory, as a tar archive (`/var/lib/systemimager/overrides/NAME`). */
export function overridePath(name: string): string {
  return `/install/overrides/${encodeURIComponent(name)}.tar`
}

/** A post-install script (`/var/lib/systemimager/scripts/post-install/FILE`). */
export function postInstallPath(file: string): string {
  return `/install/post-install/${encodeURIComponent(file)}`
}

/** Joins a server base URL (`http://10.0.0.1:8080`, with or without a trailing slash) and a path. */
export function serverUrl(base: string, path: string): string {
  return base.replace(/\/+$/, '') + path
}
