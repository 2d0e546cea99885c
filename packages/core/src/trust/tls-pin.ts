import { createHash, X509Certificate } from 'node:crypto'
import { ImageSwarmError } from '../errors.js'
import type { KeyList } from './key-list.js'

/**
 * Pinning the image server's HTTPS certificate through the signed key list (docs/trust.md,
 * "HTTPS"): the list's `tlsCertificates` name certificates by the SHA-256 of their DER
 * bytes; a node that verified the list accepts only those. The pin rides in the list the
 * root key signs, so a new certificate reaches every node with the next list, never with a
 * new ramdisk. No sockets here: the client's connector calls `checkPinnedCertificate`.
 */

/** A pin as the key list holds it: 64 lower-case hex digits. */
const PIN = /^[0-9a-f]{64}$/

/** A certificate the key list pins, as a key list entry. */
export interface TlsCertificatePin {
  sha256: string
  note?: string
}

/**
 * The SHA-256 of a certificate's DER bytes, as the key list pins it.
 *
 * @example certificateFingerprint(socket.getPeerCertificate().raw) // '9f86d081…'
 */
export function certificateFingerprint(der: Uint8Array): string {
  return createHash('sha256').update(der).digest('hex')
}

/**
 * A pin from what an operator may paste: `openssl x509 -fingerprint -sha256`'s
 * `AB:CD:…` (with or without its `sha256 Fingerprint=` prefix) or plain hex; undefined
 * when it is not 32 bytes of hex.
 *
 * @example normalizeFingerprint('SHA256 Fingerprint=9F:86:D0:…') // '9f86d0…'
 */
export function normalizeFingerprint(text: string): string | undefined {
  const hex = text
    .trim()
    .replace(/^sha256 fingerprint=/i, '')
    .replace(/:/g, '')
    .toLowerCase()
  return PIN.test(hex) ? hex : undefined
}

/** The certificate pins of a verified key list (none when it lists none). */
export function pinsOf(keyList: Pick<KeyList, 'tlsCertificates'>): string[] {
  return (keyList.tlsCertificates ?? []).map((entry) => entry.sha256)
}

/**
 * A PEM certificate file's pin and what it is for, or E_KEY_FILE_INVALID naming the file.
 *
 * @example const { sha256, subjectAltName } = readCertificatePem(pem, 'keys/tls.crt')
 */
export function readCertificatePem(
  pem: string | Buffer,
  path: string,
): { sha256: string; subjectAltName: string | undefined; validTo: string } {
  let certificate: X509Certificate
  try {
    certificate = new X509Certificate(pem)
  } catch (err) {
    throw new ImageSwarmError('E_KEY_FILE_INVALID', `${path} is not a PEM certificate`, {
      operation: 'read TLS certificate',
      path,
      hint: 'give the certificate file (BEGIN CERTIFICATE), e.g. what imageswarm key tls-generate wrote',
      cause: err,
    })
  }
  return {
    sha256: certificateFingerprint(certificate.raw),
    subjectAltName: certificate.subjectAltName,
    validTo: certificate.validTo,
  }
}

/**
 * Accepts the server certificate `der` only if `pins` (from the verified key list) names
 * its SHA-256; returns that fingerprint. Anything else is E_TLS_PIN_MISMATCH: whoever
 * answered holds another certificate than the one the root key vouched for.
 *
 * @example checkPinnedCertificate(cert.raw, pinsOf(keyList), 'https://10.0.0.1:6969')
 */
export function checkPinnedCertificate(
  der: Uint8Array | undefined,
  pins: readonly string[],
  server: string,
): string {
  const presented =
    der === undefined || der.byteLength === 0 ? undefined : certificateFingerprint(der)
  if (presented !== undefined && pins.includes(presented)) return presented
  throw new ImageSwarmError(
    'E_TLS_PIN_MISMATCH',
    `${server} presented ${presented === undefined ? 'no certificate' : `certificate SHA-256 ${presented}`}, which the key list does not pin (it pins ${pins.join(', ') || 'none'})`,
    {
      operation: 'check server certificate',
      path: server,
      hint: 'someone else answers at the server’s address, or the server has a new certificate that is not pinned yet: pin it with imageswarm key tls-pin --keys DIR --cert FILE and publish the key list (keep the old pin until every server uses the new certificate)',
    },
  )
}
