import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import {
  type ArchiveBinding,
  createDecryptStream,
  ENCRYPTED_HEADER_BYTES,
  ENCRYPTION_CHUNK_BYTES,
  encryptFile,
  extractArchive,
  generateArchiveKey,
  isImageSwarmError,
  validateArchive,
} from '../src/index.js'
import { errorOf } from './helpers/error-of.js'
import { type RawMember, rawTar, zstd } from './helpers/raw-tar.js'
import { makeSandbox } from './helpers/temp-dir.js'

const binding: ArchiveBinding = { image: 'demo', serial: 3 }

/** Members whose data does not compress, so the archive spans many 64 KiB chunks. */
function members(): RawMember[] {
  const list: RawMember[] = [
    { name: './', type: '5' },
    { name: './etc/', type: '5' },
  ]
  for (let i = 0; i < 6; i++) {
    const body = Buffer.alloc(200_000)
    for (let j = 0; j + 4 <= body.length; j += 4)
      body.writeUInt32LE((i * 2654435761 + j * 40503) >>> 0, j)
    list.push({ name: `./etc/f${i}`, type: '0', body })
  }
  list.push({ name: './etc/marker', type: '0', body: 'the marker\n' })
  return list
}

async function encrypted(dir: string, compression: 'zstd' | 'none') {
  const tar = rawTar(members())
  const plain = join(dir, `image.${compression}`)
  await writeFile(plain, compression === 'zstd' ? zstd(tar) : tar)
  const key = generateArchiveKey()
  const sealed = `${plain}.enc`
  await encryptFile(plain, sealed, key, binding)
  return { sealed, key, decrypt: () => createDecryptStream(key, binding, sealed) }
}

/** Flips one byte in chunk `chunk` of an encrypted archive. */
async function tamper(path: string, chunk: number): Promise<void> {
  const bytes = await readFile(path)
  bytes[ENCRYPTED_HEADER_BYTES + chunk * (ENCRYPTION_CHUNK_BYTES + 16) + 100]! ^= 0x01
  await writeFile(path, bytes)
}

describe('extracting an encrypted archive', () => {
  for (const compression of ['zstd', 'none'] as const) {
    it(`decrypts a ${compression} archive on its way to tar, in one gated pass`, async () => {
      const box = await makeSandbox()
      const { sealed, decrypt } = await encrypted(box.dir, compression)
      const result = await extractArchive({
        archive: sealed,
        target: box.target,
        compression,
        decrypt,
      })
      expect(result.validation).toBe('while-extracting')
      expect(await readFile(join(box.target, 'etc', 'marker'), 'utf8')).toBe('the marker\n')
    })

    it(`stops at a tampered chunk of a ${compression} archive and leaves the target empty`, async () => {
      const box = await makeSandbox()
      const { sealed, decrypt } = await encrypted(box.dir, compression)
      await tamper(sealed, 5)
      const error = await errorOf(
        extractArchive({ archive: sealed, target: box.target, compression, decrypt }),
      )
      expect(isImageSwarmError(error) && error.code).toBe('E_DECRYPT_FAILED')
      expect(await readdir(box.target)).toEqual([])
    })
  }

  it('validates before extracting into a target that is not empty, decrypting both passes', async () => {
    const box = await makeSandbox()
    const { sealed, decrypt } = await encrypted(box.dir, 'zstd')
    await mkdir(join(box.target, 'tmp'))
    const result = await extractArchive({
      archive: sealed,
      target: box.target,
      compression: 'zstd',
      decrypt,
    })
    expect(result.validation).toBe('before-extracting')
    expect(await readFile(join(box.target, 'etc', 'marker'), 'utf8')).toBe('the marker\n')
  })

  it('refuses a tampered chunk in validation, before tar writes anything', async () => {
    const box = await makeSandbox()
    const { sealed, decrypt } = await encrypted(box.dir, 'zstd')
    await tamper(sealed, 2)
    const error = await errorOf(validateArchive(sealed, 'zstd', { decrypt }))
    expect(isImageSwarmError(error) && error.code).toBe('E_DECRYPT_FAILED')
  })
})
