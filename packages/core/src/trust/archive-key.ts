import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto'
import { ImageSwarmError } from '../errors.js'

/**
 * Keys for encrypted archives. Each encrypted archive has its own random 32-byte archive
 * key; the signed manifest carries it wrapped once per node group, with that group's key
 * (32 random bytes, delivered to the group's nodes over HTTPS in phase 2). A group left out
 * of a version's manifest cannot open that version, whatever keys it held before.
 */
export const ARCHIVE_KEY_BYTES = 32
const WRAP_NONCE_BYTES = 12
const WRAP_TAG_BYTES = 16
const WRAPPED_KEY_BYTES = WRAP_NONCE_BYTES + ARCHIVE_KEY_BYTES + WRAP_TAG_BYTES

/**
 * Seals a 32-byte key under another: nonce (12, random) ‖ AES-256-GCM(key) (32) ‖ tag (16),
 * `aad` binding it to what it is for. How an archive key is wrapped for a group and a group
 * key sealed for a node.
 */
export function sealKey(key: Buffer, sealingKey: Buffer, aad: Buffer): Buffer {
  const nonce = randomBytes(WRAP_NONCE_BYTES)
  const cipher = createCipheriv('aes-256-gcm', sealingKey, nonce, { authTagLength: WRAP_TAG_BYTES })
  cipher.setAAD(aad)
  return Buffer.concat([nonce, cipher.update(key), cipher.final(), cipher.getAuthTag()])
}

/** Opens what `sealKey` sealed; undefined when it is not a sealed key or does not open. */
export function openSealedKey(sealed: Buffer, sealingKey: Buffer, aad: Buffer): Buffer | undefined {
  if (sealed.length !== WRAPPED_KEY_BYTES) return undefined
  try {
    const decipher = createDecipheriv(
      'aes-256-gcm',
      sealingKey,
      sealed.subarray(0, WRAP_NONCE_BYTES),
      { authTagLength: WRAP_TAG_BYTES },
    )
    decipher.setAAD(aad)
    decipher.setAuthTag(sealed.subarray(WRAP_NONCE_BYTES + ARCHIVE_KEY_BYTES))
    return Buffer.concat([
      decipher.update(sealed.subarray(WRAP_NONCE_BYTES, WRAP_NONCE_BYTES + ARCHIVE_KEY_BYTES)),
      decipher.final(),
    ])
  } catch {
    return undefined
  }
}

/** A node group's name: what `imageswarm.group=` and the server's group list call it. */
export const GROUP_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/

/** A symmetric key with the id it is known by (16 upper-case hex digits). */
export interface ArchiveKey {
  keyId: string
  key: Buffer
}

export interface GroupKey {
  group: string
  keyId: string
  key: Buffer
}

/** An archive key wrapped for one group, as the manifest lists it. */
export interface WrappedArchiveKey {
  group: string
  groupKeyId: string
  /** base64(nonce (12) ‖ AES-256-GCM ciphertext of the archive key (32) ‖ tag (16)). */
  wrappedKey: string
}

/**
 * A key's id: 8 bytes of SHA-256 over a label and the key. It names the key without
 * revealing it, and commits to it: a client that unwraps a key whose id is not the one the
 * signed manifest names has the wrong key, and says so before decrypting anything.
 */
function symmetricKeyId(label: string, key: Buffer): string {
  return createHash('sha256')
    .update(`imageswarm ${label} key id\0`)
    .update(key)
    .digest()
    .subarray(0, 8)
    .toString('hex')
    .toUpperCase()
}

function checkKeyLength(key: Buffer): void {
  if (key.length !== ARCHIVE_KEY_BYTES) throw new TypeError('a key is 32 bytes')
}

export function archiveKeyFromBytes(key: Buffer): ArchiveKey {
  checkKeyLength(key)
  return { keyId: symmetricKeyId('archive', key), key }
}

/** A fresh random archive key: one per encrypted archive, never reused. */
export function generateArchiveKey(): ArchiveKey {
  return archiveKeyFromBytes(randomBytes(ARCHIVE_KEY_BYTES))
}

export function groupKeyFromBytes(group: string, key: Buffer): GroupKey {
  if (!GROUP_NAME_PATTERN.test(group)) {
    throw new TypeError(`not a group name: ${JSON.stringify(group)}`)
  }
  checkKeyLength(key)
  return { group, keyId: symmetricKeyId('group', key), key }
}

/** A new group key: 32 random bytes. */
export function generateGroupKey(group: string): GroupKey {
  return groupKeyFromBytes(group, randomBytes(ARCHIVE_KEY_BYTES))
}

/**
 * A group key file: `group: NAME`, `key id: ID` and `key: BASE64` lines. Phase 2 keeps these
 * on the server and hands each node its group's key over HTTPS.
 */
export function encodeGroupKeyFile(groupKey: GroupKey): string {
  return [
    '# imageswarm group key: keep it secret (0600); it opens every archive of its group',
    `group: ${groupKey.group}`,
    `key id: ${groupKey.keyId}`,
    `key: ${groupKey.key.toString('base64')}`,
    '',
  ].join('\n')
}

export function parseGroupKeyFile(text: string, source: string): GroupKey {
  const fields = new Map<string, string>()
  for (const line of text.split('\n')) {
    const match = /^([a-z ]+): (.*)$/.exec(line.trimEnd())
    if (match) fields.set(match[1]!, match[2]!)
  }
  const invalid = (what: string) =>
    new ImageSwarmError('E_KEY_FILE_INVALID', `group key ${source} ${what}`, {
      operation: 'read group key',
      path: source,
      hint: 'a group key file has group:, key id: and key: lines: restore it from the server',
    })
  const group = fields.get('group')
  const encoded = fields.get('key')
  if (group === undefined || !GROUP_NAME_PATTERN.test(group)) throw invalid('has no valid group')
  const key = encoded === undefined ? undefined : Buffer.from(encoded, 'base64')
  if (key === undefined || key.length !== ARCHIVE_KEY_BYTES || key.toString('base64') !== encoded) {
    throw invalid('has no 32-byte base64 key')
  }
  const groupKey = groupKeyFromBytes(group, key)
  const labelled = fields.get('key id')
  if (labelled !== undefined && labelled !== groupKey.keyId) {
    throw invalid(`says key id ${labelled}, but the key's id is ${groupKey.keyId}`)
  }
  return groupKey
}

/** Binds a wrapped key to its group and to the archive key it holds. */
function wrapAad(group: string, groupKeyId: string, archiveKeyId: string): Buffer {
  return Buffer.from(`imageswarm archive key wrap v1\0${group}\0${groupKeyId}\0${archiveKeyId}`)
}

/**
 * Wraps an archive key for one group: AES-256-GCM under the group key, a random nonce, the
 * group's name and key id and the archive key's id as additional data.
 *
 * @example manifest.encryption.wrappedKeys = groups.map((g) => wrapArchiveKey(archiveKey, g))
 */
export function wrapArchiveKey(archiveKey: ArchiveKey, groupKey: GroupKey): WrappedArchiveKey {
  const wrapped = sealKey(
    archiveKey.key,
    groupKey.key,
    wrapAad(groupKey.group, groupKey.keyId, archiveKey.keyId),
  )
  return {
    group: groupKey.group,
    groupKeyId: groupKey.keyId,
    wrappedKey: wrapped.toString('base64'),
  }
}

/**
 * Finds the archive key wrapped for this node's group and unwraps it: refuses with
 * `E_ARCHIVE_KEY_UNAVAILABLE` when the image is not encrypted for the group (another group,
 * a revoked group, an old group key) and `E_DECRYPT_FAILED` when the wrapping does not open
 * or holds another key than the manifest names.
 */
export function unwrapArchiveKey(
  wrappedKeys: readonly WrappedArchiveKey[],
  archiveKeyId: string,
  groupKey: GroupKey,
  source: string,
): ArchiveKey {
  const entry = wrappedKeys.find(
    (wrapped) => wrapped.group === groupKey.group && wrapped.groupKeyId === groupKey.keyId,
  )
  if (!entry) {
    const forGroup = wrappedKeys.find((wrapped) => wrapped.group === groupKey.group)
    throw new ImageSwarmError(
      'E_ARCHIVE_KEY_UNAVAILABLE',
      forGroup
        ? `${source} is encrypted for group ${groupKey.group} under key ${forGroup.groupKeyId}, not under this node's key ${groupKey.keyId}`
        : `${source} is not encrypted for group ${groupKey.group} (it is for: ${wrappedKeys.map((wrapped) => wrapped.group).join(', ') || 'no group'})`,
      {
        operation: 'unwrap archive key',
        path: source,
        hint: forGroup
          ? "the group's key was replaced: the node needs the current group key from the server"
          : "the node is in the wrong group, or its group was revoked: check imageswarm.group= and the server's groups",
      },
    )
  }
  const failed = (what: string) =>
    new ImageSwarmError('E_DECRYPT_FAILED', `the archive key of ${source} ${what}`, {
      operation: 'unwrap archive key',
      path: source,
      hint: 'the manifest or the group key is damaged: fetch the group key again; if it persists, republish the image',
    })
  const wrapped = Buffer.from(entry.wrappedKey, 'base64')
  if (wrapped.length !== WRAPPED_KEY_BYTES) throw failed('is not a wrapped 32-byte key')
  const key = openSealedKey(
    wrapped,
    groupKey.key,
    wrapAad(groupKey.group, groupKey.keyId, archiveKeyId),
  )
  if (key === undefined) {
    throw failed(`does not open with group ${groupKey.group}'s key ${groupKey.keyId}`)
  }
  const archiveKey = archiveKeyFromBytes(key)
  if (archiveKey.keyId !== archiveKeyId) {
    throw failed(`is key ${archiveKey.keyId}, not the key ${archiveKeyId} the manifest names`)
  }
  return archiveKey
}
