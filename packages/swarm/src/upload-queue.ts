import type { Socket } from 'node:net'
import type { TokenBucket } from './rate.js'
import { LARGE_BLOCK_LENGTH } from './torrent.js'

/**
 * Bytes of answers to one peer that may wait in this process at once: blocks being read
 * and blocks the socket has not handed to the kernel yet. The kernel's socket buffer
 * (megabytes on Linux) keeps a fast link busy beyond that; a peer that asks and never
 * reads stops costing memory here.
 */
export const UPLOAD_QUEUE_BYTES = 256 * 1024

/** Answered requests kept at the front of the queue before it is compacted. */
const COMPACT_AFTER = 1024

export type Respond = (err: Error | null, block?: Uint8Array) => void

interface Upload {
  index: number
  offset: number
  length: number
  respond: Respond
}

/**
 * The requests one peer made of us, answered in order as its socket takes them: a block
 * is read only when what waits for that socket is under `UPLOAD_QUEUE_BYTES`, and sent
 * when the upload limit allows (its tokens are taken then, in order). A peer's own
 * requests are capped by the wire (`MAX_PEER_REQUESTS`); this caps their answers.
 */
export class UploadQueue {
  readonly #socket: Socket
  readonly #read: (index: number, offset: number, length: number) => Promise<Uint8Array>
  readonly #bucket: TokenBucket | undefined
  #pending: Upload[] = []
  #head = 0
  /** Bytes of blocks being read for this peer, not written yet. */
  #reading = 0
  #awaitingDrain = false
  #limitTimer: NodeJS.Timeout | undefined

  constructor(options: {
    socket: Socket
    read: (index: number, offset: number, length: number) => Promise<Uint8Array>
    bucket?: TokenBucket | undefined
  }) {
    this.#socket = options.socket
    this.#read = options.read
    this.#bucket = options.bucket
  }

  /** Requests waiting for their turn. */
  get waiting(): number {
    return this.#pending.length - this.#head
  }

  /** Whether answers wait for the peer to read what was sent. */
  get awaitingDrain(): boolean {
    return this.#awaitingDrain
  }

  add(index: number, offset: number, length: number, respond: Respond): void {
    this.#pending.push({ index, offset, length, respond })
    this.#pump()
  }

  /** The peer cancelled a request: it is not read or sent. */
  cancel(index: number, offset: number, length: number): void {
    for (let at = this.#head; at < this.#pending.length; at++) {
      const upload = this.#pending[at]!
      if (upload.index === index && upload.offset === offset && upload.length === length) {
        this.#pending.splice(at, 1)
        return
      }
    }
  }

  /** Drops every waiting request (we choked the peer, or it left). */
  clear(): void {
    this.#pending = []
    this.#head = 0
    clearTimeout(this.#limitTimer)
    this.#limitTimer = undefined
  }

  #pump(): void {
    const socket = this.#socket
    while (this.#head < this.#pending.length && !this.#limitTimer) {
      if (socket.destroyed) {
        this.clear()
        return
      }
      if (socket.writableLength + this.#reading >= UPLOAD_QUEUE_BYTES) {
        // A read under way pumps again when it is written; a full socket, on 'drain'.
        if (socket.writableNeedDrain && !this.#awaitingDrain) {
          this.#awaitingDrain = true
          socket.once('drain', () => {
            this.#awaitingDrain = false
            this.#pump()
          })
        }
        return
      }
      const upload = this.#pending[this.#head++]!
      const wait = this.#bucket?.take(upload.length) ?? 0
      if (wait > 0) {
        this.#limitTimer = setTimeout(() => {
          this.#limitTimer = undefined
          this.#send(upload)
          this.#pump()
        }, wait)
      } else {
        this.#send(upload)
      }
    }
    // Answered requests leave the array now and then, not one shift at a time.
    if (this.#head === this.#pending.length) {
      this.#pending.length = 0
      this.#head = 0
    } else if (this.#head >= COMPACT_AFTER) {
      this.#pending = this.#pending.slice(this.#head)
      this.#head = 0
    }
  }

  /**
   * A block refers to the whole cached piece it was cut from, and a write the socket
   * cannot pass on at once waits in memory holding it. A small block waiting is copied, so
   * a peer asking 16 KiB from many pieces and never reading holds 256 KiB, not a piece
   * per request. A large one is not: at most three wait (`UPLOAD_QUEUE_BYTES`), and
   * copying every block cost the image server 10–15 % more CPU per GiB on loopback.
   */
  #holdable(block: Uint8Array): Uint8Array {
    return this.#socket.writableLength > 0 && block.length < LARGE_BLOCK_LENGTH
      ? Buffer.from(block)
      : block
  }

  #send(upload: Upload): void {
    this.#reading += upload.length
    this.#read(upload.index, upload.offset, upload.length).then(
      (block) => {
        this.#reading -= upload.length
        upload.respond(null, this.#holdable(block))
        this.#pump()
      },
      (err: Error) => {
        this.#reading -= upload.length
        upload.respond(err)
        this.#pump()
      },
    )
  }
}
