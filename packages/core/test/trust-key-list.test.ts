import { execFileSync } from 'node:child_process'
import { readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import {
  acceptSigningKey,
  encodeKeyList,
  encodePublicKeyFile,
  encodeSecretKeyFile,
  generateSecretKey,
  isImageSwarmError,
  type KeyList,
  nextKeyList,
  parseSecretKeyFile,
  readSecretKeyFile,
  type SecretKey,
  signBytes,
  signingKeyEntry,
  signKeyList,
  verifyKeyList,
  writeSecretKeyFile,
} from '../src/index.js'
import { errorOf } from './helpers/error-of.js'
import { runMinisign } from './helpers/minisign.js'
import { makeTempDir } from './helpers/temp-dir.js'
import { thrownBy } from './helpers/thrown-by.js'
import { expectCode, firstKeyList as firstKeyListAt } from './helpers/trust.js'

const NOW = new Date('2025-06-01T12:00:00.000Z')
const DAY = 86_400_000

function firstKeyList(root: SecretKey, signing: SecretKey[], overrides: Partial<KeyList> = {}) {
  return firstKeyListAt(root, signing, NOW, overrides)
}

describe('secret key files', () => {
  it('round-trip with the key id derived from the public key; openssl reads them as PKCS#8', async () => {
    const dir = await makeTempDir('imageswarm-trust-')
    const key = generateSecretKey()
    const path = join(dir, 'signing-1.key')
    await writeSecretKeyFile(path, key, 'signing-1', NOW)
    expect((await stat(path)).mode & 0o777).toBe(0o600)
    const loaded = await readSecretKeyFile(path)
    expect(loaded.keyId).toBe(key.keyId)
    expect(loaded.publicKey.raw.equals(key.publicKey.raw)).toBe(true)
    const text = await readFile(path, 'utf8')
    expect(text).toContain(`# key id: ${key.keyId}`)
    expect(execFileSync('openssl', ['pkey', '-in', path, '-noout', '-text']).toString()).toMatch(
      /ED25519 Private-Key/,
    )
  })

  it('refuses to overwrite a key, an edited key id, a .pub given as a .key', async () => {
    const dir = await makeTempDir('imageswarm-trust-')
    const key = generateSecretKey()
    const path = join(dir, 'root.key')
    await writeSecretKeyFile(path, key, 'root', NOW)
    expectCode(
      await errorOf(writeSecretKeyFile(path, generateSecretKey(), 'root', NOW)),
      'E_KEYS_EXIST',
    )
    expect((await readSecretKeyFile(path)).keyId).toBe(key.keyId)

    const edited = encodeSecretKeyFile(key, 'root', NOW).replace(key.keyId, '0123456789ABCDEF')
    expectCode(
      thrownBy(() => parseSecretKeyFile(edited, 'x.key')),
      'E_KEY_FILE_INVALID',
      'says it is key',
    )
    expectCode(
      thrownBy(() => parseSecretKeyFile(encodePublicKeyFile(key.publicKey), 'root.pub')),
      'E_KEY_FILE_INVALID',
      'holds no PKCS#8 private key',
    )
  })

  it('loads a key encrypted with openssl pkcs8 -scrypt given its passphrase, not without', async () => {
    const dir = await makeTempDir('imageswarm-trust-')
    const key = generateSecretKey()
    const plain = join(dir, 'root.key')
    await writeSecretKeyFile(plain, key, 'root', NOW)
    const encrypted = join(dir, 'root.key.enc')
    execFileSync('openssl', [
      'pkcs8',
      '-topk8',
      '-scrypt',
      '-in',
      plain,
      '-out',
      encrypted,
      '-passout',
      'pass:correct horse',
    ])
    expect((await readSecretKeyFile(encrypted, 'correct horse')).keyId).toBe(key.keyId)
    expectCode(await errorOf(readSecretKeyFile(encrypted)), 'E_KEY_FILE_INVALID', 'is encrypted')
    expectCode(
      await errorOf(readSecretKeyFile(encrypted, 'wrong')),
      'E_KEY_FILE_INVALID',
      'could not be decrypted',
    )
  })
})

describe('key list', () => {
  const root = generateSecretKey()
  const signing = generateSecretKey()

  it('verifies under the root key and minisign -V agrees', async () => {
    const signed = signKeyList(firstKeyList(root, [signing]), root)
    const verified = verifyKeyList(
      signed.bytes,
      signed.signature,
      root.publicKey,
      { now: NOW },
      'keys.json',
    )
    expect(verified.keyList.version).toBe(1)
    expect(verified.trustedComment).toBe(
      `imageswarm key list version=1 expires=${signed.keyList.expires}`,
    )
    expect(acceptSigningKey(verified.keyList, signing.keyId, NOW, 'm').keyId).toBe(signing.keyId)

    const dir = await makeTempDir('imageswarm-trust-')
    await writeFile(join(dir, 'keys.json'), signed.bytes)
    await writeFile(join(dir, 'keys.json.minisig'), signed.signature)
    await writeFile(join(dir, 'root.pub'), encodePublicKeyFile(root.publicKey))
    const run = await runMinisign(['-V', '-p', 'root.pub', '-m', 'keys.json'], dir)
    expect(run.code, run.stderr).toBe(0)
  })

  it('refuses a key list signed by another root (E_KEYLIST_UNTRUSTED), or by a signing key', () => {
    const otherRoot = generateSecretKey()
    const signed = signKeyList(firstKeyList(otherRoot, [signing]), otherRoot)
    expectCode(
      thrownBy(() =>
        verifyKeyList(signed.bytes, signed.signature, root.publicKey, { now: NOW }, 'keys.json'),
      ),
      'E_KEYLIST_UNTRUSTED',
      `not signed by the trusted root key ${root.keyId}`,
    )
    // Signed by a key the root vouches for is still not signed by the root.
    const bytes = encodeKeyList(firstKeyList(root, [signing]))
    const bySigningKey = signBytes(bytes, signing, { trustedComment: 'x' })
    expectCode(
      thrownBy(() => verifyKeyList(bytes, bySigningKey, root.publicKey, { now: NOW }, 'keys.json')),
      'E_KEYLIST_UNTRUSTED',
    )
  })

  it('refuses an unsigned list, a forged one, an altered one', () => {
    const signed = signKeyList(firstKeyList(root, [signing]), root)
    expectCode(
      thrownBy(() =>
        verifyKeyList(signed.bytes, undefined, root.publicKey, { now: NOW }, 'keys.json'),
      ),
      'E_SIGNATURE_MISSING',
    )
    const attacker = generateSecretKey()
    const altered = Buffer.from(
      signed.bytes.toString('utf8').replace(signing.keyId, attacker.keyId),
    )
    expectCode(
      thrownBy(() =>
        verifyKeyList(altered, signed.signature, root.publicKey, { now: NOW }, 'keys.json'),
      ),
      'E_KEYLIST_UNTRUSTED',
      'does not match the signed file',
    )
  })

  it('refuses an expired list unless told to read it anyway', () => {
    const signed = signKeyList(firstKeyList(root, [signing]), root)
    const later = new Date(Date.parse(signed.keyList.expires) + 1)
    expectCode(
      thrownBy(() =>
        verifyKeyList(signed.bytes, signed.signature, root.publicKey, { now: later }, 'k'),
      ),
      'E_KEYLIST_EXPIRED',
      'expired at',
    )
    expect(
      verifyKeyList(
        signed.bytes,
        signed.signature,
        root.publicKey,
        { now: later, allowExpired: true },
        'k',
      ).keyList.version,
    ).toBe(1)
  })

  it('refuses a version older than one seen (rollback), and another list under a seen version', () => {
    const v1 = signKeyList(firstKeyList(root, [signing]), root)
    const v2 = signKeyList(
      nextKeyList(v1.keyList, { now: NOW, expires: new Date(NOW.getTime() + 30 * DAY) }),
      root,
    )
    const seen = verifyKeyList(v2.bytes, v2.signature, root.publicKey, { now: NOW }, 'k')
    expect(seen.keyList.version).toBe(2)
    expectCode(
      thrownBy(() =>
        verifyKeyList(v1.bytes, v1.signature, root.publicKey, { now: NOW, seenVersion: 2 }, 'k'),
      ),
      'E_ROLLBACK',
      'older than version 2',
    )
    const twin = signKeyList({ ...v2.keyList, tlsCertificates: [{ sha256: 'a'.repeat(64) }] }, root)
    expectCode(
      thrownBy(() =>
        verifyKeyList(
          twin.bytes,
          twin.signature,
          root.publicKey,
          {
            now: NOW,
            seenVersion: 2,
            seenSha256: seen.sha256,
          },
          'k',
        ),
      ),
      'E_KEYLIST_INVALID',
      'differs from the version 2',
    )
    // The same list again is fine.
    expect(
      verifyKeyList(
        v2.bytes,
        v2.signature,
        root.publicKey,
        { now: NOW, seenVersion: 2, seenSha256: seen.sha256 },
        'k',
      ).keyList.version,
    ).toBe(2)
  })

  it('refuses malformed lists the root signed: unknown keys, a mislabelled key, a revoked signing key, the root as signing key', () => {
    const cases: [unknown, string][] = [
      [{ ...firstKeyList(root, [signing]), extra: true }, 'Unrecognized key'],
      [{ ...firstKeyList(root, [signing]), version: 0 }, 'version'],
      [
        {
          ...firstKeyList(root, [signing]),
          signingKeys: [{ ...signingKeyEntry(signing.publicKey, NOW), keyId: '0000000000000001' }],
        },
        'not the minisign public key of key 0000000000000001',
      ],
      [
        { ...firstKeyList(root, [signing]), revokedKeyIds: [signing.keyId] },
        'a revoked key cannot be a signing key',
      ],
      [firstKeyList(root, [root]), 'the root key never signs manifests'],
      [
        { ...firstKeyList(root, [signing]), expires: NOW.toISOString() },
        'expires before it was created',
      ],
    ]
    for (const [document, message] of cases) {
      const bytes = Buffer.from(JSON.stringify(document))
      const signature = signBytes(bytes, root, { trustedComment: 'x' })
      expectCode(
        thrownBy(() => verifyKeyList(bytes, signature, root.publicKey, { now: NOW }, 'keys.json')),
        'E_KEYLIST_INVALID',
        message,
      )
    }
    const notJson = Buffer.from('{"type":')
    expectCode(
      thrownBy(() =>
        verifyKeyList(
          notJson,
          signBytes(notJson, root, { trustedComment: 'x' }),
          root.publicKey,
          { now: NOW },
          'k',
        ),
      ),
      'E_KEYLIST_INVALID',
      'is not JSON',
    )
  })

  it('accepts a listed key; refuses a revoked, an unlisted and an expired one, each with its own code', () => {
    const retired = generateSecretKey()
    const leaked = generateSecretKey()
    const shortLived = generateSecretKey()
    const v1 = firstKeyList(root, [signing, retired, leaked])
    const v2 = nextKeyList(v1, {
      now: NOW,
      expires: new Date(NOW.getTime() + DAY),
      add: [signingKeyEntry(shortLived.publicKey, NOW, new Date(NOW.getTime() + 60_000))],
      remove: [retired.keyId],
      revoke: [leaked.keyId],
    })
    const list = signKeyList(v2, root).keyList
    expect(list.version).toBe(2)
    expect(list.signingKeys.map((key) => key.keyId)).toEqual([signing.keyId, shortLived.keyId])
    expect(acceptSigningKey(list, signing.keyId, NOW, 'm').raw.equals(signing.publicKey.raw)).toBe(
      true,
    )
    expect(acceptSigningKey(list, shortLived.keyId, NOW, 'm').keyId).toBe(shortLived.keyId)
    expectCode(
      thrownBy(() => acceptSigningKey(list, leaked.keyId, NOW, 'm')),
      'E_KEY_REVOKED',
    )
    expectCode(
      thrownBy(() => acceptSigningKey(list, retired.keyId, NOW, 'm')),
      'E_KEY_UNKNOWN',
    )
    expectCode(
      thrownBy(() =>
        acceptSigningKey(list, shortLived.keyId, new Date(NOW.getTime() + 60_000), 'm'),
      ),
      'E_KEY_EXPIRED',
    )
    const codes = [leaked, retired].map((key) =>
      thrownBy(() => acceptSigningKey(list, key.keyId, NOW, 'm')),
    )
    const exits = codes.map((error) => (isImageSwarmError(error) ? error.exitCode : 0))
    expect(new Set(exits).size).toBe(2)
  })
})
