import { createHash, createPublicKey, type KeyObject, sign, verify } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { ImageSwarmError } from '../errors.js'

/**
 * minisign's formats (https://jedisct1.github.io/minisign/), so that stock `minisign -V`
 * verifies what imageswarm signs and imageswarm verifies what `minisign -S` signs:
 *
 * - public key: `untrusted comment: …` and base64("Ed" ‖ key id (8 bytes) ‖ ed25519 key (32));
 * - signature (`.minisig`): `untrusted comment: …`, base64("ED" ‖ key id ‖ ed25519 signature
 *   over BLAKE2b-512 of the file), `trusted comment: …`, base64(ed25519 signature over the
 *   first signature ‖ the trusted comment).
 *
 * Secret keys are imageswarm's own format (see secret-key.ts): minisign's is scrypt-encrypted
 * with a BLAKE2b-256 checksum, which Node's crypto cannot compute.
 */

/** A key id is 8 bytes; minisign shows it as the little-endian number in upper-case hex. */
export const KEY_ID_BYTES = 8
const ED25519_PUBLIC_KEY_BYTES = 32
const ED25519_SIGNATURE_BYTES = 64
const PUBLIC_KEY_ALGORITHM = 'Ed'
/** "ED": the signature covers BLAKE2b-512 of the file (minisign's default since 0.10). */
const PREHASHED_ALGORITHM = 'ED'
/** "Ed": minisign's legacy signatures over the whole file, which imageswarm refuses. */
const LEGACY_ALGORITHM = 'Ed'
const UNTRUSTED_PREFIX = 'untrusted comment: '
const TRUSTED_PREFIX = 'trusted comment: '
/** minisign reads at most 1024 bytes of an untrusted comment line (COMMENTMAXBYTES). */
const UNTRUSTED_COMMENT_MAX_BYTES = 1024 - UNTRUSTED_PREFIX.length - 2
/** minisign reads the trusted comment line into 8192 bytes (TRUSTEDCOMMENTMAXBYTES). */
const TRUSTED_COMMENT_MAX_BYTES = 8192 - TRUSTED_PREFIX.length - 2
/** A signature file is four short lines; anything much longer is not one. */
const SIGNATURE_FILE_MAX_BYTES = 16 * 1024

const KEY_ID_HEX = /^[0-9A-F]{16}$/

/** A public key as minisign holds it: its 8-byte id and the ed25519 key. */
export interface MinisignPublicKey {
  /** 16 upper-case hex digits, as minisign prints it (`minisign public key 5D4E…`). */
  keyId: string
  key: KeyObject
  /** The key's 32 raw bytes. */
  raw: Buffer
}

/** A parsed `.minisig`. */
export interface MinisignSignature {
  keyId: string
  signature: Buffer
  trustedComment: string
  globalSignature: Buffer
  untrustedComment: string
}

/** What a verified signature says: who signed, and the comment they signed with it. */
export interface VerifiedSignature {
  keyId: string
  trustedComment: string
}

/** What can sign: a key id and the ed25519 private key (see secret-key.ts). */
export interface Signer {
  keyId: string
  privateKey: KeyObject
}

/** The 8 key-id bytes as minisign prints them: little-endian, upper-case hex. */
export function formatKeyId(bytes: Uint8Array): string {
  return Buffer.from(bytes).reverse().toString('hex').toUpperCase()
}

/** The bytes of a key id in minisign's display form (16 hex digits). */
export function keyIdBytes(keyId: string): Buffer {
  if (!KEY_ID_HEX.test(keyId)) throw new TypeError(`not a key id: ${JSON.stringify(keyId)}`)
  return Buffer.from(keyId, 'hex').reverse()
}

export function isKeyId(value: string): boolean {
  return KEY_ID_HEX.test(value)
}

/**
 * The key id imageswarm gives its own keys: the first 8 bytes of BLAKE2b-512 of the public
 * key. minisign draws its ids at random; deriving ours means a secret key file needs no
 * sidecar and its id cannot drift from the key. Verification reads whatever id a key has.
 */
export function deriveKeyId(rawPublicKey: Uint8Array): string {
  const digest = createHash('blake2b512').update(rawPublicKey).digest()
  return formatKeyId(digest.subarray(0, KEY_ID_BYTES))
}

/** A minisign public key from Node's ed25519 KeyObject, with the given id. */
export function toMinisignPublicKey(key: KeyObject, keyId: string): MinisignPublicKey {
  const jwk = key.export({ format: 'jwk' })
  if (jwk.crv !== 'Ed25519' || typeof jwk.x !== 'string') {
    throw new TypeError('not an ed25519 public key')
  }
  return { keyId, key, raw: Buffer.from(jwk.x, 'base64url') }
}

function ed25519PublicKey(raw: Buffer): KeyObject {
  return createPublicKey({
    key: { kty: 'OKP', crv: 'Ed25519', x: raw.toString('base64url') },
    format: 'jwk',
  })
}

/** The base64 line of a public key (what `minisign -P` takes and keys.json lists). */
export function encodePublicKeyLine(publicKey: MinisignPublicKey): string {
  return Buffer.concat([
    Buffer.from(PUBLIC_KEY_ALGORITHM, 'latin1'),
    keyIdBytes(publicKey.keyId),
    publicKey.raw,
  ]).toString('base64')
}

/**
 * A public key file as `minisign -G` writes it.
 *
 * @example await writeFile('root.pub', encodePublicKeyFile(root.publicKey))
 */
export function encodePublicKeyFile(publicKey: MinisignPublicKey, comment?: string): string {
  const untrusted = checkComment(
    comment ?? `minisign public key ${publicKey.keyId}`,
    UNTRUSTED_COMMENT_MAX_BYTES,
    'untrusted comment',
  )
  return `${UNTRUSTED_PREFIX}${untrusted}\n${encodePublicKeyLine(publicKey)}\n`
}

/** Decodes base64 the way libsodium's strict decoder does: only canonical base64 passes. */
function decodeBase64(text: string): Buffer | undefined {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) return undefined
  const bytes = Buffer.from(text, 'base64')
  return bytes.toString('base64') === text ? bytes : undefined
}

function keyFileError(source: string, what: string): ImageSwarmError {
  return new ImageSwarmError(
    'E_KEY_FILE_INVALID',
    `${source} is not a minisign public key: ${what}`,
    {
      operation: 'read public key',
      path: source,
      hint: 'a minisign public key file is two lines: "untrusted comment: …" and a base64 line starting "RW" (imageswarm key generate writes root.pub)',
    },
  )
}

/** Parses the base64 line of a minisign public key (`RW…`). */
export function parsePublicKeyLine(line: string, source: string): MinisignPublicKey {
  const bytes = decodeBase64(line.trim())
  if (bytes === undefined || bytes.length !== 2 + KEY_ID_BYTES + ED25519_PUBLIC_KEY_BYTES) {
    throw keyFileError(source, 'the key line is not 42 bytes of base64')
  }
  const algorithm = bytes.subarray(0, 2).toString('latin1')
  if (algorithm !== PUBLIC_KEY_ALGORITHM) {
    throw keyFileError(source, `unsupported algorithm ${JSON.stringify(algorithm)} (expected "Ed")`)
  }
  const raw = Buffer.from(bytes.subarray(2 + KEY_ID_BYTES))
  return {
    keyId: formatKeyId(bytes.subarray(2, 2 + KEY_ID_BYTES)),
    key: ed25519PublicKey(raw),
    raw,
  }
}

/**
 * Parses a minisign public key file (`minisign.pub`, our `root.pub`).
 *
 * @example parsePublicKeyFile(await readFile('/etc/imageswarm/root.pub', 'utf8'), 'root.pub')
 */
export function parsePublicKeyFile(text: string, source: string): MinisignPublicKey {
  const lines = splitLines(text)
  if (lines.length < 2 || lines.slice(2).some((line) => line !== '')) {
    throw keyFileError(source, 'expected two lines')
  }
  if (!lines[0]!.startsWith(UNTRUSTED_PREFIX)) {
    throw keyFileError(source, `the first line does not start with "${UNTRUSTED_PREFIX}"`)
  }
  return parsePublicKeyLine(lines[1]!, source)
}

/** Lines as minisign reads them: split at \n, a trailing \r dropped, nothing else trimmed. */
function splitLines(text: string): string[] {
  const lines = text.split('\n').map((line) => (line.endsWith('\r') ? line.slice(0, -1) : line))
  if (lines.at(-1) === '') lines.pop()
  return lines
}

function checkComment(comment: string, maxBytes: number, what: string): string {
  if (/[\r\n]/.test(comment)) throw new TypeError(`a ${what} is one line`)
  if (Buffer.byteLength(comment) > maxBytes) {
    throw new TypeError(`a ${what} is at most ${maxBytes} bytes`)
  }
  return comment
}

/** BLAKE2b-512 of some bytes: what an "ED" signature signs. */
export function prehash(message: Uint8Array): Buffer {
  return createHash('blake2b512').update(message).digest()
}

/** BLAKE2b-512 of a file, streamed, so a signed archive needs no memory of its size. */
export async function prehashFile(path: string, signal?: AbortSignal): Promise<Buffer> {
  const hash = createHash('blake2b512')
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20, signal })) {
    hash.update(chunk as Buffer)
  }
  return hash.digest()
}

export interface SignOptions {
  /** Signed with the file (minisign -t); one line. */
  trustedComment: string
  /** Not signed (minisign -c); one line. */
  untrustedComment?: string
}

/**
 * A `.minisig` for a message, given as its BLAKE2b-512 digest (`prehash`, `prehashFile`).
 *
 * @example
 *   const minisig = signPrehashed(prehash(bytes), signingKey, {
 *     trustedComment: 'imageswarm manifest image=compute serial=7',
 *   })
 */
export function signPrehashed(digest: Buffer, signer: Signer, options: SignOptions): string {
  if (digest.length !== 64) throw new TypeError('expected a BLAKE2b-512 digest (64 bytes)')
  const trusted = checkComment(options.trustedComment, TRUSTED_COMMENT_MAX_BYTES, 'trusted comment')
  const untrusted = checkComment(
    options.untrustedComment ?? `signature from imageswarm key ${signer.keyId}`,
    UNTRUSTED_COMMENT_MAX_BYTES,
    'untrusted comment',
  )
  const signature = sign(null, digest, signer.privateKey)
  const globalSignature = sign(
    null,
    Buffer.concat([signature, Buffer.from(trusted, 'utf8')]),
    signer.privateKey,
  )
  const signatureLine = Buffer.concat([
    Buffer.from(PREHASHED_ALGORITHM, 'latin1'),
    keyIdBytes(signer.keyId),
    signature,
  ]).toString('base64')
  return [
    `${UNTRUSTED_PREFIX}${untrusted}`,
    signatureLine,
    `${TRUSTED_PREFIX}${trusted}`,
    globalSignature.toString('base64'),
    '',
  ].join('\n')
}

/** A `.minisig` for some bytes (a manifest, a key list). */
export function signBytes(message: Uint8Array, signer: Signer, options: SignOptions): string {
  return signPrehashed(prehash(message), signer, options)
}

function signatureError(source: string, what: string, hint?: string): ImageSwarmError {
  return new ImageSwarmError('E_SIGNATURE_INVALID', `signature ${source} ${what}`, {
    operation: 'verify signature',
    path: source,
    hint:
      hint ??
      'the file or its signature was altered or does not come from the key you trust: do not use it; fetch both again from the image server',
  })
}

/**
 * Parses a `.minisig`. Only prehashed ("ED") signatures are accepted: legacy "Ed" signatures
 * cover the raw file, which would give a verifier two algorithms to choose from (a downgrade
 * for anyone who can rewrite the signature file) and no streaming over large files; imageswarm
 * never makes them, and `minisign -V -H` refuses them the same way. Every other algorithm is
 * unknown and refused.
 */
export function parseSignature(text: string, source: string): MinisignSignature {
  if (Buffer.byteLength(text) > SIGNATURE_FILE_MAX_BYTES) {
    throw signatureError(source, `is larger than ${SIGNATURE_FILE_MAX_BYTES} bytes`)
  }
  const lines = splitLines(text)
  if (lines.length !== 4) {
    throw signatureError(source, `has ${lines.length} lines, a minisign signature has 4`)
  }
  const [untrustedLine, signatureLine, trustedLine, globalLine] = lines as [
    string,
    string,
    string,
    string,
  ]
  if (!untrustedLine.startsWith(UNTRUSTED_PREFIX)) {
    throw signatureError(source, `does not start with "${UNTRUSTED_PREFIX}"`)
  }
  if (!trustedLine.startsWith(TRUSTED_PREFIX)) {
    throw signatureError(source, `has no "${TRUSTED_PREFIX}" line`)
  }
  const signatureBytes = decodeBase64(signatureLine)
  if (
    signatureBytes === undefined ||
    signatureBytes.length !== 2 + KEY_ID_BYTES + ED25519_SIGNATURE_BYTES
  ) {
    throw signatureError(source, 'has a signature line that is not 74 bytes of base64')
  }
  const algorithm = signatureBytes.subarray(0, 2).toString('latin1')
  if (algorithm === LEGACY_ALGORITHM) {
    throw signatureError(
      source,
      'is a legacy (not prehashed) minisign signature, which imageswarm does not accept',
      'sign with minisign 0.10 or later without -l (or with imageswarm): signatures must be prehashed ("ED")',
    )
  }
  if (algorithm !== PREHASHED_ALGORITHM) {
    throw signatureError(
      source,
      `uses the unknown signature algorithm ${JSON.stringify(algorithm)}`,
    )
  }
  const globalSignature = decodeBase64(globalLine)
  if (globalSignature === undefined || globalSignature.length !== ED25519_SIGNATURE_BYTES) {
    throw signatureError(source, 'has a trusted-comment signature that is not 64 bytes of base64')
  }
  return {
    keyId: formatKeyId(signatureBytes.subarray(2, 2 + KEY_ID_BYTES)),
    signature: Buffer.from(signatureBytes.subarray(2 + KEY_ID_BYTES)),
    trustedComment: trustedLine.slice(TRUSTED_PREFIX.length),
    globalSignature,
    untrustedComment: untrustedLine.slice(UNTRUSTED_PREFIX.length),
  }
}

function checkSigner(
  signature: MinisignSignature,
  publicKey: MinisignPublicKey,
  source: string,
): void {
  if (signature.keyId !== publicKey.keyId) {
    throw signatureError(
      source,
      `was made by key ${signature.keyId}, not by the trusted key ${publicKey.keyId}`,
    )
  }
}

/**
 * Checks a parsed signature against a message digest and a public key, as `minisign -V`
 * does: the key ids agree, the signature covers the digest, and the second signature covers
 * the first and the trusted comment (so the comment cannot be swapped).
 */
export function verifyPrehashed(
  digest: Buffer,
  signature: MinisignSignature,
  publicKey: MinisignPublicKey,
  source: string,
): VerifiedSignature {
  checkSigner(signature, publicKey, source)
  if (!verify(null, digest, publicKey.key, signature.signature)) {
    throw signatureError(source, `does not match the signed file (key ${publicKey.keyId})`)
  }
  const signedComment = Buffer.concat([
    signature.signature,
    Buffer.from(signature.trustedComment, 'utf8'),
  ])
  if (!verify(null, signedComment, publicKey.key, signature.globalSignature)) {
    throw signatureError(source, 'has a trusted comment that was altered')
  }
  return { keyId: signature.keyId, trustedComment: signature.trustedComment }
}

/**
 * Verifies a `.minisig` over some bytes.
 *
 * @example
 *   const { trustedComment } = verifyBytes(bytes, minisigText, rootKey, 'keys.json.minisig')
 */
export function verifyBytes(
  message: Uint8Array,
  signatureText: string,
  publicKey: MinisignPublicKey,
  source: string,
): VerifiedSignature {
  return verifyPrehashed(prehash(message), parseSignature(signatureText, source), publicKey, source)
}

/** Verifies a `.minisig` over a file of any size, streaming it through BLAKE2b-512. */
export async function verifyFile(
  path: string,
  signatureText: string,
  publicKey: MinisignPublicKey,
  source: string,
): Promise<VerifiedSignature> {
  const signature = parseSignature(signatureText, source)
  // A signature by another key is refused before reading what may be gigabytes.
  checkSigner(signature, publicKey, source)
  return verifyPrehashed(await prehashFile(path), signature, publicKey, source)
}
