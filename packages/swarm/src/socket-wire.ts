import type { Socket } from 'node:net'
import Protocol from 'bittorrent-protocol'

const ignore = () => {}

/**
 * A BitTorrent wire fed straight from its TCP socket and writing straight to it.
 *
 * `socket.pipe(wire).pipe(socket)` takes every socket read through Node's Readable,
 * streamx's write queue and a queued microtask before the parser sees it, and every
 * outgoing message through streamx's read queue. On a paced link each read is one
 * packet, so those hops cost more than the parsing (see the swarm benchmark notes).
 * `_write` (the parser) and `_push` (every outgoing message) are the hooks streamx
 * itself calls; here the socket calls them. End and teardown follow the pipe's rules:
 * the socket's end ends the wire, the wire's end ends the socket.
 */
export class SocketWire extends Protocol {
  readonly socket: Socket

  constructor(type: 'tcpIncoming' | 'tcpOutgoing', socket: Socket) {
    super(type)
    this.socket = socket
    socket.on('data', (chunk: Buffer) => {
      if (!this._finished) this._write(chunk, ignore)
    })
    socket.once('end', () => this.end())
    this.once('finish', () => socket.end())
  }

  protected override _push(data: Uint8Array): boolean {
    if (this._finished || this.socket.destroyed) return false
    return this.socket.write(data)
  }
}
