import { randomBytes } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import {
  encodePublicKeyFile,
  generateSecretKey,
  parsePublicKeyFile,
  parseSignature,
  prehashFile,
  type SecretKey,
  signBytes,
  signPrehashed,
  verifyBytes,
  verifyFile,
} from '../src/index.js'
import { runMinisign } from './helpers/minisign.js'
import { makeTempDir } from './helpers/temp-dir.js'
import { thrownBy } from './helpers/thrown-by.js'
import { expectCode } from './helpers/trust.js'

/** Writes a file, our key's public key and our signature of the file into `dir`. */
async function signedByUs(
  dir: string,
  key: SecretKey,
  content: Buffer,
  trustedComment = 'imageswarm test file',
): Promise<{ file: string; pub: string; sig: string }> {
  const file = join(dir, 'file.bin')
  await writeFile(file, content)
  await writeFile(join(dir, 'our.pub'), encodePublicKeyFile(key.publicKey))
  const signature = signPrehashed(await prehashFile(file), key, { trustedComment })
  await writeFile(`${file}.minisig`, signature)
  return { file, pub: join(dir, 'our.pub'), sig: `${file}.minisig` }
}

/** A key made by `minisign -G -W` (unencrypted) and a file it signed with `minisign -S`. */
async function signedByMinisign(
  dir: string,
  content: Buffer,
  extraArgs: string[] = [],
): Promise<{ file: string; pub: string; sig: string }> {
  const generated = await runMinisign(['-G', '-W', '-p', 'theirs.pub', '-s', 'theirs.key'], dir)
  expect(generated.code, generated.stderr).toBe(0)
  const file = join(dir, 'theirs.bin')
  await writeFile(file, content)
  const signed = await runMinisign(
    ['-S', '-s', 'theirs.key', '-m', 'theirs.bin', ...extraArgs],
    dir,
  )
  expect(signed.code, signed.stderr).toBe(0)
  return { file, pub: join(dir, 'theirs.pub'), sig: `${file}.minisig` }
}

describe('minisign format: our signatures under the real minisign', { timeout: 60_000 }, () => {
  it('minisign -V (and -V -H, prehashed only) accepts our public key and signature', async () => {
    const dir = await makeTempDir('imageswarm-trust-')
    const key = generateSecretKey()
    const { pub } = await signedByUs(dir, key, randomBytes(300_000), 'image=compute serial=7')
    for (const extra of [[], ['-H']]) {
      const run = await runMinisign(['-V', ...extra, '-p', pub, '-m', 'file.bin'], dir)
      expect(run.code, run.stderr).toBe(0)
      expect(run.stdout).toContain('Signature and comment signature verified')
      expect(run.stdout).toContain('Trusted comment: image=compute serial=7')
    }
    // minisign names a key by the same id we do.
    expect(await readFile(pub, 'utf8')).toContain(`minisign public key ${key.keyId}`)
  })

  it('minisign -V refuses our signature over a tampered file, under another key, with an altered trusted comment', async () => {
    const dir = await makeTempDir('imageswarm-trust-')
    const key = generateSecretKey()
    const content = randomBytes(4096)
    const { file, pub, sig } = await signedByUs(dir, key, content)
    const tampered = Buffer.from(content)
    tampered[100]! ^= 1
    await writeFile(file, tampered)
    expect((await runMinisign(['-V', '-p', pub, '-m', 'file.bin'], dir)).code).toBe(1)

    await writeFile(file, content)
    await writeFile(join(dir, 'other.pub'), encodePublicKeyFile(generateSecretKey().publicKey))
    expect((await runMinisign(['-V', '-p', 'other.pub', '-m', 'file.bin'], dir)).code).toBe(1)

    const text = await readFile(sig, 'utf8')
    await writeFile(sig, text.replace('trusted comment: imageswarm', 'trusted comment: forged'))
    const altered = await runMinisign(['-V', '-p', pub, '-m', 'file.bin'], dir)
    expect(altered.code).toBe(1)
    expect(altered.stderr).toContain('Comment signature verification failed')
  })
})

describe('minisign format: minisign -S signatures under our verifier', { timeout: 60_000 }, () => {
  it('accepts a signature made by minisign -S with a key from minisign -G -W, returning its trusted comment', async () => {
    const dir = await makeTempDir('imageswarm-trust-')
    const content = randomBytes(200_000)
    const { pub, sig } = await signedByMinisign(dir, content, ['-t', 'serial=3 from minisign'])
    const publicKey = parsePublicKeyFile(await readFile(pub, 'utf8'), pub)
    // minisign draws key ids at random and prints them in the comment: we read the same id.
    expect(await readFile(pub, 'utf8')).toContain(`minisign public key ${publicKey.keyId}`)
    const verified = verifyBytes(content, await readFile(sig, 'utf8'), publicKey, sig)
    expect(verified).toEqual({ keyId: publicKey.keyId, trustedComment: 'serial=3 from minisign' })
  })

  it("accepts minisign's default trusted comment and verifies a 5 MiB file streamed", async () => {
    const dir = await makeTempDir('imageswarm-trust-')
    const { file, pub, sig } = await signedByMinisign(dir, randomBytes(5 << 20))
    const publicKey = parsePublicKeyFile(await readFile(pub, 'utf8'), pub)
    const verified = await verifyFile(file, await readFile(sig, 'utf8'), publicKey, sig)
    expect(verified.trustedComment).toMatch(/^timestamp:\d+\tfile:theirs\.bin\thashed$/)
  })

  it('refuses a tampered file, a wrong key and a signature over another file', async () => {
    const dir = await makeTempDir('imageswarm-trust-')
    const content = randomBytes(10_000)
    const { pub, sig } = await signedByMinisign(dir, content)
    const publicKey = parsePublicKeyFile(await readFile(pub, 'utf8'), pub)
    const signature = await readFile(sig, 'utf8')

    const tampered = Buffer.from(content)
    tampered[5000]! ^= 0x80
    expectCode(
      thrownBy(() => verifyBytes(tampered, signature, publicKey, sig)),
      'E_SIGNATURE_INVALID',
      'does not match the signed file',
    )
    const stranger = generateSecretKey().publicKey
    expectCode(
      thrownBy(() => verifyBytes(content, signature, stranger, sig)),
      'E_SIGNATURE_INVALID',
      `not by the trusted key ${stranger.keyId}`,
    )
    // Another file signed by the same key: its signature does not carry over.
    await writeFile(join(dir, 'another.bin'), randomBytes(10_000))
    expect((await runMinisign(['-S', '-s', 'theirs.key', '-m', 'another.bin'], dir)).code).toBe(0)
    const another = await readFile(join(dir, 'another.bin.minisig'), 'utf8')
    const error = thrownBy(() => verifyBytes(content, another, publicKey, 'another.bin.minisig'))
    expectCode(error, 'E_SIGNATURE_INVALID', 'does not match the signed file')
  })

  it('refuses a legacy (-l, not prehashed) signature although minisign -V accepts it', async () => {
    const dir = await makeTempDir('imageswarm-trust-')
    const content = randomBytes(1000)
    const { pub, sig } = await signedByMinisign(dir, content, ['-l'])
    // Stock minisign takes it unless told -H; we always behave as -H.
    expect((await runMinisign(['-V', '-p', pub, '-m', 'theirs.bin'], dir)).code).toBe(0)
    expect((await runMinisign(['-V', '-H', '-p', pub, '-m', 'theirs.bin'], dir)).code).toBe(1)
    const publicKey = parsePublicKeyFile(await readFile(pub, 'utf8'), pub)
    const legacy = await readFile(sig, 'utf8')
    expectCode(
      thrownBy(() => verifyBytes(content, legacy, publicKey, sig)),
      'E_SIGNATURE_INVALID',
      'legacy',
    )
  })

  it('refuses a trusted comment swapped into a minisign signature', async () => {
    const dir = await makeTempDir('imageswarm-trust-')
    const content = randomBytes(1000)
    const { pub, sig } = await signedByMinisign(dir, content, ['-t', 'serial=9'])
    const publicKey = parsePublicKeyFile(await readFile(pub, 'utf8'), pub)
    const forged = (await readFile(sig, 'utf8')).replace('serial=9', 'serial=99')
    expectCode(
      thrownBy(() => verifyBytes(content, forged, publicKey, sig)),
      'E_SIGNATURE_INVALID',
      'trusted comment that was altered',
    )
  })
})

describe('minisign format: parsing', () => {
  it('refuses an unknown signature algorithm, bad base64, missing lines', () => {
    const key = generateSecretKey()
    const message = Buffer.from('hello')
    const good = signBytes(message, key, { trustedComment: 't' })
    const lines = good.split('\n')
    const raw = Buffer.from(lines[1]!, 'base64')
    raw.write('EX', 0, 'latin1')
    const unknown = [lines[0], raw.toString('base64'), lines[2], lines[3], ''].join('\n')
    expect(() => parseSignature(unknown, 'x.minisig')).toThrow(/unknown signature algorithm "EX"/)
    const cases = [
      [lines[0], `${lines[1]}!`, lines[2], lines[3]].join('\n'),
      [lines[0], lines[1], lines[3]].join('\n'),
      [lines[0], lines[1], 'comment: t', lines[3]].join('\n'),
      ['comment', lines[1], lines[2], lines[3]].join('\n'),
    ]
    for (const text of cases) {
      expectCode(
        thrownBy(() => parseSignature(text, 'x.minisig')),
        'E_SIGNATURE_INVALID',
      )
    }
    expect(verifyBytes(message, good.replaceAll('\n', '\r\n'), key.publicKey, 'crlf')).toEqual({
      keyId: key.keyId,
      trustedComment: 't',
    })
  })

  it('refuses a public key of another algorithm or length', () => {
    const text = encodePublicKeyFile(generateSecretKey().publicKey)
    const [comment, line] = text.split('\n') as [string, string]
    const raw = Buffer.from(line, 'base64')
    raw.write('Ex', 0, 'latin1')
    expect(() => parsePublicKeyFile(`${comment}\n${raw.toString('base64')}\n`, 'k.pub')).toThrow(
      /unsupported algorithm/,
    )
    expect(() =>
      parsePublicKeyFile(`${comment}\n${raw.subarray(0, 40).toString('base64')}\n`, 'k.pub'),
    ).toThrow(/not 42 bytes/)
  })
})
