import type { NodeStatusReport } from '@imageswarm/core'
import { testInfoHash } from './tracker-server.js'

/** A client's peer id (`-IS01C0-` + n), hex, as the install client makes them. */
export function clientPeerId(n: number): string {
  return Buffer.from(`-IS01C0-${String(n).padStart(12, '0')}`, 'latin1').toString('hex')
}

/** The image server's seeder's peer id (`-IS01S0-` + n), hex. */
export function serverPeerId(n: number): string {
  return Buffer.from(`-IS01S0-${String(n).padStart(12, '0')}`, 'latin1').toString('hex')
}

/** The node token node `peerId` posts with: fixed per peer id, 54 base64url characters. */
export function nodeToken(peerId: string): string {
  return Buffer.from(peerId, 'latin1').toString('base64url')
}

/** The address node `n` posts and announces from. */
export function nodeAddress(n: number): string {
  return `10.0.${n >> 8}.${n & 255}`
}

/** A valid status report of node `n` for image `rocky9` (infohash testInfoHash(1)). */
export function statusReport(n: number, fields: Partial<NodeStatusReport> = {}): NodeStatusReport {
  return {
    image: 'rocky9',
    infoHash: testInfoHash(1),
    peerId: clientPeerId(n),
    node: `node${n}`,
    state: 'downloading',
    size: 1000,
    downloaded: 0,
    downloadedFromServer: 0,
    uploaded: 0,
    downloadRate: 0,
    uploadRate: 0,
    peers: 0,
    ...fields,
  }
}
