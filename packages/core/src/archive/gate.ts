import { mkdtemp, rm } from 'node:fs/promises'
import { connect, createServer, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import type { TarScanner } from './scan.js'

/**
 * Hands a tar stream on to tar (`sink`, its stdin) only as far as a `TarScanner` has
 * validated it: every chunk goes through the scanner first, and only the bytes below
 * `validatedBytes` are written; the rest (a header split across chunks, a pax header whose
 * member has not arrived) is held until a later chunk lets the scanner pass it. Nothing is
 * copied except what is held from a reused read buffer. Once tar has closed its stdin (it
 * stops reading at the end-of-archive blocks), the rest is still scanned, then dropped.
 */
export class TarGate {
  private readonly held: Buffer[] = []
  private released = 0
  private received = 0
  private sinkOpen = true
  /** Called when the sink closes: nothing written will be needed any more. */
  private readonly waiters = new Set<() => void>()

  constructor(
    readonly scanner: TarScanner,
    private readonly sink: Writable,
  ) {
    const closed = () => {
      this.sinkOpen = false
      const waiters = [...this.waiters]
      this.waiters.clear()
      for (const waiter of waiters) waiter()
    }
    sink.on('error', closed)
    sink.on('close', closed)
  }

  /**
   * Scans `chunk` and writes what is now validated; throws the scanner's refusal, and then
   * writes nothing of `chunk`. `done` is called once the sink no longer needs `chunk`'s
   * memory: before `write` returns when the sink took the bytes at once (or none were
   * written), else when the last write completes. A `reused` chunk (a view of a read
   * buffer that will be filled again) has the part the gate holds back copied.
   */
  write(chunk: Buffer, reused: boolean, done: () => void): void {
    this.scanner.write(chunk)
    this.received += chunk.length
    this.held.push(chunk)
    let pending = false
    let once = () => {
      once = () => undefined
      this.waiters.delete(settle)
      done()
    }
    const settle = () => once()
    const written = this.release(this.scanner.validatedBytes, () => {
      if (pending) settle()
    })
    const last = this.held.length - 1
    if (reused && last >= 0 && this.held[last]!.buffer === chunk.buffer) {
      this.held[last] = Buffer.from(this.held[last]!)
    }
    if (!written || !this.sinkOpen || this.sink.writableLength === 0) {
      settle()
    } else {
      pending = true
      this.waiters.add(settle)
    }
  }

  /** The stream has ended: the scanner's last check, then the rest to the sink. */
  finish(): void {
    this.scanner.end()
    this.release(this.received, () => undefined)
  }

  /** Writes the held bytes up to stream offset `upTo`; `written` follows the last write. */
  private release(upTo: number, written: () => void): boolean {
    let wrote = false
    while (this.released < upTo) {
      const head = this.held[0]!
      const take = Math.min(head.length, upTo - this.released)
      let out = head
      if (take === head.length) {
        this.held.shift()
      } else {
        out = head.subarray(0, take)
        this.held[0] = head.subarray(take)
      }
      this.released += take
      if (this.sinkOpen && !this.sink.destroyed) {
        this.sink.write(out, this.released === upTo ? written : undefined)
        wrote = true
      }
    }
    return wrote
  }
}

/**
 * A Writable feeding a `TarGate`, for sources that allocate their chunks (a file read
 * stream). `beforeEnd` runs when the input has ended, before the gate's last check.
 */
export function gateWritable(gate: TarGate, beforeEnd: () => Promise<void>): Writable {
  return new Writable({
    highWaterMark: 1 << 20,
    write(chunk: Buffer, _encoding, callback) {
      try {
        gate.write(chunk, false, () => callback())
      } catch (err) {
        callback(err as Error)
      }
    },
    final(callback) {
      beforeEnd().then(
        () => {
          try {
            gate.finish()
          } catch (err) {
            callback(err as Error)
            return
          }
          callback()
        },
        (err: Error) => callback(err),
      )
    },
  })
}

/**
 * A connected pair of Unix sockets: `theirs` to give a child process as its stdout,
 * `ours` reading what the child writes into a pool of `count` reused buffers of `size`
 * bytes (no allocation, no garbage; reads as large as the socket holds) and handing each
 * read to `onData`, which calls `release` once the buffer may be filled again. Reading
 * pauses while all but one buffer are in use, so up to `count - 1` reads can be on their
 * way to tar. The socket lives in a fresh private directory, removed once connected.
 */
export async function readingSocketPair(
  count: number,
  size: number,
  onData: (chunk: Buffer, release: () => void) => void,
): Promise<{ ours: Socket; theirs: Socket }> {
  const dir = await mkdtemp(join(tmpdir(), 'imageswarm-gate-'))
  const server = createServer({ pauseOnConnect: true })
  try {
    const path = join(dir, 'tar.sock')
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(path, resolve)
    })
    const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve))
    const free: Buffer[] = Array.from({ length: count }, () => Buffer.allocUnsafe(size))
    let busy = 0
    let paused = false
    const ours: Socket = connect({
      path,
      onread: {
        // There is always one free: reading pauses while only one is left.
        buffer: () => free.pop() as Buffer,
        callback: (bytes, buffer) => {
          busy++
          onData((buffer as Buffer).subarray(0, bytes), () => {
            busy--
            free.push(buffer as Buffer)
            if (paused && busy < count - 1) {
              paused = false
              ours.resume()
            }
          })
          paused = busy >= count - 1
          return !paused
        },
      },
    })
    const theirs = await new Promise<Socket>((resolve, reject) => {
      ours.once('error', reject)
      accepted.then((socket) => {
        ours.off('error', reject)
        resolve(socket)
      }, reject)
    })
    return { ours, theirs }
  } finally {
    server.close()
    await rm(dir, { recursive: true, force: true })
  }
}
