import { execFileSync } from 'node:child_process'
import { chmod, mkdir, readFile, readlink, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { resolveTool } from '../src/archive/tools.js'
import {
  checkArchiveTools,
  detectCompression,
  extractArchive,
  isImageSwarmError,
  listArchive,
  packArchive,
} from '../src/index.js'
import { hasCommand, isRoot } from '../src/testing/system-tools.js'
import { captureLogger, WARN } from './helpers/capture-logger.js'
import { errorOf } from './helpers/error-of.js'
import { makeTempDir } from './helpers/temp-dir.js'

function expectToolMissing(error: unknown, tool: string, pkg: string): void {
  expect(isImageSwarmError(error), String(error)).toBe(true)
  if (!isImageSwarmError(error)) return
  expect(error.code).toBe('E_TOOL_MISSING')
  expect(error.message).toContain(tool)
  expect(error.hint).toContain(`apt-get install ${pkg}`)
}

describe('checkArchiveTools', { timeout: 60_000 }, () => {
  it('accepts the GNU tar, zstd and gzip installed here', async () => {
    await checkArchiveTools('zstd')
    await checkArchiveTools('gzip')
    await checkArchiveTools('none')
  })

  it('names zstd and its Debian package when zstd is missing (options.tools)', async () => {
    const error = await errorOf(checkArchiveTools('zstd', { tools: { zstd: '/nonexistent/zstd' } }))
    expectToolMissing(error, 'zstd', 'zstd')
  })

  it('honours IMAGESWARM_GZIP and PATH', async () => {
    const error = await errorOf(
      checkArchiveTools('gzip', {
        env: { IMAGESWARM_GZIP: 'no-such-gzip', PATH: '/usr/bin:/bin' },
      }),
    )
    expectToolMissing(error, 'gzip', 'gzip')
    const noTar = await errorOf(checkArchiveTools('none', { env: { PATH: '/nonexistent' } }))
    expectToolMissing(noTar, 'tar', 'tar')
    expect(await resolveTool('tar', { env: { PATH: '/nonexistent:/usr/bin:/bin' } })).toMatch(
      /\/tar$/,
    )
  })

  it('refuses a tar that is not GNU tar, or too old', async () => {
    const dir = await makeTempDir()
    const bsdtar = join(dir, 'bsdtar')
    await writeFile(bsdtar, '#!/bin/sh\necho "bsdtar 3.6.2 - libarchive 3.6.2"\n')
    const oldtar = join(dir, 'oldtar')
    await writeFile(oldtar, '#!/bin/sh\necho "tar (GNU tar) 1.26"\n')
    await chmod(bsdtar, 0o755)
    await chmod(oldtar, 0o755)
    expectToolMissing(
      await errorOf(checkArchiveTools('none', { tools: { tar: bsdtar } })),
      'GNU tar',
      'tar',
    )
    expectToolMissing(
      await errorOf(checkArchiveTools('none', { tools: { tar: oldtar } })),
      '1.26',
      'tar',
    )
  })

  it('makes packArchive and extractArchive fail with E_TOOL_MISSING', async () => {
    const dir = await makeTempDir()
    await mkdir(join(dir, 'root'))
    const tools = { zstd: join(dir, 'missing-zstd') }
    const packError = await errorOf(
      packArchive({ root: join(dir, 'root'), output: join(dir, 'x'), compression: 'zstd', tools }),
    )
    expectToolMissing(packError, 'zstd', 'zstd')
    const archive = join(dir, 'x.tar.zst')
    await packArchive({ root: join(dir, 'root'), output: archive, compression: 'zstd' })
    const extractError = await errorOf(extractArchive({ archive, target: dir, tools }))
    expectToolMissing(extractError, 'zstd', 'zstd')
  })

  it.skipIf(!isRoot)('packs without unshare, saying the bytes may vary', async () => {
    const dir = await makeTempDir()
    await mkdir(join(dir, 'root'))
    const { logger, lines } = captureLogger()
    const result = await packArchive({
      root: join(dir, 'root'),
      output: join(dir, 'x.tar.zst'),
      compression: 'zstd',
      tools: { unshare: join(dir, 'no-unshare') },
      logger,
    })
    expect(result.deterministic).toBe(false)
    const warning = lines.find((line) => line.level === WARN && /util-linux/.test(line.msg))
    expect(warning?.msg).toMatch(/different bytes/)
  })
})

describe('detectCompression', { timeout: 60_000 }, () => {
  it('recognises zstd, gzip and plain tar by their magic bytes', async () => {
    const dir = await makeTempDir()
    await mkdir(join(dir, 'root'))
    for (const compression of ['zstd', 'gzip', 'none'] as const) {
      const output = join(dir, `x-${compression}.bin`)
      await packArchive({ root: join(dir, 'root'), output, compression })
      expect(await detectCompression(output)).toBe(compression)
    }
  })

  it('refuses anything else with a clear error', async () => {
    const dir = await makeTempDir()
    const path = join(dir, 'image.tar.zst')
    await writeFile(path, '<html>404 not found</html>')
    const error = await errorOf(detectCompression(path))
    expect(isImageSwarmError(error) && error.code).toBe('E_ARCHIVE_UNSAFE')
    expect(String((error as Error).message)).toMatch(/not a tar.*first bytes: 3c 68 74 6d/)
    const empty = join(dir, 'empty')
    await writeFile(empty, '')
    expect(String(await errorOf(detectCompression(empty)))).toMatch(/empty file/)
  })
})

describe('archives made by plain GNU tar', { timeout: 60_000 }, () => {
  it.skipIf(!hasCommand('gzip'))('extracts a `tar -czf` (gnu format) archive', async () => {
    const dir = await makeTempDir()
    const src = join(dir, 'src')
    await mkdir(join(src, 'etc'), { recursive: true })
    await writeFile(join(src, 'etc', 'n'.repeat(180)), 'long gnu name\n')
    await symlink('/usr/bin/vim', join(src, 'etc/editor'))
    const archive = join(dir, 'plain.tar.gz')
    execFileSync('tar', ['-czf', archive, '-C', src, '.'])
    const target = join(dir, 'target')
    await mkdir(target)
    const { entries } = await extractArchive({ archive, target })
    expect(entries).toBe(4)
    expect(await readFile(join(target, 'etc', 'n'.repeat(180)), 'utf8')).toBe('long gnu name\n')
    expect(await readlink(join(target, 'etc/editor'))).toBe('/usr/bin/vim')
  })

  it('lists an archive with types, owners and nanosecond-free mtimes', async () => {
    const dir = await makeTempDir()
    const src = join(dir, 'src')
    await mkdir(src)
    await writeFile(join(src, 'f'), 'abc')
    await symlink('f', join(src, 'l'))
    const archive = join(dir, 'x.tar')
    execFileSync('tar', ['--format=ustar', '-cf', archive, '-C', src, '.'])
    const entries = []
    for await (const entry of listArchive(archive)) entries.push(entry)
    expect(entries.map((e) => [e.path, e.type, e.size, e.linkname])).toEqual(
      [
        ['./', 'directory', 0, undefined],
        ['./f', 'file', 3, undefined],
        ['./l', 'symlink', 0, 'f'],
      ].sort((a, b) => String(a[0]).localeCompare(String(b[0]))),
    )
  })
})
