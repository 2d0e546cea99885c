import { createHash } from 'node:crypto'
import { type FileHandle, open, stat } from 'node:fs/promises'
import { PieceSet } from './piece-set.js'
import { pieceLengthOf, type SwarmTorrent } from './torrent.js'

/** Whole pieces kept in memory for uploads: the newest pieces are the ones peers ask for. */
const CACHE_BYTES = 32 * 1024 * 1024

/**
 * The archive file of one swarm, piece by piece: checks pieces against the torrent's
 * hashes, writes them in place, reads them back for uploads through a small cache of
 * whole pieces (a 16 KiB read per block would cost a system call per request).
 * Memory stays bounded by the cache, whatever the archive's size.
 */
export class PieceStore {
  readonly have: PieceSet
  readonly #torrent: SwarmTorrent
  readonly #file: FileHandle
  readonly #cache = new Map<number, Promise<Buffer>>()
  readonly #cacheCapacity: number

  private constructor(torrent: SwarmTorrent, file: FileHandle) {
    this.#torrent = torrent
    this.#file = file
    this.have = new PieceSet(torrent.pieces.length)
    this.#cacheCapacity = Math.max(4, Math.floor(CACHE_BYTES / torrent.pieceLength))
  }

  /**
   * Opens (or creates, sparse) the archive at `path`. `held`: every piece is known good
   * (a seeder's published archive, a verified cached copy); `scan`: an existing file is
   * checked piece by piece so an interrupted download resumes; otherwise it starts empty.
   */
  static async open(
    path: string,
    torrent: SwarmTorrent,
    existing: 'held' | 'scan',
  ): Promise<PieceStore> {
    const size = await stat(path).then(
      (info) => info.size,
      () => undefined,
    )
    const file = await open(path, size === undefined ? 'w+' : existing === 'held' ? 'r' : 'r+')
    const store = new PieceStore(torrent, file)
    try {
      if (existing === 'held') {
        if (size !== torrent.length) {
          throw new Error(`${path} holds ${size ?? 0} bytes, the torrent ${torrent.length}`)
        }
        store.have.fill()
      } else {
        if (size !== torrent.length) await file.truncate(torrent.length)
        if (size) await store.#scan()
      }
    } catch (err) {
      await file.close()
      throw err
    }
    return store
  }

  async #scan(): Promise<void> {
    const buffer = Buffer.allocUnsafe(this.#torrent.pieceLength)
    for (let index = 0; index < this.#torrent.pieces.length; index++) {
      const length = pieceLengthOf(this.#torrent, index)
      const { bytesRead } = await this.#file.read(
        buffer,
        0,
        length,
        index * this.#torrent.pieceLength,
      )
      if (this.verify(index, buffer.subarray(0, bytesRead))) this.have.add(index)
    }
  }

  /** True when `data` is piece `index` as the torrent describes it. Hashed on the main
   * thread: about 0.6 ms per MiB here, where Node 20's WebCrypto digest, meant to run on
   * the thread pool, spent 1.75 ms of main-thread time per MiB before handing it off. */
  verify(index: number, data: Uint8Array): boolean {
    if (data.length !== pieceLengthOf(this.#torrent, index)) return false
    return createHash('sha1').update(data).digest('hex') === this.#torrent.pieces[index]
  }

  /** Writes a verified piece and marks it held. The caller may reuse `data` afterwards:
   * uploads read the piece back (from the page cache, or tmpfs). */
  async write(index: number, data: Buffer): Promise<void> {
    await this.#file.write(data, 0, data.length, index * this.#torrent.pieceLength)
    this.have.add(index)
  }

  /** A block of a held piece. */
  async read(index: number, offset: number, length: number): Promise<Buffer> {
    let piece = this.#cache.get(index)
    if (piece) {
      // Map order is insertion order: re-inserting makes it the most recently used.
      this.#cache.delete(index)
      this.#cache.set(index, piece)
    } else {
      piece = this.#readPiece(index)
      this.#remember(index, piece)
      piece.catch(() => this.#cache.delete(index))
    }
    return (await piece).subarray(offset, offset + length)
  }

  async #readPiece(index: number): Promise<Buffer> {
    const length = pieceLengthOf(this.#torrent, index)
    const buffer = Buffer.allocUnsafe(length)
    const { bytesRead } = await this.#file.read(
      buffer,
      0,
      length,
      index * this.#torrent.pieceLength,
    )
    if (bytesRead !== length) throw new Error(`piece ${index} is short on disk`)
    return buffer
  }

  #remember(index: number, piece: Promise<Buffer>): void {
    this.#cache.delete(index)
    this.#cache.set(index, piece)
    while (this.#cache.size > this.#cacheCapacity) {
      const oldest = this.#cache.keys().next().value as number
      this.#cache.delete(oldest)
    }
  }

  async close(): Promise<void> {
    this.#cache.clear()
    await this.#file.close()
  }
}
