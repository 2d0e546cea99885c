import { stat } from 'node:fs/promises'
import { resolve } from 'node:path'
import { errnoOf, ImageSwarmError } from '../errors.js'
import { silentLogger } from '../logging.js'
import { detectCompression } from './compression.js'
import { extractGated } from './extract-gated.js'
import type { ExtractRun } from './extract-run.js'
import { extractUnchecked } from './extract-unchecked.js'
import { detectFormat } from './squashfs.js'
import { HoleFinder, restoreHoles, squashfsBlockSize } from './squashfs-holes.js'
import { IGNORED_TARGET_ENTRIES, snapshotEmptyTarget } from './target-snapshot.js'
import { resolveArchiveTools } from './tools.js'
import type { ExtractOptions, ExtractResult } from './types.js'
import { validateArchive } from './validate.js'

/**
 * Extracts an archive into an existing target root with full metadata, refusing it with
 * E_ARCHIVE_UNSAFE, naming the member, if any member could land outside the target (the
 * rules of `validateArchive`). Nothing is ever written outside the target: tar is given
 * no header that has not passed the rules. How the archive is validated depends on the
 * target:
 *
 * - Empty target (nothing but `ignoreEntries`, default `IGNORED_TARGET_ENTRIES`): one
 *   pass. The archive is decompressed once; the tar stream passes through an in-process
 *   header scanner (`TarScanner`) on its way to `tar -x`, and a chunk is handed to tar
 *   only up to the end of the last header that has passed (a pax or long-name header is
 *   held back until the member it describes has passed). When a member is refused, or the
 *   archive turns out corrupt or truncated, tar (which was given nothing past the last
 *   member that passed) is killed, and everything it had written (those earlier, valid
 *   members, all inside the target) is removed: the target is left as it was, the
 *   ignored entries put back and its own mode, owner and times restored.
 * - Any other target: two passes, because what tar wrote there could not be told apart
 *   from what was there before. `validateArchive` reads every header first; only then
 *   does tar write anything.
 * - `alreadyValidated`: the caller has validated this very file; no validation here.
 * - A SquashFS image (`format`, else its magic bytes): always two passes, each reading
 *   `sqfs2tar`'s tar stream of it. The first (cheap: sqfs2tar writes 200 MB of a Debian
 *   root in a quarter of a second) validates every member before anything is written.
 *
 * tar's warnings go to the logger; a tar failure is E_EXTRACT_FAILED (or E_NO_SPACE)
 * carrying tar's message, and leaves what tar wrote in place.
 *
 * @example
 *   await extractArchive({
 *     archive: '/tmp/image-demo.tar.zst', target: '/a',
 *     onProgress: (bytes, size) => bar.update(bytes / size),
 *   })
 */
export async function extractArchive(options: ExtractOptions): Promise<ExtractResult> {
  const logger = options.logger ?? silentLogger()
  const archive = resolve(options.archive)
  const target = resolve(options.target)
  options.signal?.throwIfAborted()

  const size = await archiveSize(archive)
  await assertTarget(target)
  // Given a compression, a tar archive: the file may be a FIFO, which cannot be peeked at.
  const format =
    options.format ?? (options.compression !== undefined ? 'tar' : await detectFormat(archive))
  // A SquashFS image's tar stream needs no decompressor: sqfs2tar writes it.
  const compression =
    format === 'squashfs' ? 'none' : (options.compression ?? (await detectCompression(archive)))
  const tools = await resolveArchiveTools(compression, options)
  const run: ExtractRun = { options, logger, archive, target, size, compression, format, tools }
  const started = Date.now()
  let validation: ExtractResult['validation']
  let entries: number
  let extractStart = started
  const empty =
    options.alreadyValidated === undefined
      ? await snapshotEmptyTarget(target, options.ignoreEntries ?? IGNORED_TARGET_ENTRIES)
      : undefined
  if (options.alreadyValidated !== undefined) {
    validation = 'by-caller'
    entries = options.alreadyValidated.entries
    await extractUnchecked(run)
  } else if (empty !== undefined && format === 'tar') {
    validation = 'while-extracting'
    entries = await extractGated(run, empty)
  } else {
    validation = 'before-extracting'
    // A SquashFS image's holes are found by the same pass (see HoleFinder).
    const holes =
      format === 'squashfs' ? new HoleFinder(await squashfsBlockSize(archive)) : undefined
    entries = (
      await validateArchive(archive, compression, {
        squashfs: format === 'squashfs',
        tools: options.tools,
        env: options.env,
        decrypt: options.decrypt,
        logger,
        signal: options.signal,
        ...(holes ? { observer: holes } : {}),
      })
    ).entries
    extractStart = Date.now()
    await extractUnchecked(run)
    if (holes) {
      const restored = await restoreHoles(target, holes.files, { ...options, logger })
      if (restored > 0) logger.info({ target, files: restored }, 'sparse files made sparse again')
    }
  }
  const done = Date.now()
  logger.info(
    {
      archive,
      target,
      entries,
      validation,
      validateSeconds: (extractStart - started) / 1000,
      extractSeconds: (done - extractStart) / 1000,
    },
    'extracted image',
  )
  return { entries, validation }
}

async function archiveSize(archive: string): Promise<number> {
  try {
    return (await stat(archive)).size
  } catch (err) {
    throw new ImageSwarmError(
      'E_EXTRACT_FAILED',
      `cannot read archive ${archive}: ${errnoOf(err)}`,
      {
        operation: 'extract',
        path: archive,
        hint: 'check the staging directory; the archive may have been removed',
        cause: err,
      },
    )
  }
}

async function assertTarget(target: string): Promise<void> {
  let isDirectory = false
  try {
    isDirectory = (await stat(target)).isDirectory()
  } catch (err) {
    if (errnoOf(err) !== 'ENOENT') throw err
  }
  if (!isDirectory) {
    throw new ImageSwarmError('E_TARGET_NOT_WRITABLE', `target root ${target} is not a directory`, {
      operation: 'extract',
      path: target,
      hint: 'create and mount the target root before extracting',
    })
  }
}
