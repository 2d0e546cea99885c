import { createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto'
import { ImageSwarmError } from '../errors.js'
import { GROUP_NAME_PATTERN, openSealedKey, sealKey } from './archive-key.js'

/**
 * Group key delivery (docs/trust.md, "Encrypted archives"): a node asks
 * `GET /keys/groups/NAME`, gets a one-time nonce (401), and asks again with its name and
 * HMAC-SHA256(node secret, nonce ‖ node ‖ group) in the `authorization` header. The server
 * holds every node's secret and group; it hands the group key only to a node of that group
 * that proved its secret. The secret itself never crosses the network, and a captured
 * answer cannot be replayed (the nonce is used once). The key in the answer is sealed to the
 * node (`sealGroupKey`): over plain HTTP, whoever captures the exchange learns nothing.
 */
export const NODE_SECRET_BYTES = 32
/** The `authorization` scheme of a group key request. */
export const GROUP_KEY_AUTH_SCHEME = 'ImageswarmNode'
/** A node's name in a secret file and a request: a host name, as the dashboard knows it. */
export const NODE_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/

/** Where a node fetches its group's key. */
export function groupKeyPath(group: string): string {
  return `/keys/groups/${encodeURIComponent(group)}`
}

/** A node's secret: known to the node (a file in its ramdisk or on a local disk) and the server. */
export interface NodeSecret {
  node: string
  group: string
  secret: Buffer
}

/** A new node secret: 32 random bytes. */
export function generateNodeSecret(node: string, group: string): NodeSecret {
  checkNames(node, group)
  return { node, group, secret: randomBytes(NODE_SECRET_BYTES) }
}

function checkNames(node: string, group: string): void {
  if (!NODE_NAME_PATTERN.test(node)) throw new TypeError(`not a node name: ${JSON.stringify(node)}`)
  if (!GROUP_NAME_PATTERN.test(group)) {
    throw new TypeError(`not a group name: ${JSON.stringify(group)}`)
  }
}

/**
 * The node secret file, the same on the server (`GROUPKEYS/nodes/NODE.secret`) and on the
 * node (`--node-secret-file`): `node:`, `group:` and `secret:` lines.
 */
export function encodeNodeSecretFile(secret: NodeSecret): string {
  return [
    '# imageswarm node secret: keep it secret (0600); it fetches its group key',
    `node: ${secret.node}`,
    `group: ${secret.group}`,
    `secret: ${secret.secret.toString('base64')}`,
    '',
  ].join('\n')
}

export function parseNodeSecretFile(text: string, source: string): NodeSecret {
  const fields = new Map<string, string>()
  for (const line of text.split('\n')) {
    const match = /^([a-z ]+): (.*)$/.exec(line.trimEnd())
    if (match) fields.set(match[1]!, match[2]!)
  }
  const invalid = (what: string) =>
    new ImageSwarmError('E_KEY_FILE_INVALID', `node secret ${source} ${what}`, {
      operation: 'read node secret',
      path: source,
      hint: 'a node secret file has node:, group: and secret: lines, as imageswarm key node add writes it',
    })
  const node = fields.get('node')
  const group = fields.get('group')
  const encoded = fields.get('secret')
  if (node === undefined || !NODE_NAME_PATTERN.test(node)) throw invalid('has no valid node name')
  if (group === undefined || !GROUP_NAME_PATTERN.test(group)) throw invalid('has no valid group')
  const secret = encoded === undefined ? undefined : Buffer.from(encoded, 'base64')
  if (
    secret === undefined ||
    secret.length !== NODE_SECRET_BYTES ||
    secret.toString('base64') !== encoded
  ) {
    throw invalid('has no 32-byte base64 secret')
  }
  return { node, group, secret }
}

/** What a node proves it holds its secret with: hex HMAC-SHA256 over the request. */
export function groupKeyProof(
  secret: Buffer,
  request: { nonce: string; node: string; group: string },
): string {
  return createHmac('sha256', secret)
    .update(`imageswarm group key request v1\0${request.nonce}\0${request.node}\0${request.group}`)
    .digest('hex')
}

/** Checks a proof in constant time. */
export function checkGroupKeyProof(
  secret: Buffer,
  request: { nonce: string; node: string; group: string },
  proof: string,
): boolean {
  const expected = Buffer.from(groupKeyProof(secret, request), 'hex')
  const given = Buffer.from(proof, 'hex')
  return given.length === expected.length && timingSafeEqual(given, expected)
}

/** The `authorization` header value of a group key request. */
export function encodeGroupKeyAuthorization(request: {
  node: string
  nonce: string
  proof: string
}): string {
  return `${GROUP_KEY_AUTH_SCHEME} node="${request.node}", nonce="${request.nonce}", proof="${request.proof}"`
}

/** Parses an `authorization` header; undefined when it is not a well-formed group key request. */
export function parseGroupKeyAuthorization(
  header: string | undefined,
): { node: string; nonce: string; proof: string } | undefined {
  const match =
    /^ImageswarmNode node="([^"]{1,63})", nonce="([0-9a-f]{32})", proof="([0-9a-f]{64})"$/.exec(
      header ?? '',
    )
  if (!match || !NODE_NAME_PATTERN.test(match[1]!)) return undefined
  return { node: match[1]!, nonce: match[2]!, proof: match[3]! }
}

/** The 401 answer's body: a fresh nonce to prove the node secret over. */
export interface GroupKeyChallenge {
  nonce: string
  /** Seconds the nonce is accepted. */
  expiresIn: number
}

/**
 * The 200 answer's body: the group key, sealed to the node that asked (`sealGroupKey`), so
 * that the answer reveals nothing to anyone without that node's secret, over plain HTTP too.
 */
export interface GroupKeyAnswer {
  group: string
  keyId: string
  /** base64 of `sealKey`'s nonce (12) ‖ AES-256-GCM(group key) (32) ‖ tag (16). */
  sealedKey: string
}

/**
 * The key a group key answer is sealed under: HKDF-SHA256 of the node secret, salted with
 * the request's one-time nonce and bound to the node and the group, so each answer has a
 * key of its own and a sealed key opens for that request only.
 */
function sealingKey(
  secret: Buffer,
  request: { nonce: string; node: string; group: string },
): Buffer {
  return Buffer.from(
    hkdfSync(
      'sha256',
      secret,
      Buffer.from(request.nonce, 'hex'),
      `imageswarm group key answer v1\0${request.node}\0${request.group}`,
      32,
    ),
  )
}

/** Seals a group key for the node that made `request` (`sealKey`, the key id as AAD). */
export function sealGroupKey(
  secret: Buffer,
  request: { nonce: string; node: string; group: string },
  groupKey: { keyId: string; key: Buffer },
): GroupKeyAnswer {
  const sealed = sealKey(
    groupKey.key,
    sealingKey(secret, request),
    Buffer.from(groupKey.keyId, 'latin1'),
  )
  return { group: request.group, keyId: groupKey.keyId, sealedKey: sealed.toString('base64') }
}

/**
 * Opens a sealed group key with the node's secret; undefined when it does not open (sealed
 * for another request or node, or altered on the way).
 */
export function openGroupKey(
  secret: Buffer,
  request: { nonce: string; node: string; group: string },
  answer: { keyId: string; sealedKey: string },
): Buffer | undefined {
  return openSealedKey(
    Buffer.from(answer.sealedKey, 'base64'),
    sealingKey(secret, request),
    Buffer.from(answer.keyId, 'latin1'),
  )
}
