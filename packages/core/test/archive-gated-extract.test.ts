import { spawnSync } from 'node:child_process'
import { closeSync, existsSync, openSync, readSync } from 'node:fs'
import { chmod, mkdir, open, readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { fileOffset } from '../src/archive/extract-progress.js'
import { extractArchive, isImageSwarmError } from '../src/index.js'
import { captureLogger, WARN } from './helpers/capture-logger.js'
import { errorOf } from './helpers/error-of.js'
import { escapeViaSymlink } from './helpers/hostile-fixtures.js'
import { type RawMember, rawTar, zstd } from './helpers/raw-tar.js'
import { makeSandbox, type Sandbox } from './helpers/temp-dir.js'

/** Valid members with some MiB of data that does not compress: tar gets busy with them. */
function validMembers(count: number, bytes: number): RawMember[] {
  const members: RawMember[] = [
    { name: './', type: '5' },
    { name: './dir/', type: '5' },
  ]
  for (let i = 0; i < count; i++) {
    const body = Buffer.alloc(bytes)
    for (let j = 0; j + 4 <= bytes; j += 4)
      body.writeUInt32LE((i * 2654435761 + j * 40503) >>> 0, j)
    members.push({ name: `./dir/f${i}`, type: '0', body })
  }
  members.push({ name: './dir/last', type: '0', body: 'last' })
  return members
}

/** The tar bytes of `members` without the end-of-archive blocks, to append more. */
function unterminated(members: RawMember[]): Buffer {
  const tar = rawTar(members)
  return tar.subarray(0, tar.length - 1024)
}

async function waitFor(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 20_000
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/**
 * Extracts from a FIFO: `first` is written, then (once `ready` holds, so tar has written
 * part of the archive already) `rest`. Returns the error.
 */
async function extractInTwoParts(
  b: Sandbox,
  first: Buffer,
  ready: () => boolean,
  rest: Buffer,
): Promise<{ error: unknown; lines: ReturnType<typeof captureLogger>['lines'] }> {
  const fifo = join(b.dir, 'archive.tar')
  spawnSync('mkfifo', [fifo])
  const { logger, lines } = captureLogger()
  const extraction = errorOf(
    extractArchive({ archive: fifo, target: b.target, compression: 'none', logger }),
  )
  const writer = await open(fifo, 'w')
  await writer.write(first)
  await waitFor(ready, 'tar to extract the valid members')
  await writer.write(rest)
  await writer.close()
  return { error: await extraction, lines }
}

describe('extractArchive into an empty target: one gated pass', { timeout: 60_000 }, () => {
  it('extracts and reports validation while extracting', async () => {
    const b = await makeSandbox()
    const archive = join(b.dir, 'ok.tar')
    await writeFile(archive, rawTar(validMembers(3, 1000)))
    const result = await extractArchive({ archive, target: b.target })
    expect(result).toEqual({ entries: 6, validation: 'while-extracting' })
    expect(await readFile(join(b.target, 'dir/last'), 'utf8')).toBe('last')
  })

  it('reports progress, tar failures (E_EXTRACT_FAILED) and interruption', async () => {
    const b = await makeSandbox()
    const archive = join(b.dir, 'ok.tar.zst')
    const tar = rawTar(validMembers(16, 256 * 1024))
    await writeFile(archive, zstd(tar))
    const size = (await stat(archive)).size
    const seen: number[] = []
    await extractArchive({ archive, target: b.target, onProgress: (bytes) => seen.push(bytes) })
    expect(seen.at(-1)).toBe(size)
    // Progress on the way is the decompressor's offset in the archive file.
    const fd = openSync(archive, 'r')
    try {
      readSync(fd, Buffer.alloc(1000), 0, 1000, null)
      expect(fileOffset(fd)).toBe(1000)
    } finally {
      closeSync(fd)
    }

    // ./a is a file, so tar cannot make ./a/b: not unsafe, a tar failure; left in place.
    const c = await makeSandbox()
    const broken = join(c.dir, 'broken.tar')
    await writeFile(
      broken,
      rawTar([
        { name: './a', type: '0', body: 'x' },
        { name: './a/b', type: '0', body: 'y' },
      ]),
    )
    const failed = await errorOf(extractArchive({ archive: broken, target: c.target }))
    expect(isImageSwarmError(failed) && failed.code).toBe('E_EXTRACT_FAILED')
    expect(String((failed as Error).message)).toMatch(/Not a directory/)
    expect(await readdir(c.target)).toEqual(['a'])

    const d = await makeSandbox()
    const fifo = join(d.dir, 'slow.tar')
    spawnSync('mkfifo', [fifo])
    const controller = new AbortController()
    const extraction = errorOf(
      extractArchive({
        archive: fifo,
        target: d.target,
        compression: 'none',
        signal: controller.signal,
      }),
    )
    const writer = await open(fifo, 'w')
    await writer.write(unterminated(validMembers(4, 64 * 1024)))
    await waitFor(() => existsSync(join(d.target, 'dir/f2')), 'tar to start')
    controller.abort(new Error('test abort'))
    const interrupted = await extraction
    await writer.close().catch(() => undefined)
    expect(isImageSwarmError(interrupted) && interrupted.code).toBe('E_INTERRUPTED')
  })

  it('a hostile member after valid ones: tar had written them; all removed, nothing outside', async () => {
    const b = await makeSandbox()
    const { error, lines } = await extractInTwoParts(
      b,
      unterminated(validMembers(8, 256 * 1024)),
      // tar reads 10 KiB records: it gets to the last members only with the rest.
      () => existsSync(join(b.target, 'dir/f6')),
      rawTar(escapeViaSymlink(b.canary, './link')),
    )
    expect(isImageSwarmError(error) && error.code).toBe('E_ARCHIVE_UNSAFE')
    expect(String((error as Error).message)).toMatch(/'\.\/link\/evil' has its path through/)
    expect(await readdir(b.target)).toEqual([])
    expect(await readdir(b.canary)).toEqual([])
    const removal = lines.find((line) => line.level === WARN && /removed what tar/.test(line.msg))
    expect(removal?.removed).toBe(1)
  })

  it('a hostile member after valid ones in a zstd archive leaves the target empty', async () => {
    const b = await makeSandbox()
    const tar = Buffer.concat([
      unterminated(validMembers(16, 256 * 1024)),
      rawTar(escapeViaSymlink(b.canary, './link')),
    ])
    const archive = join(b.dir, 'hostile.tar.zst')
    await writeFile(archive, zstd(tar))
    const error = await errorOf(extractArchive({ archive, target: b.target }))
    expect(isImageSwarmError(error) && error.code).toBe('E_ARCHIVE_UNSAFE')
    expect(String((error as Error).message)).toMatch(/'\.\/link\/evil' has its path through/)
    expect(await readdir(b.target)).toEqual([])
    expect(await readdir(b.canary)).toEqual([])
  })

  it('a truncated or corrupt archive is refused and what tar wrote is removed', async () => {
    const b = await makeSandbox()
    const cut = await extractInTwoParts(
      b,
      unterminated(validMembers(4, 64 * 1024)),
      () => existsSync(join(b.target, 'dir/f2')),
      rawTar([{ name: './big', type: '0', body: Buffer.alloc(4096, 1) }]).subarray(0, 2000),
    )
    expect(isImageSwarmError(cut.error) && cut.error.code).toBe('E_ARCHIVE_UNSAFE')
    expect(String((cut.error as Error).message)).toMatch(/cannot be read: Unexpected end of data/)
    expect(await readdir(b.target)).toEqual([])

    const tar = rawTar(validMembers(16, 256 * 1024))
    const zst = zstd(tar)
    zst.fill(0x55, zst.length >> 1, (zst.length >> 1) + 64)
    const archive = join(b.dir, 'corrupt.tar.zst')
    await writeFile(archive, zst)
    const corrupt = await errorOf(extractArchive({ archive, target: b.target }))
    expect(isImageSwarmError(corrupt) && corrupt.code).toBe('E_ARCHIVE_UNSAFE')
    expect(String((corrupt as Error).message)).toMatch(/cannot be read/)
    expect(await readdir(b.target)).toEqual([])

    // Only zstd's content checksum is wrong: the extracting pass checks it (see decompressArgs).
    const badChecksum = zstd(tar)
    const last = badChecksum.length - 1
    badChecksum[last] = 0xff - badChecksum[last]!
    await writeFile(archive, badChecksum)
    const mismatch = await errorOf(extractArchive({ archive, target: b.target }))
    expect(isImageSwarmError(mismatch) && mismatch.code).toBe('E_ARCHIVE_UNSAFE')
    expect(String((mismatch as Error).message)).toMatch(/cannot be read/)
    expect(await readdir(b.target)).toEqual([])
  })

  it('counts only the marker and an empty lost+found as empty, and puts them back', async () => {
    const b = await makeSandbox()
    const marker = join(b.target, '.imageswarm-incomplete')
    await writeFile(marker, 'installing\n')
    await chmod(marker, 0o640)
    await mkdir(join(b.target, 'lost+found'))
    await chmod(join(b.target, 'lost+found'), 0o700)
    const before = await stat(b.target)
    const { error } = await extractInTwoParts(
      b,
      unterminated([
        { name: './', type: '5', mode: 0o555 },
        { name: './lost+found/', type: '5', mode: 0o755 },
        { name: './lost+found/found', type: '0', body: 'x' },
        { name: './.imageswarm-incomplete', type: '0', body: 'replaced', mode: 0o600 },
        ...validMembers(2, 64 * 1024).slice(2),
      ]),
      () => existsSync(join(b.target, 'dir/f1')),
      rawTar(escapeViaSymlink(b.canary, './link')),
    )
    expect(isImageSwarmError(error) && error.code).toBe('E_ARCHIVE_UNSAFE')
    expect((await readdir(b.target)).sort()).toEqual(['.imageswarm-incomplete', 'lost+found'])
    expect(await readFile(marker, 'utf8')).toBe('installing\n')
    expect((await stat(marker)).mode & 0o7777).toBe(0o640)
    expect(await readdir(join(b.target, 'lost+found'))).toEqual([])
    expect((await stat(join(b.target, 'lost+found'))).mode & 0o7777).toBe(0o700)
    const after = await stat(b.target)
    expect(after.mode).toBe(before.mode)
    expect(Math.abs(after.mtimeMs - before.mtimeMs)).toBeLessThan(1)
    expect(await readdir(b.canary)).toEqual([])
  })
})

describe('extractArchive into a non-empty target: validation first', { timeout: 60_000 }, () => {
  it('validates the whole archive before tar writes anything', async () => {
    const b = await makeSandbox()
    await writeFile(join(b.target, 'keep'), 'mine')
    const archive = join(b.dir, 'hostile.tar')
    await writeFile(
      archive,
      rawTar([...validMembers(4, 64 * 1024), ...escapeViaSymlink(b.canary, './link')]),
    )
    const error = await errorOf(extractArchive({ archive, target: b.target }))
    expect(isImageSwarmError(error) && error.code).toBe('E_ARCHIVE_UNSAFE')
    // Nothing extracted at all, not even the valid members before the hostile one.
    expect(await readdir(b.target)).toEqual(['keep'])
    expect(await readdir(b.canary)).toEqual([])

    await writeFile(archive, rawTar(validMembers(2, 1000)))
    const result = await extractArchive({ archive, target: b.target })
    expect(result.validation).toBe('before-extracting')
    expect(await readFile(join(b.target, 'keep'), 'utf8')).toBe('mine')
  })

  it('a non-empty lost+found, a big marker or ignoreEntries: [] make a target non-empty', async () => {
    const b = await makeSandbox()
    const archive = join(b.dir, 'ok.tar')
    await writeFile(archive, rawTar(validMembers(1, 10)))
    await mkdir(join(b.target, 'lost+found'))
    await writeFile(join(b.target, 'lost+found', '#123'), 'x')
    expect((await extractArchive({ archive, target: b.target })).validation).toBe(
      'before-extracting',
    )

    const c = await makeSandbox()
    await writeFile(join(c.target, '.imageswarm-incomplete'), Buffer.alloc(65 * 1024))
    expect((await extractArchive({ archive, target: c.target })).validation).toBe(
      'before-extracting',
    )

    const d = await makeSandbox()
    await mkdir(join(d.target, 'lost+found'))
    const options = { archive, target: d.target }
    expect((await extractArchive({ ...options, ignoreEntries: [] })).validation).toBe(
      'before-extracting',
    )
  })

  it('alreadyValidated skips validation', async () => {
    const b = await makeSandbox()
    const archive = join(b.dir, 'ok.tar')
    await writeFile(archive, rawTar(validMembers(1, 10)))
    const result = await extractArchive({
      archive,
      target: b.target,
      alreadyValidated: { entries: 99 },
    })
    // The caller's count is reported as it is (the archive has 4 members): nothing counted.
    expect(result).toEqual({ entries: 99, validation: 'by-caller' })
  })
})
