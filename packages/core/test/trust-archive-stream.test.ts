import { createHash, randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable, type Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { describe, expect, it } from 'vitest'
import {
  type ArchiveBinding,
  archiveKeyFromBytes,
  createDecryptStream,
  createEncryptStream,
  decryptFile,
  ENCRYPTED_HEADER_BYTES,
  ENCRYPTION_CHUNK_BYTES,
  ENCRYPTION_TAG_BYTES,
  encodeGroupKeyFile,
  encryptedSize,
  encryptFile,
  generateArchiveKey,
  generateGroupKey,
  isImageSwarmError,
  parseGroupKeyFile,
  plaintextSizeOf,
  unwrapArchiveKey,
  wrapArchiveKey,
} from '../src/index.js'
import { errorOf } from './helpers/error-of.js'
import { makeTempDir } from './helpers/temp-dir.js'
import { thrownBy } from './helpers/thrown-by.js'

const CHUNK = ENCRYPTION_CHUNK_BYTES
const SEALED = CHUNK + ENCRYPTION_TAG_BYTES
const binding: ArchiveBinding = { image: 'compute', serial: 7 }

function* pieces(data: Buffer, size: number): Generator<Buffer> {
  for (let offset = 0; offset < data.length; offset += size) {
    yield data.subarray(offset, offset + size)
  }
}

/**
 * Streams `input` through `transform` in pieces: what a consumer received (`output`), every
 * byte the transform emitted (`pushed`: a stream that fails may drop what it emitted last,
 * so "nothing of a bad chunk is emitted" is checked on this), and the error if it failed.
 */
async function run(
  transform: Transform,
  input: Buffer,
  pieceSize = 10_007,
): Promise<{ output: Buffer; pushed: Buffer; error: unknown }> {
  const parts: Buffer[] = []
  const pushedParts: Buffer[] = []
  const push = transform.push.bind(transform)
  transform.push = (chunk: unknown, encoding?: BufferEncoding) => {
    if (Buffer.isBuffer(chunk)) pushedParts.push(Buffer.from(chunk))
    return push(chunk, encoding)
  }
  let error: unknown
  try {
    await pipeline(Readable.from(pieces(input, pieceSize)), transform, async (source) => {
      for await (const part of source) parts.push(part as Buffer)
    })
  } catch (err) {
    error = err
  }
  return { output: Buffer.concat(parts), pushed: Buffer.concat(pushedParts), error }
}

async function encrypt(key = generateArchiveKey(), plaintext: Buffer, bound = binding) {
  const { output, error } = await run(createEncryptStream(key, bound), plaintext)
  expect(error).toBeUndefined()
  return output
}

function expectDecryptFailure(error: unknown, text: string): void {
  expect(isImageSwarmError(error), String(error)).toBe(true)
  if (!isImageSwarmError(error)) return
  expect(error.code).toBe('E_DECRYPT_FAILED')
  expect(error.exitCode).toBe(23)
  expect(error.message).toContain(text)
  expect(error.hint).toBeTruthy()
}

/**
 * What a decryption emitted before it failed at chunk `failedChunk`: exactly the chunks
 * before it, each authenticated, and not a byte of the bad one; its consumer received a
 * prefix of that (a failing stream may drop what it emitted last).
 */
function expectAuthenticPrefix(
  result: { output: Buffer; pushed: Buffer },
  plaintext: Buffer,
  failedChunk: number,
): void {
  expect(result.pushed.length).toBe(failedChunk * CHUNK)
  expect(result.pushed.equals(plaintext.subarray(0, failedChunk * CHUNK))).toBe(true)
  expect(result.output.length).toBeLessThanOrEqual(result.pushed.length)
  expect(result.output.equals(plaintext.subarray(0, result.output.length))).toBe(true)
}

/** Offset of sealed chunk `index` in the ciphertext. */
const chunkAt = (index: number) => ENCRYPTED_HEADER_BYTES + index * SEALED

describe('encrypted archive stream', { timeout: 60_000 }, () => {
  it('round-trips at every size around the chunk boundaries, whatever the write sizes', async () => {
    const key = generateArchiveKey()
    const sizes = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 12_345]
    for (const size of sizes) {
      const plaintext = randomBytes(size)
      for (const pieceSize of [1 << 20, 4_099]) {
        const { output: ciphertext } = await run(
          createEncryptStream(key, binding),
          plaintext,
          pieceSize,
        )
        expect(ciphertext.length, `size ${size}`).toBe(encryptedSize(size))
        expect(plaintextSizeOf(ciphertext.length)).toBe(size)
        const { output, error } = await run(
          createDecryptStream(key, binding, 'a'),
          ciphertext,
          pieceSize,
        )
        expect(error).toBeUndefined()
        expect(output.equals(plaintext), `size ${size} in pieces of ${pieceSize}`).toBe(true)
      }
    }
  })

  it('has a size fixed by the plaintext size alone, at most 0.1 % more, and no plaintext showing', async () => {
    const marker = Buffer.from('MARKER-root:$6$secret-password-hash$')
    const plaintext = Buffer.concat(Array.from({ length: 4000 }, () => marker))
    const a = await encrypt(generateArchiveKey(), plaintext)
    const b = await encrypt(generateArchiveKey(), plaintext)
    expect(a.length).toBe(b.length)
    expect(a.equals(b)).toBe(false)
    expect(a.includes(marker.subarray(0, 12))).toBe(false)
    for (const size of [64 << 20, 1 << 30, 10 * 2 ** 30]) {
      expect((encryptedSize(size) - size) / size).toBeLessThan(0.001)
    }
    expect(encryptedSize(1 << 30)).toBe((1 << 30) + 16_384 * 16 + ENCRYPTED_HEADER_BYTES)
    expect(plaintextSizeOf(ENCRYPTED_HEADER_BYTES + 5)).toBeUndefined()
    expect(plaintextSizeOf(encryptedSize(CHUNK) + 3)).toBeUndefined()
  })

  it('refuses a tampered chunk before emitting any of it; the chunks before it came out whole', async () => {
    const key = generateArchiveKey()
    const plaintext = randomBytes(5 * CHUNK + 100)
    const ciphertext = await encrypt(key, plaintext)
    const tampered = Buffer.from(ciphertext)
    tampered[chunkAt(3) + 500]! ^= 0x01
    const tamperedRun = await run(
      createDecryptStream(key, binding, 'image-compute.tar.zst.enc'),
      tampered,
    )
    const { error } = tamperedRun
    expectDecryptFailure(
      error,
      `chunk 3 (bytes ${chunkAt(3)}–${chunkAt(4) - 1}) failed authentication`,
    )
    expectAuthenticPrefix(tamperedRun, plaintext, 3)

    // A flipped tag byte is the same.
    const badTag = Buffer.from(ciphertext)
    badTag[chunkAt(1) - 1]! ^= 0x80
    const second = await run(createDecryptStream(key, binding, 'x'), badTag)
    expectDecryptFailure(second.error, 'chunk 0')
    expectAuthenticPrefix(second, ciphertext, 0)
  })

  it('refuses reordered chunks, and a chunk from another archive under the same key', async () => {
    const key = generateArchiveKey()
    const plaintext = randomBytes(4 * CHUNK)
    const ciphertext = await encrypt(key, plaintext)
    const swapped = Buffer.from(ciphertext)
    ciphertext.copy(swapped, chunkAt(1), chunkAt(2), chunkAt(3))
    ciphertext.copy(swapped, chunkAt(2), chunkAt(1), chunkAt(2))
    const reordered = await run(createDecryptStream(key, binding, 'x'), swapped)
    expectDecryptFailure(reordered.error, 'chunk 1')
    expectAuthenticPrefix(reordered, plaintext, 1)

    const other = await encrypt(key, plaintext)
    const spliced = Buffer.from(ciphertext)
    other.copy(spliced, chunkAt(2), chunkAt(2), chunkAt(3))
    expectDecryptFailure(
      (await run(createDecryptStream(key, binding, 'x'), spliced)).error,
      'chunk 2',
    )
  })

  it('refuses a stream cut at a chunk boundary, inside a chunk, inside the header', async () => {
    const key = generateArchiveKey()
    const plaintext = randomBytes(3 * CHUNK + 10)
    const ciphertext = await encrypt(key, plaintext)
    const atBoundary = await run(
      createDecryptStream(key, binding, 'x'),
      ciphertext.subarray(0, chunkAt(3)),
    )
    expectDecryptFailure(atBoundary.error, 'ends after chunk 2')
    expectDecryptFailure(atBoundary.error, 'cut short')
    expectAuthenticPrefix(atBoundary, plaintext, 2)

    const inside = await run(
      createDecryptStream(key, binding, 'x'),
      ciphertext.subarray(0, chunkAt(3) + 8),
    )
    expectDecryptFailure(inside.error, 'ends inside chunk 3')
    const halfChunk = await run(
      createDecryptStream(key, binding, 'x'),
      ciphertext.subarray(0, chunkAt(1) + 1000),
    )
    expectDecryptFailure(halfChunk.error, 'chunk 1')
    expectAuthenticPrefix(halfChunk, plaintext, 1)
    const header = await run(createDecryptStream(key, binding, 'x'), ciphertext.subarray(0, 20))
    expectDecryptFailure(header.error, 'inside its 27-byte header')
    const nothing = await run(
      createDecryptStream(key, binding, 'x'),
      ciphertext.subarray(0, ENCRYPTED_HEADER_BYTES),
    )
    expectDecryptFailure(nothing.error, 'ends inside chunk 0')
  })

  it('refuses a stream with bytes appended after its last chunk', async () => {
    const key = generateArchiveKey()
    const plaintext = randomBytes(2 * CHUNK)
    const ciphertext = await encrypt(key, plaintext)
    for (const extra of [Buffer.alloc(16), ciphertext.subarray(chunkAt(0), chunkAt(1))]) {
      const extended = await run(
        createDecryptStream(key, binding, 'x'),
        Buffer.concat([ciphertext, extra]),
      )
      const { error } = extended
      expectDecryptFailure(error, 'goes on after chunk 1')
      expectDecryptFailure(error, 'its last chunk: bytes were appended')
      expectAuthenticPrefix(extended, plaintext, 1)
    }
  })

  it('binds every chunk to the image name, the serial and the header', async () => {
    const key = generateArchiveKey()
    const ciphertext = await encrypt(key, randomBytes(CHUNK + 5))
    for (const other of [
      { image: 'login', serial: 7 },
      { image: 'compute', serial: 6 },
    ]) {
      const bound = await run(createDecryptStream(key, other, 'x'), ciphertext)
      expectDecryptFailure(bound.error, 'chunk 0')
      expect(bound.pushed.length).toBe(0)
    }
    const header = Buffer.from(ciphertext)
    header[15]! ^= 0x01 // a nonce prefix byte
    expectDecryptFailure(
      (await run(createDecryptStream(key, binding, 'x'), header)).error,
      'chunk 0',
    )
    const chunkSize = Buffer.from(ciphertext)
    chunkSize.writeUInt32BE(1 << 24, 8)
    expectDecryptFailure(
      (await run(createDecryptStream(key, binding, 'x'), chunkSize)).error,
      'chunk size 16777216',
    )
    const notOurs = Buffer.from(ciphertext)
    notOurs.write('XXXXXX', 0, 'latin1')
    expectDecryptFailure(
      (await run(createDecryptStream(key, binding, 'x'), notOurs)).error,
      'no ISWENC header',
    )
  })

  it('refuses another archive key before decrypting anything', async () => {
    const ciphertext = await encrypt(generateArchiveKey(), randomBytes(1000))
    const wrongKey = generateArchiveKey()
    const { pushed, error } = await run(createDecryptStream(wrongKey, binding, 'x'), ciphertext)
    expectDecryptFailure(error, `not with the manifest's key ${wrongKey.keyId}`)
    expect(pushed.length).toBe(0)
  })

  it('encrypts and decrypts files, reporting sizes and SHA-256; a failed decryption leaves no file', async () => {
    const dir = await makeTempDir('imageswarm-trust-')
    const plaintext = randomBytes(2 * CHUNK + 777)
    await writeFile(join(dir, 'image.tar.zst'), plaintext)
    const key = generateArchiveKey()
    const sealed = await encryptFile(
      join(dir, 'image.tar.zst'),
      join(dir, 'image.enc'),
      key,
      binding,
    )
    const ciphertext = await readFile(join(dir, 'image.enc'))
    expect(sealed).toEqual({
      plaintextSize: plaintext.length,
      plaintextSha256: createHash('sha256').update(plaintext).digest('hex'),
      ciphertextSize: encryptedSize(plaintext.length),
      ciphertextSha256: createHash('sha256').update(ciphertext).digest('hex'),
    })
    const opened = await decryptFile(join(dir, 'image.enc'), join(dir, 'out.tar.zst'), key, binding)
    expect(opened.plaintextSha256).toBe(sealed.plaintextSha256)
    expect((await readFile(join(dir, 'out.tar.zst'))).equals(plaintext)).toBe(true)

    ciphertext[chunkAt(2) + 3]! ^= 0x01
    await writeFile(join(dir, 'tampered.enc'), ciphertext)
    const error = await errorOf(
      decryptFile(join(dir, 'tampered.enc'), join(dir, 'bad.tar.zst'), key, binding),
    )
    expectDecryptFailure(error, 'chunk 2')
    expect(existsSync(join(dir, 'bad.tar.zst'))).toBe(false)
    expect((await readdir(dir)).filter((name) => name.includes('partial'))).toEqual([])
  })
})

describe('archive keys wrapped per node group', () => {
  const archiveKey = generateArchiveKey()
  const compute = generateGroupKey('compute')
  const login = generateGroupKey('login')
  const wrapped = [wrapArchiveKey(archiveKey, compute), wrapArchiveKey(archiveKey, login)]

  it('opens for each group it was wrapped for', () => {
    for (const group of [compute, login]) {
      const key = unwrapArchiveKey(wrapped, archiveKey.keyId, group, 'manifest.json')
      expect(key.key.equals(archiveKey.key)).toBe(true)
      expect(key.keyId).toBe(archiveKey.keyId)
    }
  })

  it('refuses a group it was not wrapped for (another group, a revoked group), and a replaced group key', () => {
    const error = thrownBy(() =>
      unwrapArchiveKey(wrapped, archiveKey.keyId, generateGroupKey('gpu'), 'm'),
    )
    expect(error).toMatchObject({ code: 'E_ARCHIVE_KEY_UNAVAILABLE', exitCode: 23 })
    expect(String((error as Error).message)).toContain(
      'not encrypted for group gpu (it is for: compute, login)',
    )
    const replaced = thrownBy(() =>
      unwrapArchiveKey(wrapped, archiveKey.keyId, generateGroupKey('compute'), 'm'),
    )
    expect(replaced).toMatchObject({ code: 'E_ARCHIVE_KEY_UNAVAILABLE' })
    expect(String((replaced as Error).message)).toContain(`under key ${compute.keyId}`)
  })

  it("refuses a wrapping altered or relabelled for another group, and one holding another archive's key", () => {
    const raw = Buffer.from(wrapped[0]!.wrappedKey, 'base64')
    raw[20]! ^= 1
    const altered = [{ ...wrapped[0]!, wrappedKey: raw.toString('base64') }]
    expect(thrownBy(() => unwrapArchiveKey(altered, archiveKey.keyId, compute, 'm'))).toMatchObject(
      {
        code: 'E_DECRYPT_FAILED',
      },
    )
    // login's wrapping, relabelled as compute's and opened with a key that has compute's id
    // but login's bytes, fails: the group name is bound into the wrapping.
    const relabelled = [{ ...wrapped[1]!, group: 'compute' }]
    const impostor = { ...login, group: 'compute' }
    expect(
      thrownBy(() => unwrapArchiveKey(relabelled, archiveKey.keyId, impostor, 'm')),
    ).toMatchObject({
      code: 'E_DECRYPT_FAILED',
    })
    expect(
      thrownBy(() => unwrapArchiveKey(wrapped, generateArchiveKey().keyId, compute, 'm')),
    ).toMatchObject({
      code: 'E_DECRYPT_FAILED',
    })
  })

  it('round-trips a group key file and refuses a damaged one', () => {
    const text = encodeGroupKeyFile(compute)
    const parsed = parseGroupKeyFile(text, 'compute.key')
    expect(parsed).toEqual(compute)
    expect(archiveKeyFromBytes(archiveKey.key).keyId).toBe(archiveKey.keyId)
    expect(
      thrownBy(() => parseGroupKeyFile(text.replace(/^key: .*$/m, 'key: AAAA'), 'g')),
    ).toMatchObject({
      code: 'E_KEY_FILE_INVALID',
    })
    expect(
      thrownBy(() => parseGroupKeyFile(text.replace(compute.keyId, '0000000000000000'), 'g')),
    ).toMatchObject({
      code: 'E_KEY_FILE_INVALID',
    })
  })
})
