import { existsSync } from 'node:fs'
import { mkdir, readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { writeFileAtomically } from '../durable-file.js'
import { errnoOf, ImageSwarmError } from '../errors.js'
import { type KeyList, type SignedKeyList, verifyKeyList } from './key-list.js'
import { type MinisignPublicKey, parsePublicKeyFile } from './minisign.js'
import { readSecretKeyFile, type SecretKey, writeNewFile } from './secret-key.js'

/**
 * A key directory, as `imageswarm key generate --output DIR` makes it and `serve --keys DIR`
 * reads it:
 *
 * | file | what |
 * | --- | --- |
 * | `root.pub` | the root public key (minisign); it goes into the installer ramdisk |
 * | `root.key` | the root secret key (0600); kept offline, `--root-key FILE` elsewhere |
 * | `signing-N.pub`, `signing-N.key` | signing keys (the `.key` 0600); the server signs with the newest usable one |
 * | `keys.json`, `keys.json.minisig` | the key list and the root's signature over it |
 * | `history/keys-N.json[.minisig]` | every key list ever signed, by version |
 */
export const KEY_FILES = {
  rootPublicKey: 'root.pub',
  rootSecretKey: 'root.key',
  keyList: 'keys.json',
  keyListSignature: 'keys.json.minisig',
  history: 'history',
} as const

const SIGNING_PUBLIC_KEY = /^signing-([1-9][0-9]{0,8})\.pub$/

export function signingKeyFileNames(number: number): { publicKey: string; secretKey: string } {
  return { publicKey: `signing-${number}.pub`, secretKey: `signing-${number}.key` }
}

/** A `signing-N.pub` in the directory, and whether its `.key` is there too. */
export interface SigningKeyFile {
  number: number
  publicKey: MinisignPublicKey
  publicPath: string
  secretPath: string
  hasSecretKey: boolean
}

export interface KeyDirectory {
  dir: string
  rootPublicKey: MinisignPublicKey
  /** Verified against `root.pub`. */
  keyList: KeyList
  keyListBytes: Buffer
  keyListSignature: string
  /** By number, oldest first. */
  signingKeyFiles: SigningKeyFile[]
}

function notAKeyDirectory(dir: string, file: string, cause: unknown): ImageSwarmError {
  return new ImageSwarmError(
    'E_KEY_FILE_INVALID',
    `${join(dir, file)} ${errnoOf(cause) === 'ENOENT' ? 'does not exist' : 'cannot be read'}`,
    {
      operation: 'read key directory',
      path: join(dir, file),
      hint: 'give the directory imageswarm key generate --output DIR made (--keys DIR)',
      cause,
    },
  )
}

async function readIn(dir: string, file: string): Promise<Buffer> {
  try {
    return await readFile(join(dir, file))
  } catch (err) {
    throw notAKeyDirectory(dir, file, err)
  }
}

/**
 * Reads a key directory and verifies its key list against its `root.pub`. An expired list is
 * read when `allowExpired` (to show it, to renew it), refused otherwise.
 *
 * @example const keys = await readKeyDirectory('/etc/imageswarm/keys', { now: new Date() })
 */
export async function readKeyDirectory(
  dir: string,
  options: { now: Date; allowExpired?: boolean },
): Promise<KeyDirectory> {
  const rootPath = join(dir, KEY_FILES.rootPublicKey)
  const rootPublicKey = parsePublicKeyFile(
    (await readIn(dir, KEY_FILES.rootPublicKey)).toString('utf8'),
    rootPath,
  )
  const keyListBytes = await readIn(dir, KEY_FILES.keyList)
  const keyListSignature = (await readIn(dir, KEY_FILES.keyListSignature)).toString('utf8')
  let keyList: KeyList
  try {
    keyList = verifyKeyList(
      keyListBytes,
      keyListSignature,
      rootPublicKey,
      { now: options.now, allowExpired: options.allowExpired ?? false },
      join(dir, KEY_FILES.keyList),
    ).keyList
  } catch (err) {
    if (err instanceof ImageSwarmError && err.code === 'E_KEYLIST_UNTRUSTED') {
      // In the server's own directory, root.pub is the right root: a pair that does not
      // verify is an interrupted key command (see writeKeyList) or an edit.
      throw new ImageSwarmError(err.code, err.message, {
        operation: err.operation,
        path: err.path,
        hint: `keys.json and keys.json.minisig do not belong together: copy the newest ${KEY_FILES.history}/keys-N.json and its .minisig over them`,
        cause: err,
      })
    }
    throw err
  }
  const signingKeyFiles: SigningKeyFile[] = []
  for (const name of await readdir(dir)) {
    const match = SIGNING_PUBLIC_KEY.exec(name)
    if (!match) continue
    const number = Number(match[1])
    const publicPath = join(dir, name)
    const secretPath = join(dir, signingKeyFileNames(number).secretKey)
    signingKeyFiles.push({
      number,
      publicKey: parsePublicKeyFile(await readFile(publicPath, 'utf8'), publicPath),
      publicPath,
      secretPath,
      hasSecretKey: existsSync(secretPath),
    })
  }
  signingKeyFiles.sort((a, b) => a.number - b.number)
  return { dir, rootPublicKey, keyList, keyListBytes, keyListSignature, signingKeyFiles }
}

/** How a signing key stands in a key list at a time. */
export type SigningKeyStatus = 'listed' | 'revoked' | 'expired' | 'unlisted'

export function signingKeyStatus(keyList: KeyList, keyId: string, now: Date): SigningKeyStatus {
  if (keyList.revokedKeyIds.includes(keyId)) return 'revoked'
  const entry = keyList.signingKeys.find((key) => key.keyId === keyId)
  if (!entry) return 'unlisted'
  if (entry.notAfter !== undefined && Date.parse(entry.notAfter) <= now.getTime()) return 'expired'
  return 'listed'
}

/**
 * The key the server signs with: of the signing keys the key list accepts now, the newest
 * (highest N) whose `signing-N.key` is in the directory.
 */
export function usableSigningKeyFile(keys: KeyDirectory, now: Date): SigningKeyFile | undefined {
  return keys.signingKeyFiles
    .filter((file) => file.hasSecretKey)
    .filter((file) => signingKeyStatus(keys.keyList, file.publicKey.keyId, now) === 'listed')
    .at(-1)
}

/** Loads the server's signing key (see `usableSigningKeyFile`). */
export async function loadSigningKey(keys: KeyDirectory, now: Date): Promise<SecretKey> {
  const file = usableSigningKeyFile(keys, now)
  if (!file) {
    throw new ImageSwarmError(
      'E_KEY_FILE_INVALID',
      `${keys.dir} holds no signing key that key list version ${keys.keyList.version} accepts`,
      {
        operation: 'load signing key',
        path: keys.dir,
        hint: 'make one with imageswarm key rotate --keys DIR --root-key FILE',
      },
    )
  }
  const key = await readSecretKeyFile(file.secretPath)
  if (key.keyId !== file.publicKey.keyId) {
    throw new ImageSwarmError(
      'E_KEY_FILE_INVALID',
      `${file.secretPath} is key ${key.keyId}, but ${file.publicPath} is key ${file.publicKey.keyId}`,
      {
        operation: 'load signing key',
        path: file.secretPath,
        hint: 'the two files of a signing key were mixed up: restore them from the backup',
      },
    )
  }
  return key
}

/** The highest key list version in `history/`, or 0 when there is none. */
export async function newestKeyListInHistory(dir: string): Promise<number> {
  let names: string[]
  try {
    names = await readdir(join(dir, KEY_FILES.history))
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return 0
    throw err
  }
  return Math.max(
    0,
    ...names.map((name) => Number(/^keys-([1-9][0-9]*)\.json$/.exec(name)?.[1] ?? 0)),
  )
}

/**
 * Refuses to sign a key list when `history/` holds a version as new as the next one: the
 * directory's keys.json is older than a list the root already signed (a key command was
 * interrupted, or keys.json was restored from a backup). Signing another list under that
 * version would give nodes two different lists with one version.
 */
export async function checkNextKeyListVersion(keys: KeyDirectory): Promise<void> {
  const newest = await newestKeyListInHistory(keys.dir)
  if (newest <= keys.keyList.version) return
  const history = join(keys.dir, KEY_FILES.history)
  throw new ImageSwarmError(
    'E_KEYS_EXIST',
    `${join(keys.dir, KEY_FILES.keyList)} is version ${keys.keyList.version}, but the root already signed version ${newest} (${join(history, `keys-${newest}.json`)})`,
    {
      operation: 'sign key list',
      path: join(history, `keys-${newest}.json`),
      hint: `copy ${KEY_FILES.history}/keys-${newest}.json and its .minisig over keys.json and keys.json.minisig, then run the command again`,
    },
  )
}

/**
 * Writes a signed key list into the directory: first, as new files, into `history/` by
 * version; then over `keys.json.minisig` and `keys.json`, each replaced atomically. A crash
 * between those two leaves a pair that does not verify, and the complete pair in history/.
 */
export async function writeKeyList(dir: string, signed: SignedKeyList): Promise<void> {
  const history = join(dir, KEY_FILES.history)
  await mkdir(history, { recursive: true, mode: 0o755 })
  const version = signed.keyList.version
  await writeNewFile(join(history, `keys-${version}.json`), signed.bytes.toString('utf8'), 0o644)
  await writeNewFile(join(history, `keys-${version}.json.minisig`), signed.signature, 0o644)
  await writeFileAtomically(join(dir, KEY_FILES.keyListSignature), signed.signature)
  await writeFileAtomically(join(dir, KEY_FILES.keyList), signed.bytes)
}

/**
 * A root public key file (`root.pub` of `imageswarm key generate`): what a node
 * (`--trust-root`) and a mirror (`serve --mirror-of … --trust-root`) check key lists
 * against. One that cannot be read is `E_KEY_FILE_INVALID` with `hint`.
 */
export async function readTrustRootFile(
  path: string,
  operation: string,
  hint: string,
): Promise<MinisignPublicKey> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    throw new ImageSwarmError(
      'E_KEY_FILE_INVALID',
      `trust root ${path} cannot be read (${errnoOf(err) ?? String(err)})`,
      { operation, path, hint, cause: err },
    )
  }
  return parsePublicKeyFile(text, path)
}
