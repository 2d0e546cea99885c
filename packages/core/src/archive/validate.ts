import { type FileHandle, open } from 'node:fs/promises'
import { resolve } from 'node:path'
import { errnoOf, ImageSwarmError } from '../errors.js'
import type { Compression } from '../manifest.js'
import { decompressArgs, detectCompression } from './compression.js'
import { readingSocketPair } from './gate.js'
import { UnsafeEntry } from './policy.js'
import { TarScanner } from './scan.js'
import { startTool } from './spawn-tool.js'
import { decompressFailure, openTarSource } from './tar-source.js'
import { resolveTool } from './tools.js'
import type { ValidateOptions, ValidateResult } from './types.js'

/**
 * Reads every header of an archive, without extracting anything, and refuses it with
 * E_ARCHIVE_UNSAFE naming the first member that could write outside the target: an
 * absolute or `..` path, a path through a symlink, a hardlink to outside or to nothing
 * earlier (the rules of `EntryGuard`, applied by the same `TarScanner` that gates
 * `extractArchive`). A corrupt or truncated archive is E_ARCHIVE_UNSAFE too. Reads the
 * decompressed stream once, skipping member data by counting it; a clean result says
 * nothing about file contents.
 *
 * @example const { entries } = await validateArchive('/tmp/image-demo.tar.zst')
 */
export async function validateArchive(
  archivePath: string,
  compression?: Compression,
  options: ValidateOptions = {},
): Promise<ValidateResult> {
  const archive = resolve(archivePath)
  // A SquashFS image's blocks are zstd, but its tar stream comes from sqfs2tar.
  const kind = options.squashfs ? 'none' : (compression ?? (await detectCompression(archive)))
  options.signal?.throwIfAborted()
  const scanner = new TarScanner(options.observer)
  try {
    // The socket path hands the decompressor the file itself: not for an encrypted one.
    const scanned =
      kind !== 'none' &&
      options.decrypt === undefined &&
      (await scanThroughSocket(archive, kind, scanner, options))
    if (!scanned) await scanSource(archive, kind, scanner, options)
  } catch (err) {
    if (options.signal?.aborted) {
      throw new ImageSwarmError('E_INTERRUPTED', `validating ${archive} was interrupted`, {
        operation: 'validate archive',
        path: archive,
        cause: err,
      })
    }
    throw unsafe(archive, err)
  }
  options.logger?.debug({ archive, entries: scanner.entries }, 'archive validated')
  return { entries: scanner.entries }
}

/**
 * The decompressor reads the archive on its stdin and writes into a socket read into
 * reused buffers (see `readingSocketPair`): no allocation per read. False when no socket
 * could be made (no writable temp dir); the caller falls back to `scanSource`.
 */
async function scanThroughSocket(
  archive: string,
  compression: Exclude<Compression, 'none'>,
  scanner: TarScanner,
  options: ValidateOptions,
): Promise<boolean> {
  const tool = await resolveTool(compression, options)
  let failScan: (err: unknown) => void = () => undefined
  const pair = await readingSocketPair(2, 1 << 20, (chunk, release) => {
    try {
      scanner.write(chunk)
    } catch (err) {
      failScan(err)
    }
    release()
  }).catch(() => undefined)
  if (pair === undefined) return false
  let input: FileHandle
  try {
    input = await open(archive, 'r')
  } catch (err) {
    pair.ours.destroy()
    pair.theirs.destroy()
    throw err
  }
  // Headers alone: zstd's checksum of the contents would change nothing here; an observer
  // reads the contents too, and then they are checked.
  const verify = options.observer !== undefined
  const decompressor = startTool(tool, decompressArgs(compression, undefined, { verify }), [
    input.fd,
    pair.theirs,
    'pipe',
  ])
  pair.theirs.destroy()
  const onAbort = () => failScan(options.signal?.reason)
  options.signal?.addEventListener('abort', onAbort, { once: true })
  try {
    await new Promise<void>((resolveScan, rejectScan) => {
      failScan = rejectScan
      pair.ours.once('end', resolveScan)
      pair.ours.once('error', rejectScan)
      pair.ours.resume()
    })
  } catch (err) {
    pair.ours.destroy()
    decompressor.child.kill('SIGKILL')
    throw err
  } finally {
    options.signal?.removeEventListener('abort', onAbort)
    await decompressor.exited
    await input.close()
  }
  const failure = decompressFailure(compression, await decompressor.exited, decompressor.stderr())
  if (failure !== undefined) throw new Error(failure)
  scanner.end()
  return true
}

/** Scans the stream of `openTarSource`: the file itself, or a decompressor's stdout. */
async function scanSource(
  archive: string,
  compression: Compression,
  scanner: TarScanner,
  options: ValidateOptions,
): Promise<void> {
  const source = await openTarSource(archive, compression, options)
  let onAbort: () => void = () => undefined
  const scanned = new Promise<void>((resolveScan, rejectScan) => {
    source.stream.on('data', (chunk: Buffer) => {
      try {
        scanner.write(chunk)
      } catch (err) {
        rejectScan(err)
      }
    })
    source.stream.once('end', () => {
      try {
        scanner.end()
        resolveScan()
      } catch (err) {
        rejectScan(err)
      }
    })
    source.stream.once('error', rejectScan)
    onAbort = () => rejectScan(options.signal?.reason)
    options.signal?.addEventListener('abort', onAbort, { once: true })
  })
  try {
    await scanned
  } catch (err) {
    source.stop()
    await source.finished()
    throw source.decryptError() ?? err
  } finally {
    options.signal?.removeEventListener('abort', onAbort)
  }
  const failure = await source.finished()
  const decryptError = source.decryptError()
  if (decryptError !== undefined) throw decryptError
  if (failure !== undefined) throw new Error(failure)
}

/** A refusal (`UnsafeEntry`) or a read failure as E_ARCHIVE_UNSAFE naming the archive. */
export function unsafe(archive: string, err: unknown): ImageSwarmError {
  if (err instanceof ImageSwarmError) return err
  if (err instanceof UnsafeEntry) {
    return new ImageSwarmError('E_ARCHIVE_UNSAFE', `archive ${archive} is unsafe: ${err.message}`, {
      operation: 'validate archive',
      path: archive,
      hint:
        'refusing to extract it; this archive was not made by imageswarm pack or was altered. ' +
        'Republish the image from its root',
    })
  }
  const message = err instanceof Error ? err.message : String(err)
  return new ImageSwarmError(
    'E_ARCHIVE_UNSAFE',
    `archive ${archive} cannot be read: ${errnoOf(err) ?? message}`,
    {
      operation: 'validate archive',
      path: archive,
      hint: 'the archive is corrupt or truncated; download it again or republish the image',
      cause: err,
    },
  )
}
