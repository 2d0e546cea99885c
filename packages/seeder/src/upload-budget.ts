import { TokenBucket } from '@imageswarm/swarm'

/** Archive bytes handed to an HTTP response at a time when nothing limits them. */
const CHUNK_BYTES = 64 * 1024

/**
 * The server's upload limit (`--upload-limit`, bytes a second) as it applies to archive
 * bytes served over HTTP: one token bucket (up to a second of burst) for every web seed
 * request of every image together.
 */
export class UploadBudget {
  readonly bytesPerSecond: number
  readonly bucket: TokenBucket

  constructor(bytesPerSecond: number) {
    this.bytesPerSecond = bytesPerSecond
    this.bucket = new TokenBucket(bytesPerSecond)
  }

  /**
   * Bytes sent at a time: at most a tenth of a second's worth, so that a slow limit
   * (1K) sends evenly rather than one 64 KiB burst a minute.
   */
  get chunkBytes(): number {
    return Math.max(1, Math.min(CHUNK_BYTES, Math.floor(this.bytesPerSecond / 10)))
  }
}

/** A budget for a limit from the settings, where -1 (or 0) means unlimited. */
export function uploadBudgetFor(limit: number): UploadBudget | undefined {
  return limit > 0 ? new UploadBudget(limit) : undefined
}

/** One stretch of a byte range, released for sending. */
export interface PacedChunk {
  position: number
  length: number
}

/**
 * Splits the bytes from `start` to `end` (exclusive) into chunks and yields each once
 * the budget allows it to be sent; the bytes are taken from the budget when the chunk is
 * asked for, so concurrent responses share the budget in the order they asked. Stops,
 * without yielding more, when `signal` aborts (the client went away).
 */
export async function* paceBytes(
  start: number,
  end: number,
  budget: UploadBudget | undefined,
  signal?: AbortSignal,
): AsyncGenerator<PacedChunk> {
  const chunkBytes = budget?.chunkBytes ?? CHUNK_BYTES
  for (let position = start; position < end; ) {
    if (signal?.aborted) return
    const length = Math.min(chunkBytes, end - position)
    const wait = budget?.bucket.take(length) ?? 0
    if (wait > 0 && !(await delay(wait, signal))) return
    yield { position, length }
    position += length
  }
}

/** Resolves true after `ms`, or false as soon as `signal` aborts. The global timer, so a
 * test's fake clock drives it. */
function delay(ms: number, signal: AbortSignal | undefined): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve(false)
    const onAbort = () => {
      clearTimeout(timer)
      resolve(false)
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve(true)
    }, ms)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}
