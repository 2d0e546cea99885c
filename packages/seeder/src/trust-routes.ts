import type { IncomingMessage, ServerResponse } from 'node:http'
import { ImageSwarmError, TRUST_PATHS } from '@imageswarm/core'
import { sendBytes, sendError } from './image-routes.js'

/** The key list a server serves: its own signer's, or (a mirror) its primary's, verbatim. */
export interface KeyListSource {
  readonly keyListBytes: Uint8Array
  readonly keyListSignature: string
}

/**
 * `GET /keys.json` and `GET /keys.json.minisig`: the key list the root signed and its
 * signature, byte for byte as in the key directory (`serve --keys DIR`), which a node
 * verifies against the root key in its ramdisk; a mirror serves its primary's. A server
 * without keys answers 404 `E_SIGNATURE_MISSING`. Returns false for other paths.
 */
export function handleKeyListRequest(
  signer: KeyListSource | undefined,
  req: IncomingMessage,
  res: ServerResponse,
): boolean {
  const path = new URL(req.url ?? '/', 'http://server').pathname
  if (path !== TRUST_PATHS.keyList && path !== TRUST_PATHS.keyListSignature) return false
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD' }).end()
    return true
  }
  if (!signer) {
    sendError(
      res,
      404,
      new ImageSwarmError('E_SIGNATURE_MISSING', 'this server does not sign its images', {
        path,
        hint: 'run it with serve --keys DIR (imageswarm key generate --output DIR makes one)',
      }),
    )
  } else if (path === TRUST_PATHS.keyList) {
    sendBytes(req, res, signer.keyListBytes, 'application/json; charset=utf-8')
  } else {
    sendBytes(req, res, Buffer.from(signer.keyListSignature), 'text/plain; charset=utf-8')
  }
  return true
}
