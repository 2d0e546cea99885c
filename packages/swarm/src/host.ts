import { once } from 'node:events'
import { createServer, type Server, type Socket } from 'node:net'
import { ReceiveBudget } from './receive-budget.js'
import { SocketWire } from './socket-wire.js'

/** How long an incoming connection may take to say which swarm it wants. */
const HANDSHAKE_TIMEOUT_MS = 10_000

/**
 * Bytes of unfinished messages all of a process's connections may hold together. A
 * connection holds at most one message, a block of 128 KiB at most: 80 connections (the
 * default) mid-block hold 10 MiB, so honest peers never reach this; a peer announcing a
 * 4 GiB message once took a client from 115 to 710 MB.
 */
export const RECEIVE_BUDGET_BYTES = 32 * 1024 * 1024

/** What the host hands an accepted connection to: the swarm of one infohash. */
export interface HostedSwarm {
  readonly infoHash: string
  acceptIncoming(wire: SocketWire, peerId: string): void
}

/**
 * One TCP port for all of a process's swarms (the image server seeds every image on
 * one port): accepts connections, reads the BitTorrent handshake and hands the
 * connection to the swarm of that infohash, or closes it.
 */
export class SwarmHost {
  readonly #server: Server
  readonly #swarms = new Map<string, HostedSwarm>()
  readonly #sockets = new Set<Socket>()
  /** What every connection of this process holds of messages still arriving. */
  readonly receiveBudget: ReceiveBudget

  private constructor(server: Server, receiveBudgetBytes: number) {
    this.#server = server
    this.receiveBudget = new ReceiveBudget(receiveBudgetBytes)
  }

  /** Listens on `port` (0: any free port) on every address, or on `host`. */
  static async listen(
    port = 0,
    host?: string,
    options: { receiveBudgetBytes?: number } = {},
  ): Promise<SwarmHost> {
    const server = createServer()
    const swarmHost = new SwarmHost(server, options.receiveBudgetBytes ?? RECEIVE_BUDGET_BYTES)
    server.on('connection', (socket) => swarmHost.#accept(socket))
    server.listen(port, host)
    await Promise.race([
      once(server, 'listening'),
      once(server, 'error').then(([err]) => {
        throw err
      }),
    ])
    return swarmHost
  }

  get port(): number {
    return (this.#server.address() as { port: number }).port
  }

  register(swarm: HostedSwarm): void {
    this.#swarms.set(swarm.infoHash, swarm)
  }

  unregister(swarm: HostedSwarm): void {
    if (this.#swarms.get(swarm.infoHash) === swarm) this.#swarms.delete(swarm.infoHash)
  }

  /** Tracks a connection until it closes, so `close` can end every one. */
  track(socket: Socket): void {
    this.#sockets.add(socket)
    socket.once('close', () => this.#sockets.delete(socket))
  }

  #accept(socket: Socket): void {
    this.track(socket)
    socket.setNoDelay(true)
    socket.on('error', () => socket.destroy())
    const wire = new SocketWire('tcpIncoming', socket, this.receiveBudget)
    wire.on('error', () => socket.destroy())
    const timer = setTimeout(() => socket.destroy(), HANDSHAKE_TIMEOUT_MS)
    socket.once('close', () => clearTimeout(timer))
    wire.once('handshake', (infoHash: string, peerId: string) => {
      clearTimeout(timer)
      const swarm = this.#swarms.get(infoHash)
      if (swarm) swarm.acceptIncoming(wire, peerId)
      else socket.destroy()
    })
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy()
    await new Promise<void>((resolve) => this.#server.close(() => resolve()))
  }
}
