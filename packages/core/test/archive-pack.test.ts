import { spawn, spawnSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { chmod, mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import {
  type ArchiveEntry,
  DEFAULT_EXCLUDES,
  extractArchive,
  isImageSwarmError,
  listArchive,
  packArchive,
  parseExcludeFile,
  sha256File,
} from '../src/index.js'
import { buildFidelityTree, FIDELITY_COMMANDS } from '../src/testing/fixture-tree.js'
import { hasCommand, isRoot, missingRequirements } from '../src/testing/system-tools.js'
import { captureLogger, WARN } from './helpers/capture-logger.js'
import { errorOf } from './helpers/error-of.js'
import { referencePieceHashes } from './helpers/piece-reference.js'
import { makeTempDir } from './helpers/temp-dir.js'

const fidelitySkip = missingRequirements(FIDELITY_COMMANDS)
const unshareSkip = missingRequirements(['unshare'])

async function list(archive: string): Promise<ArchiveEntry[]> {
  const entries: ArchiveEntry[] = []
  for await (const entry of listArchive(archive)) entries.push(entry)
  return entries
}

describe('packArchive', { timeout: 60_000 }, () => {
  it.skipIf(fidelitySkip !== undefined || unshareSkip !== undefined)(
    `packs the same tree to the same bytes, sparse file included${
      (fidelitySkip ?? unshareSkip) ? ` (skipped: ${fidelitySkip ?? unshareSkip})` : ''
    }`,
    async () => {
      const dir = await makeTempDir()
      const root = join(dir, 'root')
      await buildFidelityTree(root)
      const first = await packArchive({ root, output: join(dir, 'a.tar.zst'), compression: 'zstd' })
      // Reading every file changed its atime; the archive must not care.
      await new Promise((resolve) => setTimeout(resolve, 1100))
      const second = await packArchive({
        root,
        output: join(dir, 'b.tar.zst'),
        compression: 'zstd',
      })
      expect(first.deterministic).toBe(true)
      expect(second.sha256).toBe(first.sha256)
      expect((await readFile(second.output)).equals(await readFile(first.output))).toBe(true)
      expect(await sha256File(first.output)).toBe(first.sha256)
      // tar as PID 1: the sparse member's stand-in name no longer carries a changing PID.
      const tar = spawnSync('zstd', ['-dc', first.output], { maxBuffer: 1 << 28 }).stdout
      expect(tar.includes(Buffer.from('GNUSparseFile.1/'))).toBe(true)
      expect(tar.includes(Buffer.from(' atime='))).toBe(false)
      expect(tar.includes(Buffer.from(' ctime='))).toBe(false)
      const gz1 = await packArchive({ root, output: join(dir, 'a.tar.gz'), compression: 'gzip' })
      const gz2 = await packArchive({ root, output: join(dir, 'b.tar.gz'), compression: 'gzip' })
      expect(gz2.sha256).toBe(gz1.sha256)
    },
    60_000,
  )

  // Each compression has another last writer (zstd, gzip, or tar itself); 6 MiB that do not
  // compress take several reads behind it.
  it.each(['zstd', 'gzip', 'none'] as const)(
    'hashes exactly the bytes it wrote (%s), pieces too, and leaves no temporary file',
    async (compression) => {
      const dir = await makeTempDir()
      const root = join(dir, 'root')
      await mkdir(root)
      await writeFile(join(root, 'data'), randomBytes(6 << 20))
      const out = join(dir, 'out')
      await mkdir(out)
      const pieceLength = 256 * 1024
      const result = await packArchive({
        root,
        output: join(out, 'x.tar'),
        compression,
        pieceLength,
      })
      const written = await readFile(result.output)
      expect(result.size).toBe(written.length)
      expect(result.size).toBeGreaterThan(6 << 20)
      expect(result.sha256).toBe(createHash('sha256').update(written).digest('hex'))
      expect(result.pieces.equals(referencePieceHashes(written, pieceLength))).toBe(true)
      expect(await readdir(out)).toEqual(['x.tar'])
    },
  )

  it('writes 64 KiB tar records, which tar with its default records reads from a pipe', async () => {
    const dir = await makeTempDir()
    const root = join(dir, 'root')
    await mkdir(join(root, 'etc'), { recursive: true })
    await writeFile(join(root, 'etc', 'hostname'), 'node001\n')
    const { output, size } = await packArchive({
      root,
      output: join(dir, 'x.tar'),
      compression: 'none',
    })
    expect(size % (64 << 10)).toBe(0)
    const target = join(dir, 'target')
    await mkdir(target)
    const plain = spawnSync('sh', ['-c', 'tar -x -C "$1" < "$2"', 'sh', target, output])
    expect(plain.stderr.toString()).toBe('')
    expect(plain.status).toBe(0)
    expect(await readFile(join(target, 'etc', 'hostname'), 'utf8')).toBe('node001\n')
  })

  it('computes no piece hashes unless asked, and refuses a piece length below 16 KiB', async () => {
    const dir = await makeTempDir()
    const root = join(dir, 'root')
    await mkdir(root)
    const result = await packArchive({ root, output: join(dir, 'x.tar'), compression: 'none' })
    expect(result.pieces).toBeUndefined()
    const error = await errorOf(
      packArchive({ root, output: join(dir, 'y.tar'), compression: 'none', pieceLength: 1000 }),
    )
    expect(isImageSwarmError(error) && error.code).toBe('E_USAGE')
    expect(await readdir(dir)).toEqual(['root', 'x.tar'])
  })

  it('leaves out the contents of proc, sys, dev/pts and run, keeping the directories', async () => {
    const dir = await makeTempDir()
    const root = join(dir, 'root')
    for (const sub of ['proc/1', 'sys/kernel', 'dev/pts', 'run/lock', 'tmp', 'usr/proc']) {
      await mkdir(join(root, sub), { recursive: true })
    }
    await writeFile(join(root, 'proc/1/status'), 'x')
    await writeFile(join(root, 'dev/pts/0'), 'x')
    await writeFile(join(root, 'dev/null-ish'), 'x')
    await writeFile(join(root, 'run/lock/pid'), 'x')
    await writeFile(join(root, 'tmp/kept'), 'x')
    await writeFile(join(root, 'usr/proc/kept'), 'x')
    const { logger, lines } = captureLogger()
    const output = join(dir, 'x.tar.zst')
    await packArchive({ root, output, compression: 'zstd', logger })
    const names = (await list(output)).map((entry) => entry.path)
    expect(names).toEqual([
      './',
      './dev/',
      './dev/null-ish',
      './dev/pts/',
      './proc/',
      './run/',
      './sys/',
      './tmp/',
      './tmp/kept',
      './usr/',
      './usr/proc/',
      './usr/proc/kept',
    ])
    const logged = lines.find((line) => Array.isArray(line.anchored))
    expect(logged?.anchored).toEqual([...DEFAULT_EXCLUDES])
  })

  it('applies an exclude file: root-anchored, floating and commented patterns', async () => {
    const dir = await makeTempDir()
    const root = join(dir, 'root')
    await mkdir(join(root, 'var/cache/apt'), { recursive: true })
    await mkdir(join(root, 'home/u/cache'), { recursive: true })
    await writeFile(join(root, 'var/cache/apt/pkg.deb'), 'x')
    await writeFile(join(root, 'home/u/core'), 'x')
    await writeFile(join(root, 'home/u/cache/f'), 'x')
    await writeFile(join(root, 'core.txt'), 'x')
    const excludeFile = join(dir, 'exclude')
    await writeFile(excludeFile, '# SystemImager style\n\n/var/cache/*\ncore\n  /home/u/cache/  \n')
    const output = join(dir, 'x.tar.zst')
    await packArchive({ root, output, compression: 'zstd', excludeFile, excludes: ['*.txt'] })
    const names = (await list(output)).map((entry) => entry.path)
    expect(names).toEqual(['./', './home/', './home/u/', './var/', './var/cache/'])
  })

  it('leaves its own output out when it is written inside the root', async () => {
    const dir = await makeTempDir()
    await writeFile(join(dir, 'file'), 'x')
    const output = join(dir, 'image[1].tar.zst')
    await packArchive({ root: dir, output, compression: 'zstd' })
    expect((await list(output)).map((entry) => entry.path)).toEqual(['./', './file'])
  })

  it('parses exclude files into tar patterns', () => {
    expect(parseExcludeFile('# c\n/tmp/*\n\ncore\n/var/cache/\n//x\n')).toEqual([
      './tmp/*',
      'core',
      './var/cache',
      './x',
    ])
  })

  it('logs, and does not fail on, the sockets tar skips', async () => {
    const dir = await makeTempDir()
    const root = join(dir, 'root')
    await mkdir(root)
    await writeFile(join(root, 'file'), 'x')
    const server = createServer()
    await new Promise<void>((resolve) => server.listen(join(root, 'control.sock'), resolve))
    try {
      const { logger, lines } = captureLogger()
      const output = join(dir, 'x.tar.zst')
      await packArchive({ root, output, compression: 'zstd', logger })
      expect((await list(output)).map((entry) => entry.path)).toEqual(['./', './file'])
      const warning = lines.find(
        (line) => line.level === WARN && /socket ignored/.test(String(line.tar)),
      )
      expect(warning).toBeDefined()
    } finally {
      server.close()
    }
  })

  it('fails with E_IMAGE_NOT_FOUND when the root is missing', async () => {
    const dir = await makeTempDir()
    const error = await errorOf(
      packArchive({ root: join(dir, 'nope'), output: join(dir, 'x.tar.zst'), compression: 'zstd' }),
    )
    expect(isImageSwarmError(error) && error.code).toBe('E_IMAGE_NOT_FOUND')
    expect(isImageSwarmError(error) && error.path).toBe(join(dir, 'nope'))
  })

  it.skipIf(!isRoot)(
    'fails with E_PACK_FAILED and tar’s message when a file cannot be read',
    async () => {
      // As root nothing is unreadable; an unreadable FIFO-free trick: a directory tar cannot
      // open because it vanished is racy, so use a fake tar that fails like a real one.
      const dir = await makeTempDir()
      const root = join(dir, 'root')
      await mkdir(root)
      const fakeTar = join(dir, 'tar')
      await writeFile(
        fakeTar,
        '#!/bin/sh\n' +
          'case "$1" in --version) echo "tar (GNU tar) 1.34"; exit 0;; esac\n' +
          'echo "tar: ./etc/shadow: Cannot open: Input/output error" >&2\nexit 2\n',
      )
      await chmod(fakeTar, 0o755)
      const output = join(dir, 'x.tar.zst')
      const error = await errorOf(
        packArchive({ root, output, compression: 'zstd', tools: { tar: fakeTar } }),
      )
      expect(isImageSwarmError(error) && error.code).toBe('E_PACK_FAILED')
      expect(String((error as Error).message)).toContain('Cannot open: Input/output error')
      expect(await readdir(dir)).toEqual(['root', 'tar'])
    },
  )

  it('fails the pack when a file changes while tar reads it', async () => {
    const dir = await makeTempDir()
    const root = join(dir, 'root')
    await mkdir(root)
    const growing = join(root, 'growing.log')
    await writeFile(growing, Buffer.alloc(64 << 20, 1))
    // A writer that keeps appending for the whole pack.
    const writer = spawn('sh', ['-c', `while :; do echo x >> '${growing}'; done`], {
      stdio: 'ignore',
    })
    try {
      const output = join(dir, 'x.tar.zst')
      const error = await errorOf(packArchive({ root, output, compression: 'zstd' }))
      expect(isImageSwarmError(error) && error.code).toBe('E_PACK_FAILED')
      expect(String((error as Error).message)).toMatch(/changed while they were packed/)
      expect(String((error as Error).message)).toMatch(/file changed as we read it/)
      expect((await readdir(dir)).sort()).toEqual(['root'])
    } finally {
      writer.kill('SIGKILL')
    }
  }, 60_000)

  it.skipIf(!hasCommand('gzip'))('round-trips gzip and uncompressed archives', async () => {
    const dir = await makeTempDir()
    const root = join(dir, 'root')
    await mkdir(join(root, 'etc'), { recursive: true })
    await writeFile(join(root, 'etc/motd'), 'hello\n')
    for (const compression of ['gzip', 'none'] as const) {
      const output = join(dir, `x-${compression}`)
      const packed = await packArchive({ root, output, compression })
      expect(packed.sha256).toBe(await sha256File(output))
      const target = join(dir, `t-${compression}`)
      await mkdir(target)
      await extractArchive({ archive: output, target })
      expect(await readFile(join(target, 'etc/motd'), 'utf8')).toBe('hello\n')
    }
  })

  it('rejects a compression level out of range', async () => {
    const dir = await makeTempDir()
    const error = await errorOf(
      packArchive({ root: dir, output: join(dir, 'x'), compression: 'gzip', level: 12 }),
    )
    expect(isImageSwarmError(error) && error.code).toBe('E_USAGE')
  })
})
