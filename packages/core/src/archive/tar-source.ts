import { createReadStream } from 'node:fs'
import type { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { Header } from 'tar-stream'
import { ImageSwarmError } from '../errors.js'
import type { Compression } from '../manifest.js'
import { decompressArgs } from './compression.js'
import { describeExit, type RunningTool, startTool, type ToolExit } from './spawn-tool.js'
import { squashfsReadFailure, startSquashfsTarStream } from './squashfs.js'
import { resolveTool } from './tools.js'
import type { DecryptOption } from './types.js'

/** The uncompressed tar stream of an archive, for reading its headers in-process. */
export interface TarSource {
  stream: Readable
  /** Resolves when the decompressor has exited; `undefined` for uncompressed archives. */
  finished(): Promise<string | undefined>
  /** Stops reading early (a refused entry): kills the decompressor. */
  stop(): void
  /** With `decrypt`: the decrypting stream's error, which outranks any that followed it. */
  decryptError(): unknown
}

/**
 * Opens the tar stream of `archive`: the file itself for `none`, else the stdout of a
 * spawned `zstd -dc` / `gzip -dc`, which decompresses on another core while Node parses.
 * `finished()` resolves with a description of the decompressor's failure, if it failed.
 */
export async function openTarSource(
  archive: string,
  compression: Compression,
  options: DecryptOption,
): Promise<TarSource> {
  const { decrypt } = options
  let decryptError: unknown
  if (options.squashfs) return squashfsSource(archive, options)
  if (compression === 'none') {
    const file = createReadStream(archive, { highWaterMark: 1 << 20 })
    if (decrypt === undefined) {
      return {
        stream: file,
        finished: async () => undefined,
        stop: () => file.destroy(),
        decryptError: () => undefined,
      }
    }
    const plain = decrypt()
    file.on('error', (err) => plain.destroy(err))
    plain.on('error', (err) => {
      decryptError ??= err
    })
    file.pipe(plain)
    return {
      stream: plain,
      finished: async () => undefined,
      stop: () => {
        file.destroy()
        plain.destroy()
      },
      decryptError: () => decryptError,
    }
  }
  const path = await resolveTool(compression, options)
  const tool: RunningTool = startTool(
    path,
    decompressArgs(compression, decrypt === undefined ? archive : undefined, { verify: false }),
    [decrypt === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  )
  if (decrypt !== undefined) {
    // The decompressor reads the plaintext on its stdin; a chunk that fails stops it there.
    pipeline(
      createReadStream(archive, { highWaterMark: 1 << 20 }),
      decrypt(),
      tool.child.stdin as Writable,
    ).catch((err: unknown) => {
      decryptError ??= err
      tool.child.kill('SIGKILL')
    })
  }
  const stdout = tool.child.stdout
  if (stdout === null) throw new Error(`${compression} has no stdout`)
  let stopped = false
  return {
    decryptError: () => decryptError,
    stream: stdout,
    finished: async () => {
      const exit = await tool.exited
      return stopped ? undefined : decompressFailure(compression, exit, tool.stderr())
    },
    stop: () => {
      stopped = true
      tool.child.kill('SIGKILL')
      stdout.destroy()
    },
  }
}

/** A SquashFS image's tree as a tar stream: `sqfs2tar`'s stdout (see squashfs.ts). */
async function squashfsSource(archive: string, options: DecryptOption): Promise<TarSource> {
  if (options.decrypt !== undefined) throw encryptedSquashfs(archive)
  const tool = await startSquashfsTarStream(archive, 'pipe', options)
  const stdout = tool.child.stdout
  if (stdout === null) throw new Error('sqfs2tar has no stdout')
  let stopped = false
  return {
    decryptError: () => undefined,
    stream: stdout,
    finished: async () => {
      const exit = await tool.exited
      return stopped ? undefined : squashfsReadFailure(exit, tool.stderr())
    },
    stop: () => {
      stopped = true
      tool.child.kill('SIGKILL')
      stdout.destroy()
    },
  }
}

/** SquashFS is read with seeks: an encrypted one would have to be decrypted to disk first. */
export function encryptedSquashfs(archive: string): ImageSwarmError {
  return new ImageSwarmError('E_USAGE', `${archive}: encrypted SquashFS images are not supported`, {
    operation: 'read squashfs',
    path: archive,
    hint: 'publish encrypted images as tar (--format tar)',
  })
}

/** How a decompressor failed (`zstd -d failed (exit 1): …`); `undefined` if it exited 0. */
export function decompressFailure(
  compression: Compression,
  exit: ToolExit,
  stderr: string,
): string | undefined {
  if (exit.error === undefined && exit.code === 0) return undefined
  return `${compression} -d failed (${describeExit(exit)}): ${stderr.trim() || '(no message)'}`
}

/** A header's pax records (`{}` when it has none); tar-stream types them as `unknown`. */
export function paxRecords(header: Header): Readonly<Record<string, string>> {
  return (header.pax ?? {}) as Record<string, string>
}

/** The member type, or `null` for typeflags tar-stream does not know ('S', 'D', 'V', ...). */
export function memberType(header: Header): string | null {
  return (header.type as string | null | undefined) ?? null
}
