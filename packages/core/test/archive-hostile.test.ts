import { spawnSync } from 'node:child_process'
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { extractArchive, isImageSwarmError, validateArchive } from '../src/index.js'
import { paxBody, type RawMember, rawTar } from './helpers/raw-tar.js'
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

  it('refuses an absolute path', async () => {
    const box = await sandbox()
    const name = `${box.canary}/absolute`
    const archive = await writeArchive(box, [{ name, type: '0', body: 'x' }])
    await expectRefused(box, archive, name, /absolute path/)
  })

  it("refuses a path with '..'", async () => {
    const box = await sandbox()
    const archive = await writeArchive(box, [
      { name: './ok', type: '0', body: 'fine' },
      { name: '../canary/x', type: '0', body: 'x' },
    ])
    await expectRefused(box, archive, '../canary/x', /'\.\.' component/)
  })

  it('refuses a file written through a symlink from the same archive', async () => {
    const box = await sandbox()
    const archive = await writeArchive(box, [
      { name: './link', type: '2', linkname: box.canary },
      { name: './link/evil', type: '0', body: 'x' },
    ])
    await expectRefused(box, archive, './link/evil', /through the symlink '\.\/link'/)
  })

  it('refuses a path through a nested or relative symlink', async () => {
    const box = await sandbox()
    const archive = await writeArchive(box, [
      { name: 'a/', type: '5' },
      { name: 'a/up', type: '2', linkname: '../../canary' },
      { name: 'a//./up/evil', type: '0', body: 'x' },
    ])
    await expectRefused(box, archive, 'a//./up/evil', /through the symlink '\.\/a\/up'/)
  })

  it('refuses a hardlink to /etc/passwd', async () => {
    const box = await sandbox()
    const archive = await writeArchive(box, [
      { name: './passwd', type: '1', linkname: '/etc/passwd' },
    ])
    await expectRefused(box, archive, './passwd', /absolute hardlink target/)
  })

  it("refuses a hardlink to '../x'", async () => {
    const box = await sandbox()
    const archive = await writeArchive(box, [{ name: './x', type: '1', linkname: '../x' }])
    await expectRefused(box, archive, './x', /'\.\.' component in hardlink target/)
  })

  it('refuses a hardlink to a member that comes later or never', async () => {
    const box = await sandbox()
    const archive = await writeArchive(box, [
      { name: './early', type: '1', linkname: './late' },
      { name: './late', type: '0', body: 'x' },
    ])
    await expectRefused(box, archive, './early', /not an earlier member/)
  })

  it('refuses a path through a hardlink of a symlink', async () => {
    const box = await sandbox()
    const archive = await writeArchive(box, [
      { name: './s', type: '2', linkname: box.canary },
      { name: './h', type: '1', linkname: './s' },
      { name: './h/evil', type: '0', body: 'x' },
    ])
    await expectRefused(box, archive, './h/evil', /through the symlink '\.\/h'/)
  })

  it('judges a member by its pax path, not the ustar name it overrides', async () => {
    const box = await sandbox()
    const archive = await writeArchive(box, [
      { name: './harmless', type: '0', body: 'x', pax: { path: '../canary/pax' } },
    ])
    await expectRefused(box, archive, '../canary/pax', /'\.\.' component/)
  })

  it('judges a hardlink by its pax linkpath', async () => {
    const box = await sandbox()
    const archive = await writeArchive(box, [
      { name: './l', type: '1', linkname: './l', pax: { linkpath: '/etc/shadow' } },
    ])
    await expectRefused(box, archive, './l', /absolute hardlink target/)
  })

  it('judges a sparse member by its GNU.sparse.name', async () => {
    const box = await sandbox()
    const archive = await writeArchive(box, [
      {
        name: './GNUSparseFile.1/evil',
        type: '0',
        body: '',
        pax: {
          'GNU.sparse.major': '1',
          'GNU.sparse.minor': '0',
          'GNU.sparse.name': '../canary/sparse',
          'GNU.sparse.realsize': '0',
        },
      },
    ])
    await expectRefused(box, archive, './GNUSparseFile.1/evil', /'\.\.' component/)
  })

  it('refuses a pax global header that renames members', async () => {
    const box = await sandbox()
    const archive = await writeArchive(box, [
      { name: 'pax_global_header', type: 'g', body: paxBody({ path: '../canary/g' }) },
      { name: './a', type: '0', body: 'x' },
    ])
    await expectRefused(box, archive, './a', /pax global header that sets 'path'/)
  })

  it('refuses a hardlink with data, which GNU tar would not skip (a hidden header)', async () => {
    const box = await sandbox()
    // GNU tar reads the "data" of ./h as the next header (./link/evil); a parser that skips
    // it would never see that member.
    const hidden = rawTar([{ name: './link/evil', type: '0', body: '' }]).subarray(0, 512)
    const archive = await writeArchive(box, [
      { name: './f', type: '0', body: '' },
      { name: './link', type: '2', linkname: box.canary },
      { name: './h', type: '1', linkname: './f', body: hidden },
    ])
    await expectRefused(box, archive, './h', /is a link with 512 bytes of data/)
  })

  it('refuses a directory or symlink with data', async () => {
    const box = await sandbox()
    const archive = await writeArchive(box, [{ name: './d/', type: '5', body: 'x'.repeat(600) }])
    await expectRefused(box, archive, './d/', /is a directory with 600 bytes of data/)
  })

  it('refuses a NUL byte in a pax path, which GNU tar would cut short', async () => {
    const box = await sandbox()
    const archive = await writeArchive(box, [
      { name: './x', type: '2', linkname: '/', pax: { path: './s\u0000-hidden' } },
    ])
    await expectRefused(box, archive, './s\\x00-hidden', /NUL byte/)
  })

  it('refuses member types it does not know (old GNU sparse, volume labels)', async () => {
    const box = await sandbox()
    const archive = await writeArchive(box, [{ name: './old-sparse', type: 'S', body: 'x' }])
    await expectRefused(box, archive, './old-sparse', /unsupported member type/)
  })

  it('refuses a hostile member inside a zstd archive', async () => {
    const box = await sandbox()
    const archive = await writeArchive(
      box,
      [
        { name: './link', type: '2', linkname: '/' },
        { name: './link/etc/cron.d/evil', type: '0', body: 'x' },
      ],
      true,
    )
    await expectRefused(box, archive, './link/etc/cron.d/evil', /through the symlink/)
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
