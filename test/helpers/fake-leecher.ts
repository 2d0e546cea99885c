import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { createServer } from 'node:net'
import { announceTo } from './corrupt-peer.js'

/**
 * Announces, again and again, a "node" that still downloads (`left` > 0) at a port
 * nobody listens on: the tracker counts it as downloading, and no peer can ever reach
 * it. Anyone who can reach the tracker can send these.
 */
export async function startFakeLeecher(options: {
  announceUrl: string
  infoHash: string
  everyMs: number
}) {
  const peerId = Buffer.concat([Buffer.from('-XX0001-'), randomBytes(12)]).toString('hex')
  // A port that was free a moment ago and has no listener now: connections are refused.
  const probe = createServer().listen(0, '127.0.0.1')
  await once(probe, 'listening')
  const port = (probe.address() as { port: number }).port
  await new Promise((resolve) => probe.close(resolve))
  const announce = (event?: string) =>
    announceTo({ ...options, peerId, port, left: 1_000_000, ...(event ? { event } : {}) })
  await announce('started')
  const timer = setInterval(() => announce().catch(() => {}), options.everyMs)
  return {
    peerId,
    port,
    async stop() {
      clearInterval(timer)
      await announce('stopped').catch(() => {})
    },
  }
}
