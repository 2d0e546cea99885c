import { resolve } from 'node:path'
import * as tarStream from 'tar-stream'
import type { Compression } from '../manifest.js'
import { detectCompression } from './compression.js'
import { memberType, openTarSource, paxRecords } from './tar-source.js'
import type { ArchiveEntry, ArchiveEntryType, ToolOptions } from './types.js'

/**
 * The members of an archive, in archive order, read in-process without extracting.
 * Does not validate; use `validateArchive` before trusting names.
 *
 * @example for await (const entry of listArchive('image-demo.tar.zst')) console.log(entry.path)
 */
export async function* listArchive(
  archivePath: string,
  compression?: Compression,
  options: ToolOptions = {},
): AsyncGenerator<ArchiveEntry> {
  const archive = resolve(archivePath)
  const source = await openTarSource(
    archive,
    compression ?? (await detectCompression(archive)),
    options,
  )
  const extract = tarStream.extract()
  source.stream.pipe(extract)
  let complete = false
  try {
    for await (const entry of extract) {
      const header = entry.header
      const pax = paxRecords(header)
      entry.resume()
      yield {
        path: pax['GNU.sparse.name'] ?? header.name,
        type: (memberType(header) ?? 'file') as ArchiveEntryType,
        size: Number(pax['GNU.sparse.realsize'] ?? header.size ?? 0),
        mode: header.mode ?? 0,
        uid: header.uid ?? 0,
        gid: header.gid ?? 0,
        mtime: paxTime(pax.mtime) ?? header.mtime ?? new Date(0),
        linkname: (header.linkname as string | null) ?? undefined,
      }
    }
    complete = true
  } finally {
    // The caller stopped early (break) or parsing failed: the decompressor is not needed.
    if (!complete) source.stop()
  }
  const failure = await source.finished()
  if (failure !== undefined) throw new Error(failure)
}

/** A pax `mtime` (`1700000000.123456789`, maybe negative) to a Date, millisecond precision. */
function paxTime(value: string | undefined): Date | undefined {
  if (value === undefined) return undefined
  const seconds = Number(value)
  return Number.isFinite(seconds) ? new Date(seconds * 1000) : undefined
}
