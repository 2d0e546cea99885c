import { type Logger, serverUrl, silentLogger, WIRE } from '@imageswarm/core'
import type { ServerRegistry } from './server-registry.js'

/** How often every other server is checked: a dead one is left out within two of these,
 * so the others take over its share of the first copy within seconds. */
export const SERVER_WATCH_INTERVAL_MS = 2_000
const CHECK_TIMEOUT_MS = 1_500

/**
 * Checks every other server this one lists (`/healthz`) every couple of seconds and tells
 * the registry, which leaves a server out after `DOWN_AFTER_MISSES` failed checks in a
 * row and takes it back at its next answer. A mirror's registration says only that it was
 * alive at its last poll (10 s apart); a seeder that keeps offering pieces to a dead
 * server's share would leave them unsent, so it needs to know sooner.
 */
export class ServerWatch {
  readonly #registry: ServerRegistry
  readonly #logger: Logger
  readonly #intervalMs: number
  #timer: NodeJS.Timeout | undefined
  readonly #checking = new Set<string>()
  readonly #stopping = new AbortController()

  constructor(options: { registry: ServerRegistry; logger?: Logger; intervalMs?: number }) {
    this.#registry = options.registry
    this.#logger = options.logger ?? silentLogger()
    this.#intervalMs = options.intervalMs ?? SERVER_WATCH_INTERVAL_MS
  }

  start(): void {
    this.#timer = setInterval(() => this.#checkAll(), this.#intervalMs)
    this.#timer.unref()
  }

  stop(): void {
    clearInterval(this.#timer)
    this.#stopping.abort()
  }

  #checkAll(): void {
    for (const url of this.#registry.others()) {
      if (this.#checking.has(url)) continue
      this.#checking.add(url)
      void this.#check(url).finally(() => this.#checking.delete(url))
    }
  }

  async #check(url: string): Promise<void> {
    const wasDown = this.#registry.isDown(url)
    let answered = false
    try {
      const response = await fetch(serverUrl(url, WIRE.health), {
        signal: AbortSignal.any([AbortSignal.timeout(CHECK_TIMEOUT_MS), this.#stopping.signal]),
      })
      await response.body?.cancel()
      answered = response.ok
    } catch {
      answered = false
    }
    if (this.#stopping.signal.aborted) return
    this.#registry.observe(url, answered)
    const down = this.#registry.isDown(url)
    if (down && !wasDown) {
      this.#logger.warn({ server: url }, 'another server does not answer: taking over its share')
    } else if (wasDown && !down) {
      this.#logger.info({ server: url }, 'another server answers again')
    }
  }
}
