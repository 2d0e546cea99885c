/** What the budget can drop: a connection holding part of a message. */
export interface BufferingWire {
  /** Bytes of a message received and not complete yet. */
  readonly bufferedBytes: number
  /** Closes the connection, saying why. */
  dropConnection(reason: string): void
}

/**
 * The bytes all of a process's connections hold of messages still arriving, kept under a
 * fixed budget. Each message is capped already (see `SocketWire`), but a cap per message
 * is a cap per connection, and connections are many: beyond the budget, the connection
 * holding the most is dropped.
 */
export class ReceiveBudget {
  readonly limit: number
  readonly #held = new Map<BufferingWire, number>()
  #total = 0
  #peak = 0

  constructor(limit: number) {
    this.limit = limit
  }

  /** Bytes held now, by every connection together. */
  get total(): number {
    return this.#total
  }

  /** The most ever held at once. */
  get peak(): number {
    return this.#peak
  }

  /** Records what `wire` holds now; drops the largest holders while over the limit. */
  update(wire: BufferingWire): void {
    this.#set(wire, wire.bufferedBytes)
    while (this.#total > this.limit) {
      const worst = this.#largest()
      if (!worst) break
      const total = this.#total
      const held = worst.bufferedBytes
      this.#set(worst, 0)
      worst.dropConnection(
        `it held ${held} of the ${total} bytes of unfinished messages all connections held, over the budget of ${this.limit}`,
      )
    }
  }

  /** The connection closed: what it held is free. */
  release(wire: BufferingWire): void {
    this.#set(wire, 0)
  }

  #set(wire: BufferingWire, bytes: number): void {
    const before = this.#held.get(wire) ?? 0
    if (bytes > 0) this.#held.set(wire, bytes)
    else this.#held.delete(wire)
    this.#total += bytes - before
    if (this.#total > this.#peak) this.#peak = this.#total
  }

  #largest(): BufferingWire | undefined {
    let worst: BufferingWire | undefined
    let most = 0
    for (const [wire, bytes] of this.#held) {
      if (bytes > most) {
        worst = wire
        most = bytes
      }
    }
    return worst
  }
}
