import { readFileSync } from 'node:fs'
import { Transform } from 'node:stream'
import type { ExtractRun } from './extract-run.js'

// `onProgress` counts compressed bytes of the archive file, whichever process reads them:
// Node (a counting stream) or a decompressor reading the file itself (its file offset).

/** Counts the compressed bytes read, for `onProgress`. */
export function progressCounter(run: ExtractRun): Transform {
  let consumed = 0
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      consumed += chunk.length
      run.options.onProgress?.(consumed, run.size)
      callback(null, chunk)
    },
  })
}

/**
 * Progress of a decompressor reading the archive on its stdin, `fd` here: the file offset
 * the two share, from /proc/self/fdinfo. `stop(true)` reports the end.
 */
export function offsetProgress(run: ExtractRun, fd: number): { stop(done: boolean): void } {
  return pollProgress(run, () => fileOffset(fd))
}

/**
 * Progress of a tool reading the archive by path (sqfs2tar reads a SquashFS image with
 * seeks): the bytes it has read, `rchar` in /proc/PID/io, at most the size.
 */
export function readBytesProgress(
  run: ExtractRun,
  pid: number | undefined,
): { stop(done: boolean): void } {
  if (pid === undefined) return { stop: () => undefined }
  return pollProgress(run, () => {
    try {
      const read = /^rchar:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/io`, 'utf8'))
      return read?.[1] === undefined ? undefined : Math.min(Number(read[1]), run.size)
    } catch {
      // The tool has exited, or there is no /proc: the end is reported by stop().
      return undefined
    }
  })
}

/** `position()` every 100 ms to `onProgress`; `stop(true)` reports the end. */
function pollProgress(
  run: ExtractRun,
  position: () => number | undefined,
): { stop(done: boolean): void } {
  const onProgress = run.options.onProgress
  if (onProgress === undefined) return { stop: () => undefined }
  const timer = setInterval(() => {
    const at = position()
    if (at !== undefined) onProgress(at, run.size)
  }, 100)
  timer.unref()
  return {
    stop: (done) => {
      clearInterval(timer)
      if (done) onProgress(run.size, run.size)
    },
  }
}

/** Where the kernel's file offset of `fd` is (Linux's /proc/self/fdinfo); undefined
 * without /proc. The decompressor reads the archive through this fd, so it is how far
 * extraction has got. */
export function fileOffset(fd: number): number | undefined {
  try {
    const pos = /^pos:\s*(\d+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))
    return pos?.[1] === undefined ? undefined : Number(pos[1])
  } catch {
    return undefined
  }
}
