// The page's copy of the server's state, kept current by server-sent events from
// /api/events. The server sends a snapshot first and then, once a sample, only the
// nodes that changed and the new history points; this merges them.

const MAX_POINTS = 7200

export class LiveStore {
  constructor({ onData, onStatus }) {
    this.onData = onData
    this.onStatus = onStatus
    this.source = null
    this.reset(null)
  }

  reset(image) {
    this.image = image
    this.summaries = []
    this.nodes = new Map()
    this.history = null
    /** Peer ids changed since the last render; null means "everything". */
    this.changed = null
    this.receivedAt = 0
  }

  /** Follows the summaries, and when `image` is set, that image's nodes and history. */
  follow(image) {
    this.source?.close()
    this.reset(image)
    const url = image ? `/api/events?image=${encodeURIComponent(image)}` : '/api/events'
    this.source = new EventSource(url)
    this.onStatus('connecting')
    this.source.addEventListener('open', () => this.onStatus('live'))
    // EventSource reconnects by itself; the server then starts with a snapshot again.
    this.source.addEventListener('error', () => this.onStatus('reconnecting'))
    this.source.addEventListener('snapshot', (event) => this.#apply(JSON.parse(event.data), true))
    this.source.addEventListener('update', (event) => this.#apply(JSON.parse(event.data), false))
  }

  #apply(message, full) {
    this.summaries = message.summaries
    this.receivedAt = Date.now()
    this.skew = message.now - this.receivedAt
    if (full) {
      this.nodes = new Map()
      this.history = message.history ?? null
      this.changed = null
    } else if (message.history && this.history) {
      for (const [column, values] of Object.entries(message.history)) {
        const series = this.history[column]
        series.push(...values)
        if (series.length > MAX_POINTS) series.splice(0, series.length - MAX_POINTS)
      }
    }
    for (const node of message.nodes ?? []) {
      this.nodes.set(node.peerId, node)
      this.changed?.add(node.peerId)
    }
    this.onStatus('live')
    this.onData(message.image, full)
  }

  /** The server's time now, in epoch milliseconds. */
  serverNow() {
    return Date.now() + (this.skew ?? 0)
  }

  /** Takes the set of changed peer ids (null: all) and starts a new one. */
  takeChanged() {
    const changed = this.changed
    this.changed = new Set()
    return changed
  }
}
