// @ts-check
// A QEMU Machine Protocol client: one JSON object per line over a unix socket, commands
// answered in order, events (SHUTDOWN, RESET, ...) in between.
import { once } from 'node:events'
import { createConnection } from 'node:net'
import { createInterface } from 'node:readline'

/**
 * @typedef {{ event: string, data?: Record<string, unknown>, timestamp?: { seconds: number, microseconds: number } }} QmpEvent
 */

/**
 * @typedef {object} QmpClient
 * @property {(command: string, args?: Record<string, unknown>, timeoutMs?: number) => Promise<any>} execute
 *   the command's `return` value; rejects with QEMU's error description
 * @property {QmpEvent[]} events every event received, in order
 * @property {(listener: (event: QmpEvent) => void) => void} onEvent
 * @property {Promise<void>} closed settles when QEMU closes the socket (it exits)
 * @property {() => void} close
 */

/**
 * Connects to QEMU's `-qmp unix:PATH,server=on` socket and leaves capabilities negotiation
 * done. With `wait=on`, QEMU starts the guest only once this has connected, so no event is
 * missed.
 * @param {string} path
 * @param {{ timeoutMs?: number, exited?: Promise<unknown> }} [options]
 *   exited: QEMU's exit, to stop retrying the connection
 * @returns {Promise<QmpClient>}
 */
export async function connectQmp(path, options = {}) {
  const deadline = Date.now() + (options.timeoutMs ?? 30_000)
  let gone = false
  options.exited?.then(() => {
    gone = true
  })
  for (;;) {
    try {
      return await attempt(path)
    } catch (error) {
      if (gone) throw new Error(`QEMU exited before its QMP socket ${path} answered`)
      if (Date.now() > deadline) {
        throw new Error(
          `QMP socket ${path} did not answer within ${options.timeoutMs ?? 30_000} ms: ${/** @type {Error} */ (error).message}`,
        )
      }
      // QEMU creates the socket early in its start; this only waits for that.
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }
}

/** @param {string} path */
async function attempt(path) {
  const socket = createConnection(path)
  await Promise.race([
    once(socket, 'connect'),
    once(socket, 'error').then(([error]) => {
      throw error
    }),
  ])
  /** @type {QmpEvent[]} */
  const events = []
  /** @type {((event: QmpEvent) => void)[]} */
  const listeners = []
  /** @type {Map<number, { resolve: (value: any) => void, reject: (error: Error) => void, command: string }>} */
  const pending = new Map()
  let nextId = 0
  /** @type {(value: unknown) => void} */
  let greeted = () => {}
  const greeting = new Promise((resolve) => {
    greeted = resolve
  })
  const closed = new Promise((resolve) => {
    socket.once('close', () => {
      for (const request of pending.values()) {
        request.reject(new Error(`QEMU closed QMP before answering ${request.command}`))
      }
      pending.clear()
      resolve(undefined)
    })
  })
  socket.on('error', () => {})
  // readline passes the socket's errors on (ECONNRESET when QEMU exits): 'close' says enough.
  const reader = createInterface({ input: socket, crlfDelay: Number.POSITIVE_INFINITY })
  reader.on('error', () => {})
  reader.on('line', (line) => {
    /** @type {any} */
    let message
    try {
      message = JSON.parse(line)
    } catch {
      return
    }
    if (message.QMP) greeted(message)
    else if (message.event) {
      events.push(message)
      for (const listener of listeners) listener(message)
    } else if ('return' in message || 'error' in message) {
      const request = pending.get(message.id)
      if (!request) return
      pending.delete(message.id)
      if (message.error) {
        request.reject(new Error(`QMP ${request.command}: ${message.error.desc}`))
      } else request.resolve(message.return)
    }
  })
  /** @type {QmpClient} */
  const client = {
    events,
    onEvent: (listener) => {
      listeners.push(listener)
    },
    closed: /** @type {Promise<void>} */ (closed),
    close: () => socket.destroy(),
    async execute(command, args, timeoutMs = 30_000) {
      nextId += 1
      const id = nextId
      const answer = new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject, command })
      })
      socket.write(
        `${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id })}\n`,
      )
      /** @type {NodeJS.Timeout | undefined} */
      let timer
      const late = new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`QMP ${command}: no answer within ${timeoutMs} ms`)),
          timeoutMs,
        )
      })
      try {
        return await Promise.race([answer, late])
      } finally {
        clearTimeout(timer)
        pending.delete(id)
      }
    },
  }
  /** @type {NodeJS.Timeout | undefined} */
  let timer
  const slow = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error('no QMP greeting within 10 s')), 10_000)
  })
  try {
    await Promise.race([greeting, slow, closed.then(() => Promise.reject(new Error('closed')))])
  } catch (error) {
    socket.destroy()
    throw error
  } finally {
    clearTimeout(timer)
  }
  await client.execute('qmp_capabilities')
  return client
}
