import { ImageSwarmError } from '../errors.js'
import { type ImageManifest, parseManifest } from '../manifest.js'
import { encryptedSize } from './archive-stream.js'
import { acceptSigningKey, type KeyList } from './key-list.js'
import {
  parseSignature,
  prehash,
  type Signer,
  signBytes,
  type VerifiedSignature,
  verifyPrehashed,
} from './minisign.js'

/**
 * Signed image manifests. What is signed is the manifest file's exact bytes: the server
 * encodes the manifest once (`encodeManifest`), signs those bytes into `manifest.json.minisig`
 * and serves both files verbatim, never a re-serialised object; the client verifies the bytes
 * it received and only then parses them. No canonical JSON is needed, and `minisign -V -m
 * manifest.json` checks the very file the client acted on.
 */

/** A manifest as a signed one must be: with a serial and an expiry. */
export type SignedImageManifest = ImageManifest & { serial: number; expires: string }

/** A manifest file is a few hundred bytes (a few KiB with wrapped keys for many groups). */
export const SIGNED_MANIFEST_MAX_BYTES = 1024 * 1024

/** The bytes of a manifest file: two-space JSON and a newline, as publishing writes it. */
export function encodeManifest(manifest: ImageManifest): Buffer {
  return Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`, 'utf8')
}

/** The trusted comment of a manifest signature: what `minisign -V` shows an operator. */
export function manifestTrustedComment(manifest: SignedImageManifest): string {
  return `imageswarm manifest image=${manifest.name} serial=${manifest.serial} expires=${manifest.expires} sha256=${manifest.sha256}`
}

/**
 * Encodes a manifest and signs the bytes with a signing key; the server writes `bytes` as
 * `manifest.json` and `signature` as `manifest.json.minisig`.
 *
 * @example
 *   const { bytes, signature } = signManifest({ ...manifest, serial: 8, expires }, signingKey)
 */
export function signManifest(
  manifest: ImageManifest,
  signer: Signer,
): { bytes: Buffer; signature: string } {
  if (manifest.serial === undefined || manifest.expires === undefined) {
    throw new TypeError('a signed manifest needs a serial and an expiry')
  }
  const bytes = encodeManifest(manifest)
  // Sign what a client will parse, so a manifest the schema refuses is never signed.
  parseManifest(JSON.parse(bytes.toString('utf8')), 'the manifest to sign')
  const signature = signBytes(bytes, signer, {
    trustedComment: manifestTrustedComment(manifest as SignedImageManifest),
    untrustedComment: `imageswarm manifest of image ${manifest.name}, signed by key ${signer.keyId}`,
  })
  return { bytes, signature }
}

/** What a node trusts and holds when it checks a manifest. */
export interface ManifestTrust {
  /** A key list verified against the node's root key (`verifyKeyList`). */
  keyList: KeyList
  now: Date
  /** The image the node asked for: a signed manifest of another image is refused. */
  image: string
  /**
   * The lowest serial the node accepts: the larger of the serial already installed on it and
   * `imageswarm.min-serial=`.
   */
  minSerial?: number
}

export interface VerifiedManifest extends VerifiedSignature {
  manifest: SignedImageManifest
}

/**
 * Verifies a manifest's signature against the key list, then parses it and checks what the
 * signature alone cannot: that it is the image asked for, not expired, not older than the
 * node allows. Each refusal has its own code (and exit code): `E_SIGNATURE_MISSING`,
 * `E_SIGNATURE_INVALID` / `E_KEY_UNKNOWN` / `E_MANIFEST_WRONG_IMAGE`, `E_KEY_REVOKED`,
 * `E_KEY_EXPIRED` / `E_MANIFEST_EXPIRED`, `E_ROLLBACK`.
 *
 * @example
 *   const { manifest } = verifySignedManifest(bytes, minisig, {
 *     keyList, now: new Date(), image: 'compute', minSerial: 7,
 *   }, 'http://10.0.0.1:6969/images/compute/manifest.json')
 */
export function verifySignedManifest(
  bytes: Uint8Array,
  signatureText: string | undefined,
  trust: ManifestTrust,
  source: string,
): VerifiedManifest {
  if (signatureText === undefined) {
    throw new ImageSwarmError('E_SIGNATURE_MISSING', `manifest ${source} is not signed`, {
      operation: 'verify manifest',
      path: source,
      hint: 'this node trusts a root key, so it installs signed images only: run the server with serve --keys DIR, or boot the node without a trust root',
    })
  }
  if (bytes.byteLength > SIGNED_MANIFEST_MAX_BYTES) {
    throw new ImageSwarmError('E_MANIFEST_INVALID', `manifest ${source} is too large`, {
      operation: 'verify manifest',
      path: source,
      hint: 'a manifest is a few KiB: check that the server is an imageswarm server',
    })
  }
  const signatureSource = `${source}.minisig`
  const signature = parseSignature(signatureText, signatureSource)
  const publicKey = acceptSigningKey(trust.keyList, signature.keyId, trust.now, source)
  const verified = verifyPrehashed(prehash(bytes), signature, publicKey, signatureSource)

  let value: unknown
  try {
    value = JSON.parse(Buffer.from(bytes).toString('utf8'))
  } catch {
    throw new ImageSwarmError('E_MANIFEST_INVALID', `signed manifest ${source} is not JSON`, {
      operation: 'verify manifest',
      path: source,
      hint: 'the server signed a broken manifest: republish the image',
    })
  }
  const manifest = parseManifest(value, source)
  if (manifest.serial === undefined || manifest.expires === undefined) {
    throw new ImageSwarmError(
      'E_MANIFEST_INVALID',
      `signed manifest ${source} has no ${manifest.serial === undefined ? 'serial' : 'expiry'}`,
      {
        operation: 'verify manifest',
        path: source,
        hint: 'republish the image with a server that signs manifests (serve --keys DIR)',
      },
    )
  }
  if (manifest.encryption && manifest.size !== encryptedSize(manifest.encryption.plaintextSize)) {
    throw new ImageSwarmError(
      'E_MANIFEST_INVALID',
      `signed manifest ${source} gives an encrypted size of ${manifest.size} bytes for ${manifest.encryption.plaintextSize} bytes of plaintext`,
      {
        operation: 'verify manifest',
        path: source,
        hint: 'the server signed a broken manifest: republish the image',
      },
    )
  }
  if (manifest.name !== trust.image) {
    throw new ImageSwarmError(
      'E_MANIFEST_WRONG_IMAGE',
      `asked for image ${trust.image}, got a signed manifest of image ${manifest.name}`,
      {
        operation: 'verify manifest',
        path: source,
        hint: 'the server, or someone in the way, answers with another image: check --server and the image name',
      },
    )
  }
  if (Date.parse(manifest.expires) <= trust.now.getTime()) {
    throw new ImageSwarmError(
      'E_MANIFEST_EXPIRED',
      `manifest of image ${manifest.name} (serial ${manifest.serial}) expired at ${manifest.expires}`,
      {
        operation: 'verify manifest',
        path: source,
        hint: "a running server signs its manifests again before they expire: is the server's copy stale, or the node's clock wrong?",
      },
    )
  }
  if (trust.minSerial !== undefined && manifest.serial < trust.minSerial) {
    throw new ImageSwarmError(
      'E_ROLLBACK',
      `manifest of image ${manifest.name} is serial ${manifest.serial}, older than serial ${trust.minSerial} this node accepts`,
      {
        operation: 'verify manifest',
        path: source,
        hint: 'someone serves an old version of the image (one that may have a known hole): publish the current one; lower imageswarm.min-serial= only on purpose',
      },
    )
  }
  return { ...verified, manifest: manifest as SignedImageManifest }
}
