import { createHash } from 'node:crypto'
import { fdatasync, read } from 'node:fs'
import { promisify } from 'node:util'
import { PieceHasher } from '../piece-hashes.js'

const readAt = promisify(read)
const dataSync = promisify(fdatasync)

/** Bytes read (and hashed) at a time; the file is in the page cache, just written. */
const READ_BYTES = 4 << 20
/** How long to wait for the writer when the reader has caught up with it. */
const POLL_MS = 10
/** Written bytes between two pushes to the disk (see `digestAsWritten`). */
const FLUSH_BEHIND_BYTES = 16 << 20

export interface WrittenDigest {
  sha256: string
  size: number
  /** BitTorrent v1 piece hashes (20 bytes a piece), when a piece length was given. */
  pieces: Buffer | undefined
}

/**
 * The SHA-256, size and (given `pieceLength`) torrent piece hashes of a file that another
 * process is appending to through `fd` (open for reading and writing), read behind the
 * writer while it works and finished once `writerDone` settles. The writer's bytes never pass through Node on their way to the
 * file, and the hash costs no pass of its own after the writer exits.
 *
 * Every 16 MiB, one `fdatasync` at a time pushes what is written so far to the disk, so
 * the caller's final `fsync` waits for the tail only, not for the whole file.
 *
 * Reads are positional (`pread`): the writer shares the fd's file offset.
 */
export async function digestAsWritten(
  fd: number,
  writerDone: Promise<unknown>,
  options: { pieceLength?: number | undefined } = {},
): Promise<WrittenDigest> {
  const hash = createHash('sha256')
  const pieces =
    options.pieceLength === undefined ? undefined : new PieceHasher(options.pieceLength)
  const buffer = Buffer.allocUnsafe(READ_BYTES)
  let writerFinished = false
  const markFinished = () => {
    writerFinished = true
  }
  const finished = writerDone.then(markFinished, markFinished)
  let size = 0
  let flushedAt = 0
  let flushing: Promise<void> | undefined
  let flushError: unknown
  try {
    for (;;) {
      // Whatever the writer wrote before it exited is visible to the read that follows.
      const lastRead = writerFinished
      const { bytesRead } = await readAt(fd, buffer, 0, buffer.length, size)
      if (bytesRead > 0) {
        const chunk = buffer.subarray(0, bytesRead)
        hash.update(chunk)
        pieces?.update(chunk)
        size += bytesRead
        if (size - flushedAt >= FLUSH_BEHIND_BYTES && flushing === undefined) {
          flushedAt = size
          // A write error shows once per open file: keep it for the caller, not for the
          // final fsync, which would not see it again.
          flushing = dataSync(fd)
            .catch((err: unknown) => {
              flushError ??= err
            })
            .finally(() => {
              flushing = undefined
            })
        }
      }
      // A full buffer: more is probably waiting. Otherwise the reader has caught up and
      // waits for the writer to get ahead, so that reads stay large (reading right on
      // the writer's heels took 1,700 reads of 48 KiB for an 80 MiB archive).
      if (bytesRead === buffer.length || (lastRead && bytesRead > 0)) continue
      if (lastRead) break
      await Promise.race([finished, new Promise((resolve) => setTimeout(resolve, POLL_MS))])
    }
  } finally {
    // A flush still in flight must not outlive the caller's fd.
    await flushing
  }
  if (flushError !== undefined) throw flushError
  return { sha256: hash.digest('hex'), size, pieces: pieces?.digest() }
}
