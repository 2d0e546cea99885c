// imageswarm replaces `webrtc-polyfill` (whose native dependency downloads a prebuilt
// addon at install time) with this package through pnpm's overrides. Install networks
// are LANs where every peer speaks TCP, so WebRTC is never needed; if some code path
// ever constructs a WebRTC object anyway, it fails loudly instead of hanging.

const HINT =
  'imageswarm speaks BitTorrent over TCP only; WebRTC peers are disabled (webrtc-polyfill is replaced by @imageswarm/no-webrtc).'

export class WebRTCUnavailableError extends Error {
  constructor(what) {
    super(`${what} is not available: ${HINT}`)
    this.name = 'WebRTCUnavailableError'
    this.code = 'E_WEBRTC_UNAVAILABLE'
  }
}

function unavailable(name) {
  return class {
    constructor() {
      throw new WebRTCUnavailableError(name)
    }
  }
}

export const RTCPeerConnection = unavailable('RTCPeerConnection')
export const RTCSessionDescription = unavailable('RTCSessionDescription')
export const RTCIceCandidate = unavailable('RTCIceCandidate')
export const RTCDataChannel = unavailable('RTCDataChannel')
export const MediaStream = unavailable('MediaStream')

export default {
  RTCPeerConnection,
  RTCSessionDescription,
  RTCIceCandidate,
  RTCDataChannel,
  MediaStream,
}
