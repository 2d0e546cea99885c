import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { KEY_FILES, signingKeyFileNames, writeKeyList } from '../trust/key-directory.js'
import { KEY_LIST_TYPE, type KeyList, signingKeyEntry, signKeyList } from '../trust/key-list.js'
import { encodePublicKeyFile } from '../trust/minisign.js'
import { generateSecretKey, type SecretKey, writeSecretKeyFile } from '../trust/secret-key.js'

/** A key directory made for a test, and its keys. */
export interface KeyDirectoryFixture {
  dir: string
  root: SecretKey
  signing: SecretKey
  keyList: KeyList
}

/**
 * Writes a key directory as `imageswarm key generate --output DIR` does (root.pub, root.key,
 * signing-1.pub/.key, keys.json signed by the root), with the key list valid from `now`
 * for `days`.
 *
 * @example const keys = await writeKeyDirectoryFixture(join(tmp, 'keys'), { now: new Date() })
 */
export async function writeKeyDirectoryFixture(
  dir: string,
  options: { now: Date; days?: number },
): Promise<KeyDirectoryFixture> {
  const { now } = options
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const root = generateSecretKey()
  const signing = generateSecretKey()
  await writeSecretKeyFile(join(dir, KEY_FILES.rootSecretKey), root, 'root', now)
  await writeSecretKeyFile(join(dir, signingKeyFileNames(1).secretKey), signing, 'signing', now)
  await writeFile(join(dir, KEY_FILES.rootPublicKey), encodePublicKeyFile(root.publicKey))
  await writeFile(
    join(dir, signingKeyFileNames(1).publicKey),
    encodePublicKeyFile(signing.publicKey),
  )
  const keyList: KeyList = {
    type: KEY_LIST_TYPE,
    schemaVersion: 1,
    version: 1,
    created: now.toISOString(),
    expires: new Date(now.getTime() + (options.days ?? 365) * 86_400_000).toISOString(),
    rootKeyId: root.keyId,
    signingKeys: [signingKeyEntry(signing.publicKey, now)],
    revokedKeyIds: [],
  }
  await writeKeyList(dir, signKeyList(keyList, root))
  return { dir, root, signing, keyList }
}
