import type { ServerResponse } from 'node:http'
import type { SwarmMonitor } from './swarm-monitor.js'

/** A subscriber with more than this much unsent data is cut off; it reconnects. */
const MAX_BUFFERED_BYTES = 4 * 1024 * 1024

interface Subscriber {
  res: ServerResponse
  /** The image whose nodes and history it follows; undefined: only the summaries. */
  image: string | undefined
  /** The swarm state it has seen up to, so each update carries only what changed. */
  infoHash: string | undefined
  version: number
  lastT: number
}

/**
 * The dashboard's live updates as server-sent events (`GET /api/events?image=NAME`).
 * A new subscriber gets a `snapshot` (summaries, and the image's nodes and history);
 * after each sample, an `update` with the summaries, the nodes changed since and the
 * new history points. Updates go out once a sample, however many posts came in, so a
 * swarm of thousands costs each browser one message a second.
 */
export class LiveEvents {
  readonly #monitor: SwarmMonitor
  readonly #subscribers = new Set<Subscriber>()

  constructor(monitor: SwarmMonitor) {
    this.#monitor = monitor
  }

  get size(): number {
    return this.#subscribers.size
  }

  subscribe(res: ServerResponse, image: string | undefined): void {
    res.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-store',
      Connection: 'keep-alive',
      // Proxies such as nginx would otherwise hold the stream back in their buffers.
      'X-Accel-Buffering': 'no',
    })
    const subscriber: Subscriber = { res, image, infoHash: undefined, version: 0, lastT: 0 }
    this.#subscribers.add(subscriber)
    res.on('close', () => this.#subscribers.delete(subscriber))
    // Reconnect after 2 s if the server restarts.
    res.write('retry: 2000\n\n')
    this.#send(subscriber, true)
  }

  /** Sends every subscriber what changed; the tracker calls this after each sample. */
  publish(): void {
    for (const subscriber of this.#subscribers) this.#send(subscriber, false)
  }

  close(): void {
    for (const { res } of this.#subscribers) res.end()
    this.#subscribers.clear()
  }

  #send(subscriber: Subscriber, first: boolean): void {
    const { res } = subscriber
    if (res.writableLength > MAX_BUFFERED_BYTES) {
      res.destroy()
      this.#subscribers.delete(subscriber)
      return
    }
    const now = this.#monitor.now()
    const summaries = this.#monitor.summaries()
    const swarm = subscriber.image === undefined ? undefined : this.#monitor.swarm(subscriber.image)
    if (swarm === undefined) {
      write(res, first ? 'snapshot' : 'update', { now, summaries, image: null })
      return
    }
    // A fresh view, a swarm that was published again, or one that forgot nodes since the
    // last message: send all of it rather than a difference.
    const full =
      first || subscriber.infoHash !== swarm.infoHash || swarm.forgottenAt > subscriber.version
    const nodes = swarm.nodes(now, full ? 0 : subscriber.version)
    const history = swarm.series(full ? undefined : subscriber.lastT)
    subscriber.infoHash = swarm.infoHash
    subscriber.version = swarm.version
    const lastT = history.t.at(-1)
    if (lastT !== undefined) subscriber.lastT = lastT
    write(res, full ? 'snapshot' : 'update', {
      now,
      summaries,
      image: swarm.image,
      nodes,
      history,
    })
  }
}

function write(res: ServerResponse, event: string, data: unknown): void {
  res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`)
}
