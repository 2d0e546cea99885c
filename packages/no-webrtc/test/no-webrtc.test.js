import assert from 'node:assert/strict'
import { test } from 'node:test'
import { RTCIceCandidate, RTCPeerConnection, RTCSessionDescription } from '../index.js'

test('constructing any WebRTC object fails with a clear, coded error', () => {
  for (const Ctor of [RTCPeerConnection, RTCSessionDescription, RTCIceCandidate]) {
    assert.throws(
      () => new Ctor(),
      (err) => err.code === 'E_WEBRTC_UNAVAILABLE' && /TCP only/.test(err.message),
    )
  }
})
