import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import {
  encodeManifest,
  encodePublicKeyFile,
  encryptedSize,
  generateSecretKey,
  type ImageManifest,
  type KeyList,
  nextKeyList,
  parseInfoHash,
  parseManifest,
  signBytes,
  signingKeyEntry,
  signManifest,
  verifySignedManifest,
} from '../src/index.js'
import { runMinisign } from './helpers/minisign.js'
import { makeTempDir } from './helpers/temp-dir.js'
import { thrownBy } from './helpers/thrown-by.js'
import { expectCode, firstKeyList } from './helpers/trust.js'

const NOW = new Date('2025-06-01T12:00:00.000Z')
const DAY = 86_400_000

const root = generateSecretKey()
const signing = generateSecretKey()
const keyList: KeyList = firstKeyList(root, [signing], NOW)

function manifest(overrides: Partial<ImageManifest> = {}): ImageManifest {
  return {
    schemaVersion: 1,
    name: 'compute',
    archiveFile: 'image-compute.tar.zst',
    size: 83_886_080,
    sha256: 'ab'.repeat(32),
    infoHash: parseInfoHash('d2474e86c95b19b8bcfdb92bc12c9d44667cfa36'),
    pieceLength: 1 << 20,
    compression: 'zstd',
    created: NOW.toISOString(),
    serial: 7,
    expires: new Date(NOW.getTime() + 7 * DAY).toISOString(),
    digests: { diskLayout: 'cd'.repeat(32) },
    ...overrides,
  }
}

function expectRefusal(run: () => unknown, code: string, text?: string): number {
  return expectCode(thrownBy(run), code, text)
}

const trust = { keyList, now: NOW, image: 'compute' }

describe('signed manifests', { timeout: 60_000 }, () => {
  it('verifies the exact bytes, returns the manifest and trusted comment; minisign -V agrees', async () => {
    const { bytes, signature } = signManifest(manifest(), signing)
    expect(bytes.equals(encodeManifest(manifest()))).toBe(true)
    const verified = verifySignedManifest(
      bytes,
      signature,
      { ...trust, minSerial: 7 },
      'manifest.json',
    )
    expect(verified.manifest.serial).toBe(7)
    expect(verified.manifest.digests).toEqual({ diskLayout: 'cd'.repeat(32) })
    expect(verified.keyId).toBe(signing.keyId)
    expect(verified.trustedComment).toContain('image=compute serial=7')

    const dir = await makeTempDir('imageswarm-trust-')
    await writeFile(join(dir, 'manifest.json'), bytes)
    await writeFile(join(dir, 'manifest.json.minisig'), signature)
    await writeFile(join(dir, 'signing.pub'), encodePublicKeyFile(signing.publicKey))
    const run = await runMinisign(['-V', '-p', 'signing.pub', '-m', 'manifest.json'], dir)
    expect(run.code, run.stderr).toBe(0)
    expect(run.stdout).toContain('Trusted comment: imageswarm manifest image=compute serial=7')
  })

  it('today’s unsigned manifests still parse; the new fields are optional', () => {
    const { serial: _serial, expires: _expires, digests: _digests, ...unsigned } = manifest()
    expect(parseManifest(JSON.parse(JSON.stringify(unsigned)), 'm').serial).toBeUndefined()
  })

  it('gives each refusal its own exit code: unsigned, forged, revoked, expired, rollback', () => {
    const leaked = generateSecretKey()
    const { bytes, signature } = signManifest(manifest(), signing)
    const exits = new Map<string, number>()

    exits.set(
      'unsigned',
      expectRefusal(
        () => verifySignedManifest(bytes, undefined, trust, 'm'),
        'E_SIGNATURE_MISSING',
      ),
    )

    // Forged: the bytes say serial 8 under serial 7's signature; or signed by a stranger.
    const altered = Buffer.from(bytes.toString('utf8').replace('"serial": 7', '"serial": 8'))
    exits.set(
      'forged',
      expectRefusal(
        () => verifySignedManifest(altered, signature, trust, 'm'),
        'E_SIGNATURE_INVALID',
        'does not match the signed file',
      ),
    )
    const stranger = signManifest(manifest(), generateSecretKey())
    expectRefusal(
      () => verifySignedManifest(stranger.bytes, stranger.signature, trust, 'm'),
      'E_KEY_UNKNOWN',
      'does not list',
    )
    expect(
      thrownBy(() => verifySignedManifest(stranger.bytes, stranger.signature, trust, 'm')),
    ).toMatchObject({ exitCode: exits.get('forged') })

    const withLeaked = {
      ...keyList,
      signingKeys: [...keyList.signingKeys, signingKeyEntry(leaked.publicKey, NOW)],
    }
    const revokedList = nextKeyList(withLeaked, {
      now: NOW,
      expires: new Date(NOW.getTime() + DAY),
      revoke: [leaked.keyId],
    })
    const byLeaked = signManifest(manifest(), leaked)
    expect(
      verifySignedManifest(
        byLeaked.bytes,
        byLeaked.signature,
        { ...trust, keyList: withLeaked },
        'm',
      ).keyId,
    ).toBe(leaked.keyId)
    exits.set(
      'revoked',
      expectRefusal(
        () =>
          verifySignedManifest(
            byLeaked.bytes,
            byLeaked.signature,
            { ...trust, keyList: revokedList },
            'm',
          ),
        'E_KEY_REVOKED',
      ),
    )

    const later = new Date(NOW.getTime() + 7 * DAY)
    exits.set(
      'expired',
      expectRefusal(
        () => verifySignedManifest(bytes, signature, { ...trust, now: later }, 'm'),
        'E_MANIFEST_EXPIRED',
        'expired at',
      ),
    )

    exits.set(
      'rollback',
      expectRefusal(
        () => verifySignedManifest(bytes, signature, { ...trust, minSerial: 8 }, 'm'),
        'E_ROLLBACK',
        'serial 7, older than serial 8',
      ),
    )
    expect(new Set(exits.values()).size).toBe(5)
    expect([...exits.values()].every((code) => code >= 17 && code <= 24)).toBe(true)
  })

  it('refuses a correctly signed manifest of another image (substitution)', () => {
    const other = signManifest(
      manifest({ name: 'debug', archiveFile: 'image-debug.tar.zst' }),
      signing,
    )
    expectRefusal(
      () => verifySignedManifest(other.bytes, other.signature, trust, 'm'),
      'E_MANIFEST_WRONG_IMAGE',
      'got a signed manifest of image debug',
    )
  })

  it('refuses a signed manifest without serial or expiry, and an encrypted size that does not add up', () => {
    const { serial: _serial, ...noSerial } = manifest()
    const bytes = encodeManifest(noSerial)
    const signature = signBytes(bytes, signing, { trustedComment: 'x' })
    expectRefusal(
      () => verifySignedManifest(bytes, signature, trust, 'm'),
      'E_MANIFEST_INVALID',
      'has no serial',
    )
    expect(() => signManifest(noSerial, signing)).toThrow(/needs a serial/)

    const encryption = {
      scheme: 'imageswarm-stream-v1' as const,
      archiveKeyId: '0123456789ABCDEF',
      plaintextSize: 1000,
      plaintextSha256: 'ef'.repeat(32),
      wrappedKeys: [],
    }
    const good = signManifest(manifest({ size: encryptedSize(1000), encryption }), signing)
    expect(
      verifySignedManifest(good.bytes, good.signature, trust, 'm').manifest.encryption
        ?.plaintextSize,
    ).toBe(1000)
    const bad = signManifest(manifest({ size: encryptedSize(1000) + 1, encryption }), signing)
    expectRefusal(
      () => verifySignedManifest(bad.bytes, bad.signature, trust, 'm'),
      'E_MANIFEST_INVALID',
      'encrypted size',
    )
  })
})
