import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { type InfoHash, parseInfoHash } from '@imageswarm/core'
import bencode from 'bencode'
import { createTracker, type Tracker, type TrackerOptions } from '../src/index.js'

/** A tracker behind a real HTTP server on loopback, as the CLI would mount it. */
export interface RunningTracker {
  tracker: Tracker
  baseUrl: string
  announceUrl: string
  close(): Promise<void>
}

export async function startTracker(options: TrackerOptions = {}): Promise<RunningTracker> {
  const tracker = createTracker(options)
  const server = http.createServer((req, res) => {
    if (!tracker.handle(req, res) && !tracker.handleDashboard(req, res)) {
      res.statusCode = 404
      res.end('not found')
    }
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  const baseUrl = `http://127.0.0.1:${port}`
  return {
    tracker,
    baseUrl,
    announceUrl: `${baseUrl}/announce`,
    async close() {
      await tracker.close()
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

/** A deterministic infohash; a 0xf0 byte keeps its binary form from being valid UTF-8. */
export function testInfoHash(n: number): InfoHash {
  return parseInfoHash(`f0${n.toString(16).padStart(2, '0')}`.repeat(10))
}

/** A peer id of 20 bytes: `-IS0001-` and a number. */
export function testPeerId(n: number): string {
  return Buffer.from(`-IS0001-${String(n).padStart(12, '0')}`).toString('hex')
}

/** Percent-encodes every byte, as a BitTorrent client sends binary query values. */
export function encodeBinary(hex: string): string {
  return hex.replace(/../g, (byte) => `%${byte.toUpperCase()}`)
}

export interface RawResponse {
  status: number
  body: Record<string, unknown>
}

/** A GET whose bencoded reply is decoded (byte strings stay Uint8Array). */
export async function getBencoded(
  url: string,
  headers: Record<string, string> = {},
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers }, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (chunk: Buffer) => chunks.push(chunk))
        res.on('end', () => {
          try {
            const body = bencode.decode(Buffer.concat(chunks)) as Record<string, unknown>
            resolve({ status: res.statusCode ?? 0, body })
          } catch (err) {
            reject(err)
          }
        })
      })
      .on('error', reject)
  })
}

export interface AnnounceQuery {
  infoHash: string
  peerId: string
  port: number
  event?: 'started' | 'completed' | 'stopped'
  left?: number | string
  uploaded?: number | string
  downloaded?: number | string
  numwant?: number
}

/** Announces as a compact-peer BitTorrent client would. */
export function announce(
  announceUrl: string,
  query: AnnounceQuery,
  headers: Record<string, string> = {},
): Promise<RawResponse> {
  const parts = [
    `info_hash=${encodeBinary(query.infoHash)}`,
    `peer_id=${encodeBinary(query.peerId)}`,
    `port=${query.port}`,
    `uploaded=${query.uploaded ?? 0}`,
    `downloaded=${query.downloaded ?? 0}`,
    `left=${query.left ?? 1000}`,
    'compact=1',
  ]
  if (query.event !== undefined) parts.push(`event=${query.event}`)
  if (query.numwant !== undefined) parts.push(`numwant=${query.numwant}`)
  return getBencoded(`${announceUrl}?${parts.join('&')}`, headers)
}

/** `ip:port` of each peer in a compact peer list. */
export function compactPeers(value: unknown): string[] {
  const bytes = Buffer.from(value as Uint8Array)
  const peers: string[] = []
  for (let i = 0; i + 6 <= bytes.length; i += 6) {
    peers.push(`${[...bytes.subarray(i, i + 4)].join('.')}:${bytes.readUInt16BE(i + 4)}`)
  }
  return peers
}

export function text(value: unknown): string {
  return Buffer.from(value as Uint8Array).toString('utf8')
}
