import { realpathSync } from 'node:fs'
import { createRequire } from 'node:module'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { describe, expect, it } from 'vitest'

// The tracker client (bittorrent-tracker, for its WebSocket trackers) reaches WebRTC
// through simple-peer → webrtc-polyfill, which pnpm's override replaces with
// @imageswarm/no-webrtc. Resolve simple-peer from bittorrent-tracker's own location, as
// it does, so this checks the installed graph, not a copy of it.
async function loadTrackerClientsSimplePeer() {
  // Its package exports only `import` conditions; resolve the file the way Node's ESM
  // loader does.
  const trackerMain = realpathSync(fileURLToPath(import.meta.resolve('bittorrent-tracker')))
  const simplePeer = createRequire(trackerMain).resolve('@thaunknown/simple-peer/lite.js')
  return (await import(pathToFileURL(simplePeer).href)).default
}

describe('the WebRTC replacement', () => {
  it('lets the tracker client load without a WebRTC implementation', async () => {
    const { default: TrackerClient } = await import('bittorrent-tracker')
    expect(typeof TrackerClient).toBe('function')
  })

  it('fails clearly when anything constructs a WebRTC peer', async () => {
    const Peer = await loadTrackerClientsSimplePeer()
    const peer = new Peer({ initiator: true })
    const error = await new Promise<Error & { code?: string }>((resolve) =>
      peer.once('error', resolve),
    )
    expect(error.message).toMatch(
      /RTCPeerConnection is not available: imageswarm speaks BitTorrent over TCP only/,
    )
  })
})
