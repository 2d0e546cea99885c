import { execFileSync } from 'node:child_process'
import { mkdir, open, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { indexArchive } from '../src/archive/file-index.js'
import { extractArchive, validateArchive } from '../src/archive/index.js'
import { TarScanner } from '../src/archive/scan.js'
import { makeTempDir } from './helpers/temp-dir.js'

/**
 * A file with `segments` 4 KiB data segments 1 MiB apart: GNU tar's default (gnu) format
 * stores it, with -S, as an old GNU sparse member ('S'); more than 4 segments need
 * extension blocks after the header.
 */
async function writeSparseFile(path: string, segments: number): Promise<void> {
  const file = await open(path, 'w')
  try {
    for (let i = 0; i < segments; i++) {
      await file.write(Buffer.alloc(4096, 65 + i), 0, 4096, i * 1024 * 1024)
    }
    await file.truncate(segments * 1024 * 1024 + 512)
  } finally {
    await file.close()
  }
}

/** The offset of the first header with this typeflag (headers found by their ustar magic). */
function headerAt(tar: Buffer, typeflag: string): number | undefined {
  for (let at = 0; at + 512 <= tar.length; at += 512) {
    if (
      tar.toString('latin1', at + 257, at + 262) === 'ustar' &&
      tar[at + 156] === typeflag.charCodeAt(0)
    ) {
      return at
    }
  }
  return undefined
}

describe('SystemImager’s tarballs (cd IMAGE && tar -c[z]Spf FILE .)', () => {
  it.each([
    ['a sparse file in the header alone', 2, false],
    ['a sparse file with extension blocks, gzipped', 40, true],
  ])('validates and extracts %s, holes and all', async (_, segments, gzip) => {
    const dir = await makeTempDir()
    const root = join(dir, 'root')
    await mkdir(join(root, 'var/log'), { recursive: true })
    await writeSparseFile(join(root, 'var/log/lastlog'), segments)
    await writeFile(join(root, 'hostname'), 'node\n')
    const tarball = join(dir, gzip ? 'image-x.tar.gz' : 'image-x.tar')
    execFileSync('tar', [`-c${gzip ? 'z' : ''}Spf`, tarball, '.'], { cwd: root })
    const raw = gzip ? execFileSync('gzip', ['-dc', tarball]) : await readFile(tarball)
    const sparse = headerAt(raw, 'S')
    expect(sparse).toBeDefined()
    expect(raw[sparse! + 482] !== 0).toBe(segments > 4)

    expect((await validateArchive(tarball)).entries).toBe(5)
    const target = join(dir, 'target')
    await mkdir(target)
    await extractArchive({ archive: tarball, target })
    const extracted = await readFile(join(target, 'var/log/lastlog'))
    expect(extracted.equals(await readFile(join(root, 'var/log/lastlog')))).toBe(true)
    const blocks = (path: string) => Number(execFileSync('stat', ['-c', '%b', path]).toString())
    expect(blocks(join(target, 'var/log/lastlog'))).toBeLessThan((segments * 1024 * 1024) / 512 / 4)
  })

  it('reads extension blocks as GNU tar does, whatever the chunk sizes', async () => {
    const dir = await makeTempDir()
    const root = join(dir, 'root')
    await mkdir(root)
    await writeSparseFile(join(root, 'lastlog'), 60)
    await writeFile(join(root, 'after'), 'a member after the sparse one\n')
    const tar = execFileSync('tar', ['-cSpf', '-', '.'], { cwd: root, maxBuffer: 1 << 26 })
    for (const size of [1, 7, 511, 512, 513, 4096, tar.length]) {
      const scanner = new TarScanner()
      for (let at = 0; at < tar.length; at += size) scanner.write(tar.subarray(at, at + size))
      scanner.end()
      expect([scanner.entries, scanner.validatedBytes]).toEqual([3, tar.length])
    }
  })

  it('still refuses an old GNU sparse member where a file index is made from the archive', async () => {
    const dir = await makeTempDir()
    const root = join(dir, 'root')
    await mkdir(root)
    await writeSparseFile(join(root, 'lastlog'), 2)
    const tarball = join(dir, 'image-x.tar')
    execFileSync('tar', ['-cSpf', tarball, '.'], { cwd: root })
    await expect(indexArchive({ archive: tarball })).rejects.toThrow(
      /unsupported member type \('S'\)/,
    )
  })
})
