import { createHash } from 'node:crypto'
import { describeSchemaProblem } from './config.js'
import { ImageSwarmError } from './errors.js'
import { type NodeInstallConfig, NodeInstallConfigSchema } from './node-install.js'
import { acceptSigningKey, type KeyList } from './trust/key-list.js'
import {
  parseSignature,
  prehash,
  type Signer,
  signBytes,
  type VerifiedSignature,
  verifyPrehashed,
} from './trust/minisign.js'

/**
 * Signed node configs (`GET /install/node.json` from `serve --keys`; docs/trust.md). As with
 * manifests, what is signed is the exact bytes served: the server encodes the config once,
 * signs those bytes, and the node verifies the bytes it received before it parses them.
 * `NodeInstallConfig.signed` ties the config to the node's MAC, the image's serial, an
 * expiry and the SHA-256 of every override tar and post-install script it names.
 */

/** A node config is a few KiB of JSON, its layout included; more is not one. */
export const NODE_CONFIG_MAX_BYTES = 1024 * 1024

/** A signed node config: one that carries its binding. */
export type SignedNodeConfig = NodeInstallConfig & {
  signed: NonNullable<NodeInstallConfig['signed']>
}

/** The bytes of a node config as served: two-space JSON and a newline. */
export function encodeNodeConfig(config: NodeInstallConfig): Buffer {
  return Buffer.from(`${JSON.stringify(config, null, 2)}\n`, 'utf8')
}

/** The trusted comment of a node config signature: what `minisign -V` shows an operator. */
export function nodeConfigTrustedComment(config: SignedNodeConfig): string {
  return `imageswarm node-config image=${config.image} serial=${config.signed.serial} mac=${config.signed.mac ?? 'none'} hostname=${config.hostname ?? 'none'} expires=${config.signed.expires}`
}

/** A MAC as the server binds it: lower case, colons. */
export function normalizeMac(mac: string | undefined): string | null {
  return mac === undefined ? null : mac.toLowerCase().replaceAll('-', ':')
}

/** The SHA-256 of some bytes, as a node config names its files. */
export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex')
}

/**
 * Encodes a node config that carries its binding and signs the bytes: the server sends
 * `bytes` as node.json and `signature` as node.json.minisig.
 *
 * @example
 *   const { bytes, signature } = signNodeConfig({ ...config, signed: binding }, signingKey)
 */
export function signNodeConfig(
  config: NodeInstallConfig,
  signer: Signer,
): { bytes: Buffer; signature: string } {
  if (config.signed === undefined) throw new TypeError('a signed node config needs its binding')
  const bytes = encodeNodeConfig(config)
  // Sign what a node will parse, so a config the schema refuses is never signed.
  parseNodeInstallConfig(bytes, 'the node config to sign')
  const signature = signBytes(bytes, signer, {
    trustedComment: nodeConfigTrustedComment(config as SignedNodeConfig),
    untrustedComment: `imageswarm node config for image ${config.image}, signed by key ${signer.keyId}`,
  })
  return { bytes, signature }
}

/**
 * Parses node.json's bytes: E_SERVER_RESPONSE naming the key, what was expected and what
 * came, for anything that is not a node config.
 */
export function parseNodeInstallConfig(bytes: Uint8Array, source: string): NodeInstallConfig {
  let value: unknown
  try {
    value = JSON.parse(Buffer.from(bytes).toString('utf8'))
  } catch (err) {
    throw invalidConfig(source, 'it is not JSON', err)
  }
  const parsed = NodeInstallConfigSchema.safeParse(value)
  if (!parsed.success) {
    const problem = describeSchemaProblem(parsed.error, value)
    throw invalidConfig(source, `${problem.key}: ${problem.message} (received ${problem.received})`)
  }
  return parsed.data
}

/** What a node knows when it checks its node config. */
export interface NodeConfigTrust {
  /** The key list verified against the node's root key. */
  keyList: KeyList
  now: Date
  /** The image and serial of the manifest the node verified. */
  image: string
  serial: number
  /** The MAC the node asked with. */
  mac: string | undefined
}

export interface VerifiedNodeConfig extends VerifiedSignature {
  config: SignedNodeConfig
}

/**
 * Verifies node.json's bytes against its signature and the key list, then parses them and
 * checks what the signature alone cannot: the config is for this node's MAC, this image and
 * serial, not expired, and names a digest for exactly the overrides and scripts it lists.
 * `E_SIGNATURE_MISSING`; `E_SIGNATURE_INVALID` (forged, another MAC, image or serial);
 * `E_KEY_UNKNOWN`, `E_KEY_REVOKED`, `E_KEY_EXPIRED`; `E_MANIFEST_EXPIRED`.
 *
 * @example
 *   const { config } = verifySignedNodeConfig(bytes, minisig, {
 *     keyList, now: new Date(), image: 'compute', serial: 7, mac: '52:54:00:12:34:56',
 *   }, { config: url, signature: signatureUrl })
 */
export function verifySignedNodeConfig(
  bytes: Uint8Array,
  signatureText: string | undefined,
  trust: NodeConfigTrust,
  sources: { config: string; signature: string },
): VerifiedNodeConfig {
  const source = sources.config
  if (signatureText === undefined) {
    throw new ImageSwarmError('E_SIGNATURE_MISSING', `node config ${source} is not signed`, {
      operation: 'verify node config',
      path: source,
      hint: 'this node trusts a root key, so it takes signed node configs only: run an image server that signs them (imageswarm serve --keys DIR, this version or later), or boot the node without a trust root',
    })
  }
  if (bytes.byteLength > NODE_CONFIG_MAX_BYTES) {
    throw invalidConfig(source, 'it is larger than 1 MiB')
  }
  const signature = parseSignature(signatureText, sources.signature)
  const publicKey = acceptSigningKey(trust.keyList, signature.keyId, trust.now, source)
  const verified = verifyPrehashed(prehash(bytes), signature, publicKey, sources.signature)
  const config = parseNodeInstallConfig(bytes, source)
  const refuse = (what: string) =>
    new ImageSwarmError('E_SIGNATURE_INVALID', `signed node config ${source} ${what}`, {
      operation: 'verify node config',
      path: source,
      hint: 'the server, or someone in the way, answers with a node config signed for another node or image version: do not install with it; check the server and ask again',
    })
  const binding = config.signed
  if (binding === undefined) throw refuse('carries no MAC, serial or file digests')
  if (config.image !== trust.image) throw refuse(`is for image ${config.image}, not ${trust.image}`)
  if (binding.serial !== trust.serial) {
    throw refuse(
      `is for serial ${binding.serial} of image ${config.image}, not serial ${trust.serial}`,
    )
  }
  const mac = normalizeMac(trust.mac)
  if (binding.mac !== mac) {
    throw refuse(`is for the node with MAC ${binding.mac ?? 'none'}, not ${mac ?? 'none'}`)
  }
  if (Date.parse(binding.expires) <= trust.now.getTime()) {
    throw new ImageSwarmError(
      'E_MANIFEST_EXPIRED',
      `node config ${source} (image ${config.image}, serial ${binding.serial}) expired at ${binding.expires}`,
      {
        operation: 'verify node config',
        path: source,
        hint: "a running server signs node configs with its manifests' expiry, which it renews: is someone replaying an old answer, or the node's clock wrong?",
      },
    )
  }
  const listed = (names: readonly string[], digests: Record<string, string>, what: string) => {
    const named = Object.keys(digests)
    const missing = names.filter((name) => !(name in digests))
    const extra = named.filter((name) => !names.includes(name))
    if (missing.length > 0 || extra.length > 0) {
      throw refuse(
        `does not give a digest for exactly its ${what}: ${[...missing.map((n) => `${n} has none`), ...extra.map((n) => `${n} is not listed`)].join(', ')}`,
      )
    }
  }
  listed(config.overrides, binding.overrideSha256, 'overrides')
  listed(config.postInstall, binding.postInstallSha256, 'post-install scripts')
  return { ...verified, config: config as SignedNodeConfig }
}

/**
 * Checks a file a signed node config names (an override tar, a post-install script)
 * against its digest, before it is extracted or run: E_SIGNATURE_INVALID naming the file.
 *
 * @example checkSignedFile(body, config.signed.postInstallSha256[name], `post-install script ${name}`, url)
 */
export function checkSignedFile(
  bytes: Uint8Array,
  expected: string | undefined,
  what: string,
  source: string,
): void {
  const actual = sha256Hex(bytes)
  if (actual === expected) return
  throw new ImageSwarmError(
    'E_SIGNATURE_INVALID',
    expected === undefined
      ? `${what} (${source}) is not named in the signed node config`
      : `${what} (${source}) does not match the signed node config: SHA-256 ${actual}, signed ${expected}`,
    {
      operation: 'verify node config file',
      path: source,
      hint: 'the file changed on the server after the node config was signed (install the node again), or someone in the way altered it: nothing of it was used',
    },
  )
}

function invalidConfig(source: string, what: string, cause?: unknown): ImageSwarmError {
  return new ImageSwarmError('E_SERVER_RESPONSE', `the server's node config is invalid: ${what}`, {
    operation: 'read the node config',
    path: source,
    hint: 'the server and the installer disagree on the node config: run the same imageswarm version on both',
    ...(cause === undefined ? {} : { cause }),
  })
}
