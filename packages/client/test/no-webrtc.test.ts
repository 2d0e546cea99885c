import { realpathSync } from 'node:fs'
import { createRequire } from 'node:module'
import { pathToFileURL } from 'node:url'
import { describe, expect, it } from 'vitest'

// webtorrent reaches WebRTC through simple-peer → webrtc-polyfill, which pnpm's override
// replaces with @imageswarm/no-webrtc. Resolve simple-peer from webtorrent's own
// location, as webtorrent does, so this checks the installed graph, not a copy of it.
async function loadWebtorrentsSimplePeer() {
  const require = createRequire(import.meta.url)
  const webtorrentMain = realpathSync(require.resolve('webtorrent'))
  const simplePeer = createRequire(webtorrentMain).resolve('@thaunknown/simple-peer/lite.js')
  return (await import(pathToFileURL(simplePeer).href)).default
}

describe('the WebRTC replacement', () => {
  it('lets webtorrent load without a WebRTC implementation', async () => {
    const { default: WebTorrent } = await import('webtorrent')
    expect(typeof WebTorrent).toBe('function')
  })

  it('fails clearly when anything constructs a WebRTC peer', async () => {
    const Peer = await loadWebtorrentsSimplePeer()
    const peer = new Peer({ initiator: true })
    const error = await new Promise<Error & { code?: string }>((resolve) =>
      peer.once('error', resolve),
    )
    expect(error.message).toMatch(
      /RTCPeerConnection is not available: imageswarm speaks BitTorrent over TCP only/,
    )
  })
})
