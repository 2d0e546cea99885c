import { ImageSwarmError } from '../errors.js'
import { describeExit, reportsNoSpace, startTool } from './spawn-tool.js'
import { resolveArchiveTools } from './tools.js'

/**
 * zstd with `--patch-from`: a delta's tar compressed against a reference of the old
 * version's bytes (docs/updates.md, "patch-own"). `windowLog` (`--long=N`) must cover the
 * reference and the tar, and must be the same on both sides.
 */
export interface ZstdPatchOptions {
  input: string
  output: string
  /** Undefined: plain long-window zstd (nothing of the old version to match). */
  reference?: string | undefined
  windowLog: number
  signal?: AbortSignal
}

/** Compresses `input` into `output` at `level`, against `reference`. */
export async function compressWithReference(
  options: ZstdPatchOptions & { level: number },
): Promise<void> {
  await runZstd(
    [
      '-T0',
      ...(options.level > 19 ? ['--ultra'] : []),
      `-${options.level}`,
      `--long=${options.windowLog}`,
      ...(options.reference === undefined ? [] : [`--patch-from=${options.reference}`]),
    ],
    options,
    'make delta',
  )
}

/** Decompresses what `compressWithReference` made, given the same reference bytes. */
export async function decompressWithReference(options: ZstdPatchOptions): Promise<void> {
  await runZstd(
    [
      '-d',
      `--long=${options.windowLog}`,
      `--memory=${2 ** options.windowLog}`,
      ...(options.reference === undefined ? [] : [`--patch-from=${options.reference}`]),
    ],
    options,
    'open delta',
  )
}

async function runZstd(
  args: string[],
  options: ZstdPatchOptions,
  operation: string,
): Promise<void> {
  const { compressor } = await resolveArchiveTools('zstd')
  const tool = startTool(
    compressor!,
    ['-q', '-f', ...args, options.input, '-o', options.output],
    ['ignore', 'ignore', 'pipe'],
  )
  const abort = () => tool.child.kill('SIGKILL')
  options.signal?.addEventListener('abort', abort, { once: true })
  const exit = await tool.exited
  options.signal?.removeEventListener('abort', abort)
  if (exit.code === 0 && exit.error === undefined) return
  options.signal?.throwIfAborted()
  const stderr = tool.stderr().trim()
  throw new ImageSwarmError(
    reportsNoSpace(stderr)
      ? 'E_NO_SPACE'
      : operation === 'make delta'
        ? 'E_PACK_FAILED'
        : 'E_ARCHIVE_DIGEST_MISMATCH',
    `zstd could not ${operation === 'make delta' ? 'make' : 'open'} ${options.output}: ${stderr || describeExit(exit)}`,
    {
      operation,
      path: options.input,
      hint:
        operation === 'make delta'
          ? 'check the disk holding the archives, and that zstd ≥ 1.4.5 (--patch-from) is installed'
          : 'the reference built from this root is not the one the delta was made against: the update fetches those files by file instead',
    },
  )
}
