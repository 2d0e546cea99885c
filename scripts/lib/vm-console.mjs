// @ts-check
// Follows a text file another process appends to (a VM's serial console, dnsmasq's log):
// each line is stamped with the time the harness read it, cleaned of terminal control codes,
// and can be waited for with a bound.
import { open } from 'node:fs/promises'

/** How often the file is read: stage timestamps are this precise (stages last seconds). */
const POLL_MS = 100

/**
 * @typedef {object} ConsoleLine
 * @property {number} index its position in the file, from 0
 * @property {number} t when the harness read it (ms since the epoch)
 * @property {string} text the line without terminal control codes or trailing blanks
 */

// biome-ignore lint/suspicious/noControlCharactersInRegex: finding terminal codes is the point
const CONTROL_SEQUENCE = /\x1b\[[0-9;?]*[ -/]*[@-~]/g
// biome-ignore lint/suspicious/noControlCharactersInRegex: as above (ESC c resets the screen)
const ESCAPE_PAIR = /\x1b./g
// biome-ignore lint/suspicious/noControlCharactersInRegex: a character and the backspace after it
const ERASED_CHARACTER = /[^\x08]\x08/g
// biome-ignore lint/suspicious/noControlCharactersInRegex: what is left, tabs and newlines aside
const CONTROL_CHARACTER = /[\x00-\x08\x0b-\x1f\x7f]/g

/**
 * Removes what a terminal would interpret rather than show: escape sequences (SeaBIOS and
 * iPXE clear the screen and colour their banners), backspaces with the character they erase
 * (iPXE's progress counters), carriage returns and other control characters.
 * @param {string} raw
 */
export function stripTerminalControls(raw) {
  let text = raw.replace(CONTROL_SEQUENCE, '').replace(ESCAPE_PAIR, '')
  let previous
  do {
    previous = text
    text = text.replace(ERASED_CHARACTER, '')
  } while (text !== previous)
  return text.replace(CONTROL_CHARACTER, '').trimEnd()
}

/**
 * Follows `path` from its start (it may not exist yet). Call `stop()` when done.
 * @example
 *   const tail = new FileTail('/tmp/x/console.log')
 *   const line = await tail.waitFor(/Run \/init/, { timeoutMs: 60_000, describe: 'node1' })
 */
export class FileTail {
  /** @type {ConsoleLine[]} */
  lines = []
  #path
  #offset = 0
  #partial = ''
  /** @type {NodeJS.Timeout | undefined} */
  #timer
  /** @type {Promise<void> | undefined} */
  #reading
  /** @type {Set<{ pattern: RegExp, from: number, resolve: (line: ConsoleLine) => void }>} */
  #waiters = new Set()

  /** @param {string} path */
  constructor(path) {
    this.#path = path
    this.follow()
  }

  /** (Re)starts reading the file every POLL_MS. */
  follow() {
    if (this.#timer) return
    this.#timer = setInterval(() => {
      this.poll().catch(() => {})
    }, POLL_MS)
    this.#timer.unref()
  }

  get path() {
    return this.#path
  }

  /** Reads what was appended since the last read; concurrent calls share one read. */
  poll() {
    this.#reading ??= this.#read().finally(() => {
      this.#reading = undefined
    })
    return this.#reading
  }

  async #read() {
    let handle
    try {
      handle = await open(this.#path, 'r')
    } catch (error) {
      if (/** @type {NodeJS.ErrnoException} */ (error).code === 'ENOENT') return
      throw error
    }
    try {
      const buffer = Buffer.alloc(256 * 1024)
      for (;;) {
        const { bytesRead } = await handle.read(buffer, 0, buffer.length, this.#offset)
        if (bytesRead === 0) break
        this.#offset += bytesRead
        this.#take(buffer.subarray(0, bytesRead).toString('latin1'))
      }
    } finally {
      await handle.close()
    }
  }

  /** @param {string} chunk */
  #take(chunk) {
    const parts = (this.#partial + chunk).split('\n')
    this.#partial = parts.pop() ?? ''
    const t = Date.now()
    for (const raw of parts) {
      /** @type {ConsoleLine} */
      const line = { index: this.lines.length, t, text: stripTerminalControls(raw) }
      this.lines.push(line)
      for (const waiter of this.#waiters) {
        if (line.index >= waiter.from && waiter.pattern.test(line.text)) {
          this.#waiters.delete(waiter)
          waiter.resolve(line)
        }
      }
    }
  }

  /**
   * The first line from `from` on that matches; rejects after `timeoutMs` (or when
   * `abandon` settles: the writer is gone) with the last lines read.
   * @param {RegExp} pattern
   * @param {{ timeoutMs: number, from?: number, describe?: string, abandon?: Promise<string> }} options
   * @returns {Promise<ConsoleLine>}
   */
  async waitFor(pattern, options) {
    const from = options.from ?? 0
    await this.poll()
    const seen = this.lines.slice(from).find((line) => pattern.test(line.text))
    if (seen) return seen
    /** @type {NodeJS.Timeout | undefined} */
    let timer
    /** @type {{ pattern: RegExp, from: number, resolve: (line: ConsoleLine) => void } | undefined} */
    let waiter
    const found = new Promise((resolve) => {
      waiter = { pattern, from, resolve }
      this.#waiters.add(waiter)
    })
    const timedOut = new Promise((resolve) => {
      timer = setTimeout(
        () => resolve(`no line matched within ${options.timeoutMs} ms`),
        options.timeoutMs,
      )
    })
    try {
      const outcome = await Promise.race([
        found,
        timedOut,
        ...(options.abandon
          ? [options.abandon.then((reason) => this.poll().then(() => reason))]
          : []),
      ])
      if (typeof outcome !== 'string') return /** @type {ConsoleLine} */ (outcome)
      // The writer may have printed it just before going away.
      const late = this.lines.slice(from).find((line) => pattern.test(line.text))
      if (late) return late
      throw new Error(
        `${options.describe ?? this.#path}: waiting for ${pattern}: ${outcome}; last lines of ${this.#path}:\n${this.tail(25)}`,
      )
    } finally {
      clearTimeout(timer)
      if (waiter) this.#waiters.delete(waiter)
    }
  }

  /** The last `count` lines, one per line. */
  tail(count = 25) {
    const partial = stripTerminalControls(this.#partial)
    return [
      ...this.lines.slice(-count).map((line) => `  | ${line.text}`),
      ...(partial ? [`  | ${partial} (no newline yet)`] : []),
    ].join('\n')
  }

  /** Every line read so far. */
  text() {
    return this.lines.map((line) => line.text).join('\n')
  }

  /** Reads the rest of the file, then stops following it. */
  async stop() {
    clearInterval(this.#timer)
    this.#timer = undefined
    await this.poll()
  }
}
