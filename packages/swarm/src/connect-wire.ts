import type { Socket } from 'node:net'
import type Protocol from 'bittorrent-protocol'

/** Connects a socket to its wire in both directions. */
export function connectWire(socket: Socket, wire: Protocol): void {
  socket.pipe(wire).pipe(socket)
}
