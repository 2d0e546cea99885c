import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  type ImageManifest,
  isImageSwarmError,
  loadSigningKey,
  parseInfoHash,
  parsePublicKeyFile,
  readKeyDirectory,
  readSecretKeyFile,
  signManifest,
  verifyKeyList,
  verifySignedManifest,
} from '@imageswarm/core'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'

/** The built command, as an administrator runs it. */
const CLI = fileURLToPath(new URL('../bin/imageswarm.js', import.meta.url))

interface Run {
  code: number
  stdout: string
  stderr: string
}

function run(command: string, args: readonly string[], cwd: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(command, [...args], { cwd, timeout: 60_000 }, (error, stdout, stderr) => {
      if (error && typeof error.code !== 'number') {
        reject(error)
        return
      }
      resolve({ code: error ? Number(error.code) : 0, stdout, stderr })
    })
  })
}

const imageswarm = (args: readonly string[]) => run(process.execPath, [CLI, ...args], dir)
const minisignVerify = (keys: string, file: string) =>
  run('minisign', ['-V', '-p', join(keys, 'root.pub'), '-m', join(keys, file)], dir)

interface ListedKeys {
  rootKeyId: string
  expired: boolean
  keyList: { version: number; signingKeys: { keyId: string }[]; revokedKeyIds: string[] }
  signingKeys: { file: string | null; keyId: string; status: string; signs: boolean }[]
}

async function listKeys(keys: string): Promise<ListedKeys> {
  const listed = await imageswarm(['key', 'list', '--keys', keys, '--json'])
  expect(listed.code, listed.stderr).toBe(0)
  return JSON.parse(listed.stdout) as ListedKeys
}

async function digestOfFiles(path: string): Promise<string> {
  const hash = createHash('sha256')
  for (const name of (await readdir(path)).sort()) {
    const file = join(path, name)
    if ((await stat(file)).isFile()) hash.update(name).update(await readFile(file))
  }
  return hash.digest('hex')
}

function manifest(): ImageManifest {
  return {
    schemaVersion: 1,
    name: 'compute',
    archiveFile: 'image-compute.tar.zst',
    size: 1000,
    sha256: 'ab'.repeat(32),
    infoHash: parseInfoHash('d2474e86c95b19b8bcfdb92bc12c9d44667cfa36'),
    pieceLength: 1 << 20,
    compression: 'zstd',
    created: new Date().toISOString(),
    serial: 1,
    expires: new Date(Date.now() + 86_400_000).toISOString(),
  }
}

let dir: string

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cli-keys-'))
})

afterEach(async () => {
  await rm(dir, { recursive: true, force: true })
})

describe('imageswarm key', { timeout: 120_000 }, () => {
  it('generate writes the root and signing keys (0600) and a key list minisign -V accepts', async () => {
    const keys = join(dir, 'keys')
    const generated = await imageswarm(['key', 'generate', '--output', keys])
    expect(generated.code, generated.stderr).toBe(0)
    expect((await readdir(keys)).sort()).toEqual([
      'history',
      'keys.json',
      'keys.json.minisig',
      'root.key',
      'root.pub',
      'signing-1.key',
      'signing-1.pub',
    ])
    expect((await stat(join(keys, 'root.key'))).mode & 0o777).toBe(0o600)
    expect((await stat(join(keys, 'signing-1.key'))).mode & 0o777).toBe(0o600)
    expect((await stat(keys)).mode & 0o777).toBe(0o700)
    const verified = await minisignVerify(keys, 'keys.json')
    expect(verified.code, verified.stderr).toBe(0)
    expect(verified.stdout).toContain('Trusted comment: imageswarm key list version=1')

    const listed = await listKeys(keys)
    const root = parsePublicKeyFile(await readFile(join(keys, 'root.pub'), 'utf8'), 'root.pub')
    expect(listed.rootKeyId).toBe(root.keyId)
    expect(listed.keyList.version).toBe(1)
    expect(listed.signingKeys).toMatchObject([{ file: 'signing-1', status: 'listed', signs: true }])
    expect(generated.stdout).toContain(root.keyId)
    const expires = Date.parse(
      (JSON.parse(await readFile(join(keys, 'keys.json'), 'utf8')) as { expires: string }).expires,
    )
    expect(expires - Date.now()).toBeGreaterThan(364 * 86_400_000)

    // What serve --keys will do in phase 2: sign a manifest with the usable key; a node
    // holding only root.pub verifies the list, then the manifest.
    const directory = await readKeyDirectory(keys, { now: new Date() })
    const signing = await loadSigningKey(directory, new Date())
    expect(signing.keyId).toBe(listed.signingKeys[0]!.keyId)
    const { bytes, signature } = signManifest(manifest(), signing)
    const { keyList } = verifyKeyList(
      await readFile(join(keys, 'keys.json')),
      await readFile(join(keys, 'keys.json.minisig'), 'utf8'),
      root,
      { now: new Date() },
      'keys.json',
    )
    expect(
      verifySignedManifest(bytes, signature, { keyList, now: new Date(), image: 'compute' }, 'm')
        .manifest.serial,
    ).toBe(1)
  })

  it('generate refuses to overwrite existing keys and changes nothing', async () => {
    const keys = join(dir, 'keys')
    expect((await imageswarm(['key', 'generate', '--output', keys])).code).toBe(0)
    const before = await digestOfFiles(keys)
    const again = await imageswarm(['key', 'generate', '--output', keys])
    expect(again.code).toBe(24)
    expect(again.stderr).toContain('error E_KEYS_EXIST: keys exist already')
    expect(again.stderr).toContain('hint:')
    expect(await digestOfFiles(keys)).toBe(before)
  })

  it('keeps the root key elsewhere (--root-key), encrypted or not: rotate needs it, refuses another root key', async () => {
    const keys = join(dir, 'keys')
    const offline = join(dir, 'offline')
    await mkdir(offline)
    const rootKey = join(offline, 'root.key')
    expect(
      (await imageswarm(['key', 'generate', '--output', keys, '--root-key', rootKey])).code,
    ).toBe(0)
    expect((await readdir(keys)).includes('root.key')).toBe(false)
    expect((await stat(rootKey)).mode & 0o777).toBe(0o600)

    const withoutRoot = await imageswarm(['key', 'rotate', '--keys', keys])
    expect(withoutRoot.code).toBe(24)
    expect(withoutRoot.stderr).toContain('E_KEY_FILE_INVALID')
    expect(withoutRoot.stderr).toContain('--root-key FILE')

    const other = join(dir, 'other')
    expect((await imageswarm(['key', 'generate', '--output', other])).code).toBe(0)
    const before = (await listKeys(keys)).keyList.version
    const wrongRoot = await imageswarm([
      'key',
      'rotate',
      '--keys',
      keys,
      '--root-key',
      join(other, 'root.key'),
    ])
    expect(wrongRoot.code).toBe(24)
    expect(wrongRoot.stderr).toContain('not the root key')
    expect((await listKeys(keys)).keyList.version).toBe(before)

    const rotated = await imageswarm(['key', 'rotate', '--keys', keys, '--root-key', rootKey])
    expect(rotated.code, rotated.stderr).toBe(0)
    expect((await listKeys(keys)).keyList.version).toBe(2)

    // The root key kept encrypted by OpenSSL, its passphrase in a file.
    const encrypted = join(offline, 'root.key.enc')
    const passphrase = join(offline, 'passphrase')
    await writeFile(passphrase, 'correct horse battery staple\n')
    const converted = await run(
      'openssl',
      [
        'pkcs8',
        '-topk8',
        '-scrypt',
        '-in',
        rootKey,
        '-out',
        encrypted,
        '-passout',
        `file:${passphrase}`,
      ],
      dir,
    )
    expect(converted.code, converted.stderr).toBe(0)
    const renewed = await imageswarm([
      'key',
      'renew',
      '--keys',
      keys,
      '--root-key',
      encrypted,
      '--root-key-passphrase-file',
      passphrase,
    ])
    expect(renewed.code, renewed.stderr).toBe(0)
    expect((await listKeys(keys)).keyList.version).toBe(3)
  })

  it('rotate adds a signing key and keeps the old one listed until --retire; every version verifies', async () => {
    const keys = join(dir, 'keys')
    expect((await imageswarm(['key', 'generate', '--output', keys])).code).toBe(0)
    const first = (await listKeys(keys)).signingKeys[0]!.keyId

    expect((await imageswarm(['key', 'rotate', '--keys', keys])).code).toBe(0)
    const v2 = await listKeys(keys)
    expect(v2.keyList.version).toBe(2)
    expect(v2.signingKeys).toMatchObject([
      { file: 'signing-1', keyId: first, status: 'listed', signs: false },
      { file: 'signing-2', status: 'listed', signs: true },
    ])
    expect((await minisignVerify(keys, 'keys.json')).code).toBe(0)

    expect((await imageswarm(['key', 'rotate', '--keys', keys, '--retire'])).code).toBe(0)
    const v3 = await listKeys(keys)
    expect(v3.keyList.version).toBe(3)
    expect(v3.signingKeys.map((key) => [key.file, key.status, key.signs])).toEqual([
      ['signing-1', 'unlisted', false],
      ['signing-2', 'unlisted', false],
      ['signing-3', 'listed', true],
    ])
    expect((await minisignVerify(keys, 'keys.json')).code).toBe(0)
    for (const version of [1, 2, 3]) {
      expect((await minisignVerify(keys, `history/keys-${version}.json`)).code).toBe(0)
    }

    // A node that has seen version 3 refuses version 2, which still lists the retired keys.
    const root = parsePublicKeyFile(await readFile(join(keys, 'root.pub'), 'utf8'), 'root.pub')
    let error: unknown
    try {
      verifyKeyList(
        await readFile(join(keys, 'history/keys-2.json')),
        await readFile(join(keys, 'history/keys-2.json.minisig'), 'utf8'),
        root,
        { now: new Date(), seenVersion: 3 },
        'keys.json',
      )
    } catch (err) {
      error = err
    }
    expect(isImageSwarmError(error) && error.code).toBe('E_ROLLBACK')
  })

  it('revoke lists the key as revoked in a new version; refuses the root, a repeat, an unknown id', async () => {
    const keys = join(dir, 'keys')
    expect((await imageswarm(['key', 'generate', '--output', keys])).code).toBe(0)
    expect((await imageswarm(['key', 'rotate', '--keys', keys])).code).toBe(0)
    const before = await listKeys(keys)
    const leaked = before.signingKeys[0]!.keyId

    const revoked = await imageswarm(['key', 'revoke', '--keys', keys, leaked.toLowerCase()])
    expect(revoked.code, revoked.stderr).toBe(0)
    const after = await listKeys(keys)
    expect(after.keyList.version).toBe(3)
    expect(after.keyList.revokedKeyIds).toEqual([leaked])
    expect(after.signingKeys.map((key) => [key.keyId, key.status])).toEqual([
      [leaked, 'revoked'],
      [before.signingKeys[1]!.keyId, 'listed'],
    ])
    expect((await minisignVerify(keys, 'keys.json')).code).toBe(0)

    // A manifest the leaked key signs is refused under the new list.
    const directory = await readKeyDirectory(keys, { now: new Date() })
    const leakedKey = await readSecretKeyFile(join(keys, 'signing-1.key'))
    const forged = signManifest(manifest(), leakedKey)
    let error: unknown
    try {
      verifySignedManifest(
        forged.bytes,
        forged.signature,
        { keyList: directory.keyList, now: new Date(), image: 'compute' },
        'm',
      )
    } catch (err) {
      error = err
    }
    expect(isImageSwarmError(error) && [error.code, error.exitCode]).toEqual(['E_KEY_REVOKED', 19])
    expect((await loadSigningKey(directory, new Date())).keyId).toBe(before.signingKeys[1]!.keyId)

    for (const [args, text] of [
      [[leaked], 'is revoked already'],
      [[after.rootKeyId], 'is the root key'],
      [['0123456789ABCDEF'], 'is neither in key list'],
      [['xyz'], 'is not a key id'],
    ] as const) {
      const refused = await imageswarm(['key', 'revoke', '--keys', keys, ...args])
      expect(refused.code, refused.stderr).toBe(2)
      expect(refused.stderr).toContain(text)
    }
    expect((await listKeys(keys)).keyList.version).toBe(3)
  })

  it('renew signs the same keys with a new version; a key list from another root is refused', async () => {
    const keys = join(dir, 'keys')
    expect(
      (await imageswarm(['key', 'generate', '--output', keys, '--expires-days', '2'])).code,
    ).toBe(0)
    const renewed = await imageswarm(['key', 'renew', '--keys', keys, '--expires-days', '30'])
    expect(renewed.code, renewed.stderr).toBe(0)
    const listed = await listKeys(keys)
    expect(listed.keyList.version).toBe(2)
    expect(listed.signingKeys).toHaveLength(1)

    // keys.json put back to version 1 (a restored backup): signing another version 2 would
    // give nodes two lists under one version; refused before anything is written.
    await copyFile(join(keys, 'history/keys-1.json'), join(keys, 'keys.json'))
    await copyFile(join(keys, 'history/keys-1.json.minisig'), join(keys, 'keys.json.minisig'))
    const before = await digestOfFiles(keys)
    const behind = await imageswarm(['key', 'rotate', '--keys', keys])
    expect(behind.code).toBe(24)
    expect(behind.stderr).toContain('but the root already signed version 2')
    expect(behind.stderr).toContain('history/keys-2.json and its .minisig over keys.json')
    expect(await digestOfFiles(keys)).toBe(before)

    const other = join(dir, 'other')
    expect((await imageswarm(['key', 'generate', '--output', other])).code).toBe(0)
    await copyFile(join(other, 'root.pub'), join(keys, 'root.pub'))
    const untrusted = await imageswarm(['key', 'list', '--keys', keys])
    expect(untrusted.code).toBe(22)
    expect(untrusted.stderr).toContain('E_KEYLIST_UNTRUSTED')

    await writeFile(join(other, 'keys.json.minisig'), '')
    const emptied = await imageswarm(['key', 'list', '--keys', other])
    expect(emptied.code).toBe(22)
    expect(emptied.stderr).toContain('history/keys-N.json')
  })

  it('tls-generate makes a self-signed certificate for the given names; tls-pin pins it in a new root-signed key list', async () => {
    const keys = join(dir, 'keys')
    expect((await imageswarm(['key', 'generate', '--output', keys])).code).toBe(0)
    const tls = join(dir, 'tls')
    const args = ['key', 'tls-generate', '--output', tls, '--name', 'images.lab.example']
    const generated = await imageswarm([...args, '--address', '10.0.0.1', '--days', '30'])
    expect(generated.code, generated.stderr).toBe(0)
    expect((await stat(join(tls, 'tls.key'))).mode & 0o777).toBe(0o600)
    const text = await run(
      'openssl',
      ['x509', '-in', join(tls, 'tls.crt'), '-noout', '-text', '-fingerprint', '-sha256'],
      dir,
    )
    expect(text.stdout).toContain('DNS:images.lab.example, IP Address:10.0.0.1')
    expect(text.stdout).toContain('ASN1 OID: prime256v1')
    const sha256 = /sha256 Fingerprint=([0-9A-F:]+)/i
      .exec(text.stdout)![1]!
      .replaceAll(':', '')
      .toLowerCase()
    expect(generated.stdout).toContain(`sha256        ${sha256}`)
    // Never over an existing certificate or key.
    const again = await imageswarm(args)
    expect(again.code).toBe(24)
    expect(again.stderr).toContain('E_KEYS_EXIST')
    expect(
      await imageswarm(['key', 'tls-generate', '--output', join(dir, 'x'), '--address', 'host']),
    ).toMatchObject({ code: 2 })

    const tlsPin = (cert: string, ...extra: string[]) =>
      imageswarm(['key', 'tls-pin', '--keys', keys, '--cert', cert, ...extra])
    const pinned = await tlsPin(join(tls, 'tls.crt'))
    expect(pinned.code, pinned.stderr).toBe(0)
    const listed = await imageswarm(['key', 'list', '--keys', keys, '--json'])
    const keyList = (
      JSON.parse(listed.stdout) as {
        keyList: { version: number; tlsCertificates: { sha256: string; note: string }[] }
      }
    ).keyList
    expect(keyList.version).toBe(2)
    expect(keyList.tlsCertificates.map((pin) => pin.sha256)).toEqual([sha256])
    expect(keyList.tlsCertificates[0]!.note).toContain('IP Address:10.0.0.1')
    expect((await minisignVerify(keys, 'keys.json')).code).toBe(0)
    const twice = await tlsPin(join(tls, 'tls.crt'))
    expect(twice.code).toBe(2)

    // A rotation: the second certificate beside the first, then alone.
    const next = join(dir, 'tls-2')
    expect(
      (await imageswarm(['key', 'tls-generate', '--output', next, '--address', '10.0.0.1'])).code,
    ).toBe(0)
    const both = await tlsPin(join(next, 'tls.crt'))
    expect(both.code, both.stderr).toBe(0)
    expect(both.stdout).toContain(`${sha256}, `)
    const replaced = await tlsPin(join(next, 'tls.crt'), '--replace')
    expect(replaced.code, replaced.stderr).toBe(0)
    expect(replaced.stdout).toContain(`dropped       ${sha256}`)
    const after = JSON.parse(
      (await imageswarm(['key', 'list', '--keys', keys, '--json'])).stdout,
    ) as { keyList: { version: number; tlsCertificates: unknown[] } }
    expect(after.keyList.version).toBe(4)
    expect(after.keyList.tlsCertificates).toHaveLength(1)
  })
})
