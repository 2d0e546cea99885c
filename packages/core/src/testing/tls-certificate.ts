import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'

/** A certificate and its key on disk, PEM. */
export interface TlsCertificateFixture {
  certPath: string
  keyPath: string
  cert: Buffer
  key: Buffer
}

/**
 * A self-signed ECDSA (P-256) certificate for 127.0.0.1, valid two days, from openssl:
 * `DIR/NAME.crt` and `DIR/NAME.key`.
 */
export function writeSelfSignedCertificate(dir: string, name: string): TlsCertificateFixture {
  const certPath = join(dir, `${name}.crt`)
  const keyPath = join(dir, `${name}.key`)
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      keyPath,
      '-out',
      certPath,
      '-days',
      '2',
      '-subj',
      `/CN=${name}`,
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ],
    { stdio: 'pipe' },
  )
  return { certPath, keyPath, cert: readFileSync(certPath), key: readFileSync(keyPath) }
}
