import { spawnSync } from 'node:child_process'
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { extractArchive, isImageSwarmError, validateArchive } from '../src/index.js'
import { fixtureTar, HOSTILE_FIXTURES } from './helpers/hostile-fixtures.js'
import { type RawMember, rawTar } from './helpers/raw-tar.js'
import { tarStreamVerdict } from './helpers/tar-stream-reference.js'
import { makeTempDir } from './helpers/temp-dir.js'

interface Sandbox {
  dir: string
  target: string
  canary: string
}

async function sandbox(): Promise<Sandbox> {
  const dir = await makeTempDir()
  const target = join(dir, 'target')
  const canary = join(dir, 'canary')
  await mkdir(target)
  await mkdir(canary)
  return { dir, target, canary }
}

async function writeArchive(box: Sandbox, members: RawMember[], zstd = false): Promise<string> {
  const tar = rawTar(members)
  const path = join(box.dir, zstd ? 'hostile.tar.zst' : 'hostile.tar')
  if (!zstd) {
    await writeFile(path, tar)
    return path
  }
  const result = spawnSync('zstd', ['-q', '-c'], { input: tar, maxBuffer: 1 << 26 })
  await writeFile(path, result.stdout)
  return path
}

/** Extraction must fail with E_ARCHIVE_UNSAFE naming `entry`, and write nothing anywhere. */
async function expectRefused(box: Sandbox, archive: string, entry: string, reason: RegExp) {
  const error = await extractArchive({ archive, target: box.target }).then(
    () => undefined,
    (err: unknown) => err,
  )
  expect(isImageSwarmError(error), String(error)).toBe(true)
  if (!isImageSwarmError(error)) return
  expect(error.code).toBe('E_ARCHIVE_UNSAFE')
  expect(error.message).toContain(`'${entry}'`)
  expect(error.message).toMatch(reason)
  expect(error.path).toBe(archive)
  expect(await readdir(box.canary)).toEqual([])
  expect(await readdir(box.target)).toEqual([])
}

describe('validateArchive / extractArchive refuse hostile archives', { timeout: 60_000 }, () => {
  it('extracts a benign hand-made archive (the fixtures are valid tar)', async () => {
    const box = await sandbox()
    const archive = await writeArchive(box, [
      { name: './', type: '5' },
      { name: './dir/', type: '5' },
      { name: './dir/file', type: '0', body: 'ok\n' },
      { name: './dir/abs-link', type: '2', linkname: '/etc/passwd' },
      { name: './dir/hard', type: '1', linkname: './dir/file' },
      { name: './long', type: '0', body: 'pax\n', pax: { path: `./${'p'.repeat(150)}` } },
    ])
    expect(await validateArchive(archive)).toEqual({ entries: 6 })
    await extractArchive({ archive, target: box.target })
    expect(await readFile(join(box.target, 'dir/hard'), 'utf8')).toBe('ok\n')
    expect(await readFile(join(box.target, 'p'.repeat(150)), 'utf8')).toBe('pax\n')
  })

  for (const fixture of HOSTILE_FIXTURES) {
    it(fixture.title, async () => {
      const box = await sandbox()
      const archive = await writeArchive(box, fixture.members(box.canary), fixture.zstd)
      await expectRefused(box, archive, fixture.entry(box.canary), fixture.reason)
    })
  }

  it('the constructs tar-stream missed are real: GNU tar reads members it never saw', async () => {
    for (const fixture of HOSTILE_FIXTURES.filter((f) => f.missedByTarStream)) {
      const box = await sandbox()
      const tar = fixtureTar(fixture, box.canary)
      const reference = await tarStreamVerdict(tar)
      expect(reference.verdict, fixture.title).toBeUndefined()
      expect(reference.names, fixture.title).not.toContain('./l/evil')
      const listed = spawnSync('tar', ['-xv', '-C', box.target], { input: tar }).stdout
      expect(String(listed).split('\n'), fixture.title).toContain('./l/evil')
    }
  })

  it('refuses a truncated archive before extracting anything', async () => {
    const box = await sandbox()
    const good = rawTar([{ name: './big', type: '0', body: Buffer.alloc(100_000, 1) }])
    const zst = spawnSync('zstd', ['-q', '-c'], { input: good }).stdout
    const archive = join(box.dir, 'cut.tar.zst')
    await writeFile(archive, zst.subarray(0, zst.length - 20))
    const error = await extractArchive({ archive, target: box.target }).catch((e: unknown) => e)
    expect(isImageSwarmError(error) && error.code).toBe('E_ARCHIVE_UNSAFE')
    expect(String((error as Error).message)).toMatch(/cannot be read/)
    expect(await readdir(box.target)).toEqual([])
  })
})
