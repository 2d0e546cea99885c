import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto'
import { open, readFile, unlink } from 'node:fs/promises'
import { errnoOf, ImageSwarmError } from '../errors.js'
import {
  deriveKeyId,
  encodePublicKeyLine,
  type MinisignPublicKey,
  type Signer,
  toMinisignPublicKey,
} from './minisign.js'

/**
 * imageswarm's secret key file: a few `# name: value` lines for the administrator, then the
 * ed25519 key as standard PKCS#8 PEM, which `openssl pkey` reads too (OpenSSL skips the text
 * before `-----BEGIN`). The key id is derived from the public key (`deriveKeyId`), so the
 * header is a label that loading checks, not a second source of truth.
 *
 * ```
 * # imageswarm secret key: root
 * # key id: 5D4E3C2B1A098877
 * # public key: RWR3iAkaKzxOXc…
 * # created: 2025-06-01T12:00:00.000Z
 * -----BEGIN PRIVATE KEY-----
 * MC4CAQAwBQYDK2VwBCIEI…
 * -----END PRIVATE KEY-----
 * ```
 *
 * An encrypted PKCS#8 key (`-----BEGIN ENCRYPTED PRIVATE KEY-----`, e.g. from
 * `openssl pkcs8 -topk8 -scrypt -in root.key -out root.key.enc`) loads with its passphrase.
 */
export interface SecretKey extends Signer {
  keyId: string
  privateKey: KeyObject
  publicKey: MinisignPublicKey
}

const PEM_BLOCK =
  /-----BEGIN (ENCRYPTED )?PRIVATE KEY-----\r?\n[A-Za-z0-9+/=\r\n]+-----END \1?PRIVATE KEY-----/
const HEADER_LINE = /^# ([a-z ]+): (.*)$/
/** A secret key file is a few hundred bytes; a bigger file is the wrong file. */
const SECRET_KEY_FILE_MAX_BYTES = 16 * 1024

/** A new ed25519 key pair with its derived key id. */
export function generateSecretKey(): SecretKey {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  return fromPrivateKey(privateKey, publicKey)
}

function fromPrivateKey(privateKey: KeyObject, publicKey: KeyObject): SecretKey {
  const provisional = toMinisignPublicKey(publicKey, '0000000000000000')
  const keyId = deriveKeyId(provisional.raw)
  return { keyId, privateKey, publicKey: { ...provisional, keyId } }
}

/** The text of a secret key file (see `SecretKey`); `role` names it for the reader. */
export function encodeSecretKeyFile(key: SecretKey, role: string, created: Date): string {
  if (!/^[a-z0-9-]+$/.test(role)) throw new TypeError(`not a key role: ${JSON.stringify(role)}`)
  const pem = key.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string
  return [
    `# imageswarm secret key: ${role}`,
    `# key id: ${key.keyId}`,
    `# public key: ${encodePublicKeyLine(key.publicKey)}`,
    `# created: ${created.toISOString()}`,
    pem.trimEnd(),
    '',
  ].join('\n')
}

function secretKeyError(source: string, what: string, hint: string, cause?: unknown) {
  return new ImageSwarmError('E_KEY_FILE_INVALID', `secret key ${source} ${what}`, {
    operation: 'read secret key',
    path: source,
    hint,
    cause,
  })
}

/**
 * Parses a secret key file. An encrypted key needs its `passphrase`.
 *
 * @example parseSecretKeyFile(await readFile('signing-1.key', 'utf8'), 'signing-1.key')
 */
export function parseSecretKeyFile(text: string, source: string, passphrase?: string): SecretKey {
  const block = PEM_BLOCK.exec(text)
  if (!block) {
    throw secretKeyError(
      source,
      'holds no PKCS#8 private key',
      'give the .key file imageswarm key generate wrote (root.key, signing-N.key), not a .pub',
    )
  }
  const encrypted = block[1] !== undefined
  if (encrypted && passphrase === undefined) {
    throw secretKeyError(
      source,
      'is encrypted',
      'give its passphrase with --root-key-passphrase-file FILE',
    )
  }
  let privateKey: KeyObject
  try {
    privateKey = createPrivateKey({
      key: block[0],
      format: 'pem',
      ...(encrypted ? { passphrase } : {}),
    })
  } catch (err) {
    throw secretKeyError(
      source,
      encrypted ? 'could not be decrypted' : 'could not be read',
      encrypted ? 'check the passphrase' : 'the file is damaged: restore it from its backup',
      err,
    )
  }
  if (privateKey.asymmetricKeyType !== 'ed25519') {
    throw secretKeyError(
      source,
      `is a ${privateKey.asymmetricKeyType} key, not ed25519`,
      'imageswarm signs with ed25519 keys: make them with imageswarm key generate',
    )
  }
  const key = fromPrivateKey(privateKey, createPublicKey(privateKey))
  const labelled = headerOf(text).get('key id')
  if (labelled !== undefined && labelled !== key.keyId) {
    throw secretKeyError(
      source,
      `says it is key ${labelled}, but the key in it is ${key.keyId}`,
      'the header was edited or two files were pasted together: restore the file from its backup',
    )
  }
  return key
}

function headerOf(text: string): Map<string, string> {
  const header = new Map<string, string>()
  for (const line of text.split('\n')) {
    if (line.startsWith('-----BEGIN')) break
    const match = HEADER_LINE.exec(line.trimEnd())
    if (match) header.set(match[1]!, match[2]!)
  }
  return header
}

/** Reads and parses a secret key file. */
export async function readSecretKeyFile(path: string, passphrase?: string): Promise<SecretKey> {
  let text: string
  try {
    const handle = await open(path, 'r')
    try {
      const { size } = await handle.stat()
      if (size > SECRET_KEY_FILE_MAX_BYTES) {
        throw secretKeyError(
          path,
          `is ${size} bytes`,
          'a secret key file is under 1 KiB: check the path',
        )
      }
      text = await handle.readFile('utf8')
    } finally {
      await handle.close()
    }
  } catch (err) {
    if (err instanceof ImageSwarmError) throw err
    throw secretKeyError(
      path,
      errnoOf(err) === 'ENOENT' ? 'does not exist' : 'cannot be read',
      errnoOf(err) === 'ENOENT'
        ? 'give the key with --root-key FILE (the root key lives offline), or check --keys DIR'
        : 'check its permissions (secret keys are 0600, owned by whoever signs)',
      err,
    )
  }
  return parseSecretKeyFile(text, path, passphrase)
}

/**
 * Writes a secret key file readable by its owner only (0600), refusing to replace one
 * that exists: a key lost to an overwrite cannot be made again.
 */
export async function writeSecretKeyFile(
  path: string,
  key: SecretKey,
  role: string,
  created: Date,
): Promise<void> {
  await writeNewFile(path, encodeSecretKeyFile(key, role, created), 0o600)
}

/**
 * Creates a file that must not exist yet (`wx`), synced before it is closed: `E_KEYS_EXIST`
 * names it if it does.
 */
export async function writeNewFile(path: string, data: string, mode: number): Promise<void> {
  let handle: Awaited<ReturnType<typeof open>>
  try {
    handle = await open(path, 'wx', mode)
  } catch (err) {
    if (errnoOf(err) === 'EEXIST') {
      throw new ImageSwarmError('E_KEYS_EXIST', `${path} exists already`, {
        operation: 'write key',
        path,
        hint: 'imageswarm never replaces a key: choose another directory, or move the old keys away first',
      })
    }
    throw err
  }
  try {
    // The mode given to open() is masked by the umask; a secret key must be 0600 whatever it is.
    await handle.chmod(mode)
    await handle.writeFile(data)
    await handle.sync()
  } catch (err) {
    await handle.close()
    // A half-written key would be refused as existing by the next attempt.
    await unlink(path).catch(() => undefined)
    throw err
  }
  await handle.close()
}

/** Reads a passphrase file: its first line, without the newline. */
export async function readPassphraseFile(path: string): Promise<string> {
  try {
    const text = await readFile(path, 'utf8')
    return text.split('\n')[0]!.replace(/\r$/, '')
  } catch (err) {
    throw new ImageSwarmError('E_KEY_FILE_INVALID', `passphrase file ${path} cannot be read`, {
      operation: 'read passphrase',
      path,
      hint: 'check the path and its permissions',
      cause: err,
    })
  }
}
