import { mkdir, readFile, readlink, stat, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { checkArchiveTools, detectCompression, extractArchive, packArchive } from '../src/index.js'
import { makeTempDir } from './helpers/temp-dir.js'

describe('packArchive + extractArchive (zstd)', { timeout: 60_000 }, () => {
  it('round-trips a small tree', async () => {
    const dir = await makeTempDir()
    const root = join(dir, 'root')
    await mkdir(join(root, 'etc'), { recursive: true })
    await writeFile(join(root, 'etc', 'hostname'), 'node1\n')
    await writeFile(join(root, 'run.sh'), '#!/bin/sh\n', { mode: 0o755 })
    await symlink('etc/hostname', join(root, 'link'))
    await checkArchiveTools('zstd')
    const output = join(dir, 'image.tar.zst')
    const packed = await packArchive({ root, output, compression: 'zstd' })
    expect(packed.size).toBe((await stat(output)).size)
    expect(packed.sha256).toMatch(/^[0-9a-f]{64}$/)
    expect(await detectCompression(output)).toBe('zstd')

    const target = join(dir, 'target')
    await mkdir(target)
    const progress: number[] = []
    const result = await extractArchive({
      archive: output,
      target,
      onProgress: (bytes) => progress.push(bytes),
    })
    expect(result.entries).toBe(5)
    expect(progress.at(-1)).toBe(packed.size)
    expect(await readFile(join(target, 'etc', 'hostname'), 'utf8')).toBe('node1\n')
    expect((await stat(join(target, 'run.sh'))).mode & 0o7777).toBe(0o755)
    expect(await readlink(join(target, 'link'))).toBe('etc/hostname')
  })
})
