import { spawnSync } from 'node:child_process'
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { extractArchive, isImageSwarmError, validateArchive } from '../src/index.js'
import { errorOf } from './helpers/error-of.js'
import { fixtureTar, HOSTILE_FIXTURES } from './helpers/hostile-fixtures.js'
import { type RawMember, rawTar, zstd } from './helpers/raw-tar.js'
import { tarStreamVerdict } from './helpers/tar-stream-reference.js'
import { makeSandbox, type Sandbox } from './helpers/temp-dir.js'

async function writeArchive(box: Sandbox, members: RawMember[], compress = false): Promise<string> {
  const tar = rawTar(members)
  const path = join(box.dir, compress ? 'hostile.tar.zst' : 'hostile.tar')
  await writeFile(path, compress ? zstd(tar) : tar)
  return path
}

/** Extraction must fail with E_ARCHIVE_UNSAFE naming `entry`, and write nothing anywhere. */
async function expectRefused(box: Sandbox, archive: string, entry: string, reason: RegExp) {
  const error = await errorOf(extractArchive({ archive, target: box.target }))
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
    const box = await makeSandbox()
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
      const box = await makeSandbox()
      const archive = await writeArchive(box, fixture.members(box.canary), fixture.zstd)
      await expectRefused(box, archive, fixture.entry(box.canary), fixture.reason)
    })
  }

  it('the constructs tar-stream missed are real: GNU tar reads members it never saw', async () => {
    for (const fixture of HOSTILE_FIXTURES.filter((f) => f.missedByTarStream)) {
      const box = await makeSandbox()
      const tar = fixtureTar(fixture, box.canary)
      const reference = await tarStreamVerdict(tar)
      expect(reference.verdict, fixture.title).toBeUndefined()
      expect(reference.names, fixture.title).not.toContain('./l/evil')
      const listed = spawnSync('tar', ['-xv', '-C', box.target], { input: tar }).stdout
      expect(String(listed).split('\n'), fixture.title).toContain('./l/evil')
    }
  })

  it('refuses a truncated archive before extracting anything into a non-empty target', async () => {
    // (Into an empty target, see archive-gated-extract: tar starts, and is undone.)
    const box = await makeSandbox()
    await writeFile(join(box.target, 'keep'), 'x')
    const good = rawTar([{ name: './big', type: '0', body: Buffer.alloc(100_000, 1) }])
    const zst = zstd(good)
    const archive = join(box.dir, 'cut.tar.zst')
    await writeFile(archive, zst.subarray(0, zst.length - 20))
    const error = await errorOf(extractArchive({ archive, target: box.target }))
    expect(isImageSwarmError(error) && error.code).toBe('E_ARCHIVE_UNSAFE')
    expect(String((error as Error).message)).toMatch(/cannot be read/)
    expect(await readdir(box.target)).toEqual(['keep'])
  })
})
