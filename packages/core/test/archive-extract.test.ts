import { mkdir, readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { extractArchive, isImageSwarmError, packArchive } from '../src/index.js'
import { run } from '../src/testing/system-tools.js'
import { captureLogger, WARN } from './helpers/capture-logger.js'
import { errorOf } from './helpers/error-of.js'
import { makeTempDir } from './helpers/temp-dir.js'

describe('extractArchive', { timeout: 60_000 }, () => {
  it('logs tar warnings (timestamps before 1970 and in the future) and succeeds', async () => {
    const dir = await makeTempDir()
    const root = join(dir, 'root')
    await mkdir(root)
    await writeFile(join(root, 'old'), 'x')
    await writeFile(join(root, 'future'), 'y')
    await run('touch', ['-d', '@-100000', join(root, 'old')])
    await run('touch', ['-d', '@4102444800', join(root, 'future')])
    const archive = join(dir, 'x.tar.zst')
    await packArchive({ root, output: archive, compression: 'zstd' })
    const target = join(dir, 'target')
    await mkdir(target)
    const { logger, lines } = captureLogger()
    await extractArchive({ archive, target, logger })
    const warnings = lines.filter((line) => line.level === WARN).map((line) => String(line.tar))
    expect(warnings.some((w) => /implausibly old time stamp/.test(w))).toBe(true)
    expect(warnings.some((w) => /in the future/.test(w))).toBe(true)
  })

  it('fails with E_EXTRACT_FAILED carrying tar’s message when tar cannot write', async () => {
    const dir = await makeTempDir()
    const root = join(dir, 'root')
    await mkdir(root)
    await writeFile(join(root, 'etc'), 'a file in the image')
    const archive = join(dir, 'x.tar.zst')
    await packArchive({ root, output: archive, compression: 'zstd' })
    const target = join(dir, 'target')
    await mkdir(join(target, 'etc'), { recursive: true })
    // A non-empty directory where the archive has a file: tar will not remove it.
    await writeFile(join(target, 'etc/keep'), 'x')
    const error = await errorOf(extractArchive({ archive, target }))
    expect(isImageSwarmError(error) && error.code).toBe('E_EXTRACT_FAILED')
    expect(String((error as Error).message)).toMatch(
      /tar failed .*exit 2.*\.\/etc: Cannot open: File exists/s,
    )
  })

  it('fails with E_TARGET_NOT_WRITABLE when the target is missing', async () => {
    const dir = await makeTempDir()
    await mkdir(join(dir, 'root'))
    const archive = join(dir, 'x.tar.zst')
    await packArchive({ root: join(dir, 'root'), output: archive, compression: 'zstd' })
    const error = await errorOf(extractArchive({ archive, target: join(dir, 'nope') }))
    expect(isImageSwarmError(error) && error.code).toBe('E_TARGET_NOT_WRITABLE')
  })

  it('stops on abort: E_INTERRUPTED, and a pack leaves no partial file', async () => {
    const dir = await makeTempDir()
    const root = join(dir, 'root')
    await mkdir(root)
    await writeFile(join(root, 'big'), Buffer.alloc(256 << 20, 3))
    const out = join(dir, 'out')
    await mkdir(out)
    const controller = new AbortController()
    setTimeout(() => controller.abort(new Error('test abort')), 100)
    const error = await errorOf(
      packArchive({
        root,
        output: join(out, 'x.tar.zst'),
        compression: 'zstd',
        level: 19,
        signal: controller.signal,
      }),
    )
    expect(isImageSwarmError(error) && error.code).toBe('E_INTERRUPTED')
    expect(await readdir(out)).toEqual([])
  }, 30_000)
})
