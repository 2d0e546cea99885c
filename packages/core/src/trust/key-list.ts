import { createHash } from 'node:crypto'
import { z } from 'zod'
import { ImageSwarmError } from '../errors.js'
import {
  encodePublicKeyLine,
  type MinisignPublicKey,
  parsePublicKeyLine,
  parseSignature,
  prehash,
  type Signer,
  signBytes,
  verifyPrehashed,
} from './minisign.js'

/**
 * The key list (`keys.json`, signed by the root key in `keys.json.minisig`), as TUF's root
 * metadata and OSTree's trusted keys do it: the offline root key, baked into the installer
 * ramdisk, vouches for the online signing keys; rotating or revoking a signing key is a new
 * key list with a higher version, never a new ramdisk.
 *
 * @example
 *   {
 *     "type": "imageswarm-key-list", "schemaVersion": 1, "version": 2,
 *     "created": "2025-06-01T12:00:00.000Z", "expires": "2026-06-01T12:00:00.000Z",
 *     "rootKeyId": "5D4E3C2B1A098877",
 *     "signingKeys": [{ "keyId": "0F1E2D3C4B5A6978", "publicKey": "RWR4aVpLPC0eD…",
 *                       "added": "2025-06-01T12:00:00.000Z" }],
 *     "revokedKeyIds": ["8877665544332211"],
 *     "tlsCertificates": [{ "sha256": "9f86d081884c7d65…" }]
 *   }
 */
export const KEY_LIST_TYPE = 'imageswarm-key-list'

/** A key list is a few KiB; this bounds what a hostile server can make a node read. */
export const KEY_LIST_MAX_BYTES = 1024 * 1024

const KeyId = z.string().regex(/^[0-9A-F]{16}$/, 'a key id (16 upper-case hex digits)')
const Timestamp = z.iso.datetime()

const SigningKeyEntrySchema = z.strictObject({
  keyId: KeyId,
  /** The key's minisign base64 line (what a `.pub` file's second line holds). */
  publicKey: z.string().max(100),
  /** When the key was added (for the administrator). */
  added: Timestamp,
  /** After this time, manifests signed by this key are refused. */
  notAfter: Timestamp.optional(),
})

const TlsCertificateSchema = z.strictObject({
  /** SHA-256 of the certificate's DER bytes, 64 lower-case hex digits. */
  sha256: z.string().regex(/^[0-9a-f]{64}$/, 'a SHA-256 fingerprint (64 lower-case hex digits)'),
  note: z.string().max(200).optional(),
})

export const KeyListSchema = z
  .strictObject({
    type: z.literal(KEY_LIST_TYPE),
    schemaVersion: z.literal(1),
    /** Grows by one with every list the root signs; a node refuses a lower one (rollback). */
    version: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
    created: Timestamp,
    /** After this time the list is refused: an attacker cannot replay an old list forever. */
    expires: Timestamp,
    /** The root key that signs this list. */
    rootKeyId: KeyId,
    signingKeys: z.array(SigningKeyEntrySchema).max(64),
    revokedKeyIds: z.array(KeyId).max(4096),
    /** Certificates of the image server that nodes pin for HTTPS (docs/trust.md, "HTTPS"). */
    tlsCertificates: z.array(TlsCertificateSchema).max(16).optional(),
  })
  .superRefine((list, ctx) => {
    const ids = list.signingKeys.map((key) => key.keyId)
    if (new Set(ids).size !== ids.length) {
      ctx.addIssue({ code: 'custom', path: ['signingKeys'], message: 'a key id is listed twice' })
    }
    for (const [index, entry] of list.signingKeys.entries()) {
      const line = parsePublicKeyLineOrUndefined(entry.publicKey)
      if (line === undefined || line.keyId !== entry.keyId) {
        ctx.addIssue({
          code: 'custom',
          path: ['signingKeys', index, 'publicKey'],
          message: `not the minisign public key of key ${entry.keyId}`,
        })
      }
      if (entry.keyId === list.rootKeyId) {
        ctx.addIssue({
          code: 'custom',
          path: ['signingKeys', index, 'keyId'],
          message: 'the root key never signs manifests: it stays offline',
        })
      }
      if (list.revokedKeyIds.includes(entry.keyId)) {
        ctx.addIssue({
          code: 'custom',
          path: ['signingKeys', index, 'keyId'],
          message: 'a revoked key cannot be a signing key',
        })
      }
    }
    if (Date.parse(list.expires) <= Date.parse(list.created)) {
      ctx.addIssue({ code: 'custom', path: ['expires'], message: 'expires before it was created' })
    }
  })

export type KeyList = z.output<typeof KeyListSchema>
export type SigningKeyEntry = z.output<typeof SigningKeyEntrySchema>

function parsePublicKeyLineOrUndefined(line: string): MinisignPublicKey | undefined {
  try {
    return parsePublicKeyLine(line, 'keys.json')
  } catch {
    return undefined
  }
}

/** A key list as verified: the document, its exact bytes' SHA-256, the signed comment. */
export interface VerifiedKeyList {
  keyList: KeyList
  sha256: string
  trustedComment: string
}

/** What a node already holds and what time it is, for `verifyKeyList`. */
export interface KeyListCheck {
  now: Date
  /** The highest key list version this node has accepted before (rollback protection). */
  seenVersion?: number
  /** SHA-256 of that list's bytes: the same version with other content is refused. */
  seenSha256?: string
  /** Reading an expired list is allowed (for `key list` and for renewing it), not trusting it. */
  allowExpired?: boolean
}

/**
 * Verifies a key list against the root public key, then parses it: refuses a list without
 * a signature (`E_SIGNATURE_MISSING`), one the root did not sign (`E_KEYLIST_UNTRUSTED`), a
 * malformed one (`E_KEYLIST_INVALID`), an expired one (`E_KEYLIST_EXPIRED`), one older than
 * a list seen before (`E_ROLLBACK`).
 *
 * @example
 *   const { keyList } = verifyKeyList(bytes, signatureText, rootKey, { now: new Date() },
 *     'http://10.0.0.1:6969/keys.json')
 */
export function verifyKeyList(
  bytes: Uint8Array,
  signatureText: string | undefined,
  root: MinisignPublicKey,
  check: KeyListCheck,
  source: string,
): VerifiedKeyList {
  if (signatureText === undefined) {
    throw new ImageSwarmError('E_SIGNATURE_MISSING', `key list ${source} has no signature`, {
      operation: 'verify key list',
      path: source,
      hint: 'the server must publish keys.json.minisig beside keys.json (imageswarm key generate writes both)',
    })
  }
  if (bytes.byteLength > KEY_LIST_MAX_BYTES) {
    throw keyListInvalid(source, `is ${bytes.byteLength} bytes, more than a key list can be`)
  }
  let trustedComment: string
  try {
    const signature = parseSignature(signatureText, `${source}.minisig`)
    trustedComment = verifyPrehashed(
      prehash(bytes),
      signature,
      root,
      `${source}.minisig`,
    ).trustedComment
  } catch (err) {
    throw new ImageSwarmError(
      'E_KEYLIST_UNTRUSTED',
      `key list ${source} is not signed by the trusted root key ${root.keyId}: ${err instanceof Error ? err.message : String(err)}`,
      {
        operation: 'verify key list',
        path: source,
        hint: "the node's root key (--trust-root, imageswarm.trust-root=) is not the root of this server's keys, or the list was forged: check both came from the same imageswarm key generate",
        cause: err,
      },
    )
  }
  const keyList = parseKeyList(bytes, source)
  const sha256 = createHash('sha256').update(bytes).digest('hex')
  if (keyList.rootKeyId !== root.keyId) {
    throw keyListInvalid(source, `names root key ${keyList.rootKeyId}, but ${root.keyId} signed it`)
  }
  if (!check.allowExpired && Date.parse(keyList.expires) <= check.now.getTime()) {
    throw new ImageSwarmError(
      'E_KEYLIST_EXPIRED',
      `key list ${source} (version ${keyList.version}) expired at ${keyList.expires}`,
      {
        operation: 'verify key list',
        path: source,
        hint: "renew it with the root key (imageswarm key renew --keys DIR --root-key FILE) and publish it; check the node's clock if it should not have expired",
      },
    )
  }
  if (check.seenVersion !== undefined && keyList.version < check.seenVersion) {
    throw new ImageSwarmError(
      'E_ROLLBACK',
      `key list ${source} is version ${keyList.version}, older than version ${check.seenVersion} this node already accepted`,
      {
        operation: 'verify key list',
        path: source,
        hint: 'someone serves an old key list (one that may still list a revoked key): publish the newest keys.json and keys.json.minisig',
      },
    )
  }
  if (
    check.seenVersion !== undefined &&
    check.seenSha256 !== undefined &&
    keyList.version === check.seenVersion &&
    sha256 !== check.seenSha256
  ) {
    throw keyListInvalid(
      source,
      `is version ${keyList.version} but differs from the version ${keyList.version} this node accepted`,
      'each key list the root signs needs a new version: make one with imageswarm key renew',
    )
  }
  return { keyList, sha256, trustedComment }
}

function keyListInvalid(source: string, what: string, hint?: string): ImageSwarmError {
  return new ImageSwarmError('E_KEYLIST_INVALID', `key list ${source} ${what}`, {
    operation: 'read key list',
    path: source,
    hint: hint ?? 'make key lists with imageswarm key commands only, never by hand',
  })
}

/** Parses key list bytes (already verified) with the strict schema. */
export function parseKeyList(bytes: Uint8Array, source: string): KeyList {
  let value: unknown
  try {
    value = JSON.parse(Buffer.from(bytes).toString('utf8'))
  } catch {
    throw keyListInvalid(source, 'is not JSON')
  }
  const result = KeyListSchema.safeParse(value)
  if (result.success) return result.data
  const issue = result.error.issues[0]
  throw keyListInvalid(
    source,
    `is invalid at ${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}`,
  )
}

/**
 * Whether manifests signed by `keyId` are acceptable under a verified key list, and its
 * public key if so: listed, not revoked, not past its `notAfter`.
 *
 * @example const key = acceptSigningKey(keyList, signature.keyId, new Date(), manifestUrl)
 */
export function acceptSigningKey(
  keyList: KeyList,
  keyId: string,
  now: Date,
  source: string,
): MinisignPublicKey {
  if (keyList.revokedKeyIds.includes(keyId)) {
    throw new ImageSwarmError(
      'E_KEY_REVOKED',
      `${source} is signed by key ${keyId}, which key list version ${keyList.version} revokes`,
      {
        operation: 'verify signature',
        path: source,
        hint: 'the server still signs with a revoked key: give serve the current signing key (imageswarm key rotate) and publish again',
      },
    )
  }
  const entry = keyList.signingKeys.find((key) => key.keyId === keyId)
  if (!entry) {
    throw new ImageSwarmError(
      'E_KEY_UNKNOWN',
      `${source} is signed by key ${keyId}, which key list version ${keyList.version} does not list`,
      {
        operation: 'verify signature',
        path: source,
        hint: `signing keys listed: ${keyList.signingKeys.map((key) => key.keyId).join(', ') || 'none'}; a forged manifest, or a server whose keys.json is older than its signing key`,
      },
    )
  }
  if (entry.notAfter !== undefined && Date.parse(entry.notAfter) <= now.getTime()) {
    throw new ImageSwarmError(
      'E_KEY_EXPIRED',
      `${source} is signed by key ${keyId}, which expired at ${entry.notAfter}`,
      {
        operation: 'verify signature',
        path: source,
        hint: 'rotate the signing key (imageswarm key rotate) and publish again',
      },
    )
  }
  return parsePublicKeyLine(entry.publicKey, source)
}

/** A key list entry for a signing key. */
export function signingKeyEntry(
  publicKey: MinisignPublicKey,
  added: Date,
  notAfter?: Date,
): SigningKeyEntry {
  return {
    keyId: publicKey.keyId,
    publicKey: encodePublicKeyLine(publicKey),
    added: added.toISOString(),
    ...(notAfter === undefined ? {} : { notAfter: notAfter.toISOString() }),
  }
}

/** The bytes of a key list as written to `keys.json` and signed. */
export function encodeKeyList(keyList: KeyList): Buffer {
  return Buffer.from(`${JSON.stringify(keyList, null, 2)}\n`, 'utf8')
}

/** A key list and its signature, as written to `keys.json` and `keys.json.minisig`. */
export interface SignedKeyList {
  keyList: KeyList
  bytes: Buffer
  signature: string
}

/**
 * Checks a key list against the schema, encodes it and signs it with the root key.
 *
 * @example const { bytes, signature } = signKeyList(keyList, rootKey)
 */
export function signKeyList(keyList: KeyList, root: Signer): SignedKeyList {
  const checked = KeyListSchema.parse(keyList)
  if (checked.rootKeyId !== root.keyId) {
    throw new TypeError(`key list names root ${checked.rootKeyId}, signing with ${root.keyId}`)
  }
  const bytes = encodeKeyList(checked)
  const signature = signBytes(bytes, root, {
    trustedComment: `imageswarm key list version=${checked.version} expires=${checked.expires}`,
    untrustedComment: `imageswarm key list version ${checked.version}, signed by root key ${root.keyId}`,
  })
  return { keyList: checked, bytes, signature }
}

/** What changes from one key list to the next. */
export interface KeyListChange {
  now: Date
  expires: Date
  add?: SigningKeyEntry[]
  /** Taken off the list (retired): manifests they signed are refused as unknown. */
  remove?: string[]
  /** Taken off and listed as revoked. */
  revoke?: string[]
  /** The server certificates nodes pin from this list on, replacing the previous list's. */
  tlsCertificates?: { sha256: string; note?: string }[]
}

/** The next key list: version + 1, the changes applied, new dates. */
export function nextKeyList(previous: KeyList, change: KeyListChange): KeyList {
  const gone = new Set([...(change.remove ?? []), ...(change.revoke ?? [])])
  const revoked = [...previous.revokedKeyIds]
  for (const keyId of change.revoke ?? []) if (!revoked.includes(keyId)) revoked.push(keyId)
  return {
    ...previous,
    version: previous.version + 1,
    created: change.now.toISOString(),
    expires: change.expires.toISOString(),
    signingKeys: [
      ...previous.signingKeys.filter((key) => !gone.has(key.keyId)),
      ...(change.add ?? []),
    ],
    revokedKeyIds: revoked,
    ...(change.tlsCertificates === undefined ? {} : { tlsCertificates: change.tlsCertificates }),
  }
}
