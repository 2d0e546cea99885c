import { readFile } from 'node:fs/promises'
import { networkInterfaces } from 'node:os'
import { errnoOf, ImageSwarmError } from '@imageswarm/core'

/** Where SystemImager keeps its BitTorrent settings; `SI_BITTORRENT_CONF` names another file. */
export const DEFAULT_BITTORRENT_CONF = '/etc/systemimager/bittorrent.conf'

/**
 * `/etc/systemimager/bittorrent.conf` as imageswarm uses it. SystemImager's init script
 * sourced it as shell; si_installbtimage read BT_TRACKER_PORT and BT_INTERFACE from it.
 */
export interface BittorrentConf {
  path: string
  /** BT_TRACKER_PORT: the tracker's port; here the server's one HTTP port (`--port`). */
  trackerPort?: number
  /** BT_INTERFACE, as written. */
  interface?: string
  /** The IPv4 address of BT_INTERFACE on this machine (`--advertise-address`). */
  interfaceAddress?: string
  /** BT_IMAGES: what si_startbttrack serves when no `--image` is given. */
  images: string[]
  /** BT_OVERRIDES: override directories; imageswarm serves every one without preparing. */
  overrides: string[]
  /** BT_COMPRESS=y|n: gzip or no compression for the BT_IMAGES it packs. */
  compress?: boolean
  /** BT_UPDATE=y|n. imageswarm packs a changed root again either way. */
  update?: boolean
  /** Warnings: unknown keys, an interface that is not here. */
  notes: string[]
}

/**
 * Keys SystemImager's file has whose job imageswarm does differently; read and ignored
 * (README, "Differences from SystemImager"): the tracker keeps its state in memory
 * (BT_TRACKER_STATE) and logs with the server to stderr (BT_TRACKER_LOG).
 */
const WITHOUT_COUNTERPART = new Set(['BT_TRACKER_STATE', 'BT_TRACKER_LOG'])
const KNOWN = new Set([
  'BT_TRACKER_PORT',
  'BT_INTERFACE',
  'BT_IMAGES',
  'BT_OVERRIDES',
  'BT_COMPRESS',
  'BT_UPDATE',
  ...WITHOUT_COUNTERPART,
])

/**
 * Reads SystemImager's bittorrent.conf: `KEY=VALUE` lines, `#` comments, values optionally
 * quoted. A missing file is no error (an imageswarm-only server has none): undefined.
 * A value imageswarm cannot use (a port that is not a number, BT_COMPRESS other than y or
 * n) is E_CONFIG_INVALID naming the file, line and key.
 *
 * @example await readBittorrentConf(process.env.SI_BITTORRENT_CONF ?? DEFAULT_BITTORRENT_CONF)
 */
export async function readBittorrentConf(
  path: string,
  addressOf: (name: string) => string | undefined = ipv4AddressOf,
): Promise<BittorrentConf | undefined> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return undefined
    throw new ImageSwarmError('E_CONFIG_INVALID', `cannot read ${path}: ${errnoOf(err)}`, {
      operation: 'read bittorrent.conf',
      path,
      hint: 'make it readable, or point SI_BITTORRENT_CONF at another file',
      cause: err,
    })
  }
  return parseBittorrentConf(text, path, addressOf)
}

/** The file's text as settings; see readBittorrentConf. */
export function parseBittorrentConf(
  text: string,
  path: string,
  addressOf: (name: string) => string | undefined = ipv4AddressOf,
): BittorrentConf {
  const conf: BittorrentConf = { path, images: [], overrides: [], notes: [] }
  const lines = text.split('\n')
  for (const [index, raw] of lines.entries()) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) continue
    const where = `${path}:${index + 1}`
    const match = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line)
    if (!match) {
      conf.notes.push(`${where}: not a KEY=VALUE line, ignored: ${line}`)
      continue
    }
    const key = match[1]!
    const value = unquote(match[2]!)
    if (!KNOWN.has(key)) {
      conf.notes.push(`${where}: unknown setting ${key}, ignored (known: ${[...KNOWN].join(', ')})`)
      continue
    }
    if (value === '' || WITHOUT_COUNTERPART.has(key)) continue
    switch (key) {
      case 'BT_TRACKER_PORT': {
        const port = Number(value)
        if (!/^[0-9]+$/.test(value) || port < 1 || port > 65535) {
          throw invalid(where, key, 'a port number from 1 to 65535', value)
        }
        conf.trackerPort = port
        break
      }
      case 'BT_INTERFACE': {
        conf.interface = value
        const address = addressOf(value)
        if (address === undefined) {
          conf.notes.push(
            `${where}: BT_INTERFACE=${value}: no interface of that name with an IPv4 address here; ignored (the .torrent announces --advertise-address, or the first LAN address)`,
          )
        } else {
          conf.interfaceAddress = address
        }
        break
      }
      case 'BT_IMAGES':
      case 'BT_OVERRIDES': {
        const names = value
          .split(',')
          .map((name) => name.trim())
          .filter(Boolean)
        if (key === 'BT_IMAGES') conf.images = names
        else conf.overrides = names
        break
      }
      case 'BT_COMPRESS':
      case 'BT_UPDATE': {
        const yes = /^(y|yes)$/i.test(value)
        if (!yes && !/^(n|no)$/i.test(value)) throw invalid(where, key, 'y or n', value)
        if (key === 'BT_COMPRESS') conf.compress = yes
        else conf.update = yes
        break
      }
    }
  }
  return conf
}

function unquote(value: string): string {
  const trimmed = value.trim()
  const quoted = /^"([^"]*)"|^'([^']*)'/.exec(trimmed)
  if (quoted) return quoted[1] ?? quoted[2] ?? ''
  // Unquoted, as the shell reads it: a ` #` starts a comment.
  return trimmed.replace(/\s+#.*$/, '')
}

function invalid(where: string, key: string, expected: string, received: string) {
  return new ImageSwarmError(
    'E_CONFIG_INVALID',
    `${where}: ${key} must be ${expected}, not ${JSON.stringify(received)}`,
    {
      operation: 'read bittorrent.conf',
      path: where,
      hint: `for example ${key}=${key === 'BT_TRACKER_PORT' ? '6969' : 'y'}`,
    },
  )
}

/** The first IPv4 address of a network interface; undefined when there is none. */
export function ipv4AddressOf(name: string): string | undefined {
  return networkInterfaces()[name]?.find((address) => address.family === 'IPv4')?.address
}
