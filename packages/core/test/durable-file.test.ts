import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { writeFileAtomically } from '../src/index.js'
import { errorOf } from './helpers/error-of.js'
import { makeTempDir } from './helpers/temp-dir.js'

describe('writeFileAtomically', () => {
  it('replaces the file whole and leaves no temporary file beside it', async () => {
    const dir = await makeTempDir()
    const path = join(dir, 'demo.json')
    await writeFile(path, 'old\n')
    await writeFileAtomically(path, '{"new":true}\n')
    expect(await readFile(path, 'utf8')).toBe('{"new":true}\n')
    await writeFileAtomically(join(dir, 'demo.torrent'), new Uint8Array([100, 101]))
    expect(await readdir(dir)).toEqual(['demo.json', 'demo.torrent'])
  })

  it('fails without touching the old file when the new one cannot take its place', async () => {
    const dir = await makeTempDir()
    // A directory in the way: the rename fails after the temporary file was written.
    const path = join(dir, 'in-the-way')
    await writeFile(join(dir, 'keep'), 'kept\n')
    await mkdir(join(path, 'child'), { recursive: true })
    const error = await errorOf(writeFileAtomically(path, 'x'))
    expect((error as NodeJS.ErrnoException).code).toMatch(/EISDIR|ENOTEMPTY|EEXIST/)
    expect((await readdir(dir)).sort()).toEqual(['in-the-way', 'keep'])
  })
})
