import { open } from 'node:fs/promises'
import { errnoOf, ImageSwarmError } from '../errors.js'
import type { Compression } from '../manifest.js'

const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd])
const GZIP_MAGIC = Buffer.from([0x1f, 0x8b])
/** `ustar` at offset 257 marks POSIX (`ustar\0`) and GNU (`ustar  `) tar headers alike. */
const USTAR_MAGIC = Buffer.from('ustar', 'latin1')
const USTAR_OFFSET = 257

/** Default levels: zstd 3 is fast with a good ratio; gzip 6 is gzip's own default. */
export const DEFAULT_LEVELS: Readonly<Record<Exclude<Compression, 'none'>, number>> = {
  zstd: 3,
  gzip: 6,
}

const LEVEL_RANGES: Readonly<Record<Exclude<Compression, 'none'>, readonly [number, number]>> = {
  zstd: [1, 19],
  gzip: [1, 9],
}

/**
 * The compression of an archive, from its magic bytes: zstd `28 b5 2f fd`, gzip `1f 8b`,
 * an uncompressed tar by `ustar` at offset 257.
 *
 * @example await detectCompression('/var/lib/systemimager/tarballs/image-demo.tar.zst') // 'zstd'
 */
export async function detectCompression(path: string): Promise<Compression> {
  let head: Buffer
  try {
    const file = await open(path, 'r')
    try {
      head = Buffer.alloc(512)
      const { bytesRead } = await file.read(head, 0, head.length, 0)
      head = head.subarray(0, bytesRead)
    } finally {
      await file.close()
    }
  } catch (err) {
    throw new ImageSwarmError('E_ARCHIVE_UNSAFE', `cannot read archive ${path}: ${errnoOf(err)}`, {
      operation: 'detect compression',
      path,
      hint: 'check that the archive exists and is readable',
      cause: err,
    })
  }
  if (startsWith(head, ZSTD_MAGIC, 0)) return 'zstd'
  if (startsWith(head, GZIP_MAGIC, 0)) return 'gzip'
  if (startsWith(head, USTAR_MAGIC, USTAR_OFFSET)) return 'none'
  const shown = head.subarray(0, 8).toString('hex').replace(/(..)/g, '$1 ').trim()
  throw new ImageSwarmError(
    'E_ARCHIVE_UNSAFE',
    `${path} is not a tar, tar.zst or tar.gz archive (first bytes: ${shown || 'none, empty file'})`,
    {
      operation: 'detect compression',
      path,
      hint: 'expected zstd (28 b5 2f fd), gzip (1f 8b) or a tar header; re-download or republish',
    },
  )
}

function startsWith(buf: Buffer, magic: Buffer, offset: number): boolean {
  return (
    buf.length >= offset + magic.length && buf.subarray(offset, offset + magic.length).equals(magic)
  )
}

/** The validated level for a compression, or its default. */
export function compressionLevel(
  compression: Exclude<Compression, 'none'>,
  level?: number,
): number {
  const chosen = level ?? DEFAULT_LEVELS[compression]
  const [min, max] = LEVEL_RANGES[compression]
  if (!Number.isInteger(chosen) || chosen < min || chosen > max) {
    throw new ImageSwarmError(
      'E_USAGE',
      `${compression} level must be an integer from ${min} to ${max}, got ${chosen}`,
      { operation: 'pack', hint: `e.g. level ${DEFAULT_LEVELS[compression]}` },
    )
  }
  return chosen
}

/**
 * Arguments for a compressor that reads a tar stream on stdin and writes to stdout.
 *
 * zstd runs multithreaded (`-T0`, one worker a core). Its multithreaded format does not
 * depend on the number of workers: we checked that zstd 1.5.4 writes identical bytes for
 * -T0/-T1/-T2/-T8 on the same stdin. (`--single-thread` writes different bytes, and input
 * from a file rather than a pipe differs too, because zstd then knows the size; we always
 * feed a pipe.) Different zstd versions may still compress differently.
 * gzip gets `-n`: no file name and no timestamp in its header.
 */
export function compressArgs(compression: Exclude<Compression, 'none'>, level: number): string[] {
  return compression === 'zstd' ? ['-T0', `-${level}`, '-q', '-c'] : ['-n', `-${level}`, '-c']
}

/**
 * Arguments for a decompressor that reads stdin (or `file`) and writes the tar to stdout.
 * `verify: false` skips zstd's content checksum (20% less CPU): right for a pass that reads
 * only headers, because the checksum never changes the bytes that come out; the extracting
 * pass still checks it.
 */
export function decompressArgs(
  compression: Exclude<Compression, 'none'>,
  file?: string,
  options: { verify?: boolean } = {},
): string[] {
  const args = compression === 'zstd' ? ['-d', '-c', '-q'] : ['-d', '-c']
  if (compression === 'zstd' && options.verify === false) args.push('--no-check')
  return file === undefined ? args : [...args, '--', file]
}
