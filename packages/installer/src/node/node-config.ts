import { fetchInstallFile, type ServerRequestOptions, type TrustRoot } from '@imageswarm/client'
import {
  ImageSwarmError,
  INSTALL_PATHS,
  isImageSwarmError,
  KEY_LIST_MAX_BYTES,
  type Logger,
  NODE_CONFIG_MAX_BYTES,
  type NodeInstallConfig,
  parseNodeInstallConfig,
  serverUrl,
  TRUST_PATHS,
  type TrustFloor,
  verifyKeyList,
  verifySignedNodeConfig,
} from '@imageswarm/core'

/** A `.minisig` is four short lines; parseSignature refuses one over 16 KiB itself. */
const SIGNATURE_READ_LIMIT = 64 * 1024

export interface NodeConfigQuery {
  image: string
  mac?: string | undefined
  hostname?: string | undefined
  layout?: string | undefined
}

/** `/install/node.json?image=compute&mac=…&hostname=node1&layout=…` (only what is known). */
export function nodeConfigPath(query: NodeConfigQuery, path: string = INSTALL_PATHS.node): string {
  const params = new URLSearchParams({ image: query.image })
  if (query.mac) params.set('mac', query.mac)
  if (query.hostname) params.set('hostname', query.hostname)
  if (query.layout) params.set('layout', query.layout)
  return `${path}?${params.toString()}`
}

/** With a trust root: what the node config is checked against (docs/trust.md). */
export interface NodeConfigTrustOptions {
  root: TrustRoot
  /** The node's floor, as the client checked the image's key list against it. */
  floor: TrustFloor
  /** The serial of the manifest the client verified: the config must name it. */
  serial: number
  logger: Logger
  now?: () => Date
}

/** A node config as the installer takes it, and how it was checked. */
export interface FetchedNodeConfig {
  config: NodeInstallConfig
  source: 'server' | 'default'
  /** With a trust root: the key that signed it, under which key list. */
  signed?: { signingKeyId: string; keyListVersion: number }
}

/**
 * What the server knows of this node, `GET /install/node.json`, checked against
 * NodeInstallConfigSchema; `source: 'default'` when the server answers 404 (an imageswarm
 * server from before node configs): no groups, overrides or scripts, the default layout,
 * the host name from DHCP. A named layout (`si.disks-layout=`) the server answers without
 * is E_LAYOUT_INVALID: the node must not fall back to wiping its first disk instead.
 *
 * With `trust` (a trust root): the config must be signed (`node.json.minisig`) by a key the
 * server's key list accepts, that list signed by the root and not below the floor, and bound
 * to this node's MAC, the image and the verified serial, not expired (`verifySignedNodeConfig`);
 * a 404 is refused (`E_SIGNATURE_MISSING`), never taken for the default. All before any
 * disk is touched.
 */
export async function fetchNodeConfig(
  query: NodeConfigQuery,
  request: ServerRequestOptions,
  trust?: NodeConfigTrustOptions,
): Promise<FetchedNodeConfig> {
  if (trust) return fetchSignedNodeConfig(query, request, trust)
  const path = nodeConfigPath(query)
  const body = await fetchInstallFile(path, 'node config', NODE_CONFIG_MAX_BYTES, request)
  if (body === undefined) {
    if (query.layout) {
      throw new ImageSwarmError(
        'E_LAYOUT_INVALID',
        `the image server has no node config (${INSTALL_PATHS.node} answered 404), so not disk layout ${query.layout} either`,
        {
          operation: 'read the node config',
          path: serverUrl(request.server, path),
          hint: 'update the image server (imageswarm serve) to one that serves disk layouts, or boot without si.disks-layout= for the default layout',
        },
      )
    }
    return {
      config: {
        image: query.image,
        hostname: query.hostname ?? null,
        groups: [],
        layoutName: null,
        layout: null,
        overrides: [],
        postInstall: [],
      },
      source: 'default',
    }
  }
  const config = parseNodeInstallConfig(body, serverUrl(request.server, path))
  if (config.image !== query.image) {
    throw invalidConfig(request.server, path, `it is for image ${config.image}`)
  }
  checkLayout(query, config, serverUrl(request.server, path))
  return { config, source: 'server' }
}

/**
 * The key list, node.json and their signatures, all four at once (one round trip), checked
 * as fetchNodeConfig says. A signature that does not match is fetched once more with its
 * file: the server signs each node config with its manifest's expiry, which a manifest signed
 * again (at half its lifetime) changes between two requests; a forgery fails both times.
 */
async function fetchSignedNodeConfig(
  query: NodeConfigQuery,
  request: ServerRequestOptions,
  trust: NodeConfigTrustOptions,
): Promise<FetchedNodeConfig> {
  const now = trust.now ?? (() => new Date())
  const path = nodeConfigPath(query)
  const signaturePath = nodeConfigPath(query, INSTALL_PATHS.nodeSignature)
  const url = serverUrl(request.server, path)
  const keyListUrl = serverUrl(request.server, TRUST_PATHS.keyList)
  for (let round = 1; ; round++) {
    try {
      const [keyListBytes, keyListSignature, body, signature] = await Promise.all([
        fetchInstallFile(TRUST_PATHS.keyList, 'key list', KEY_LIST_MAX_BYTES, request),
        fetchInstallFile(
          TRUST_PATHS.keyListSignature,
          'key list signature',
          SIGNATURE_READ_LIMIT,
          request,
        ),
        fetchInstallFile(path, 'node config', NODE_CONFIG_MAX_BYTES, request),
        fetchInstallFile(signaturePath, 'node config signature', SIGNATURE_READ_LIMIT, request),
      ])
      if (body === undefined) {
        throw new ImageSwarmError(
          'E_SIGNATURE_MISSING',
          `the image server has no node config (${INSTALL_PATHS.node} answered 404), so no signed one`,
          {
            operation: 'verify node config',
            path: url,
            hint: 'this node trusts a root key, so it takes its disk layout, overrides and post-install scripts from a signed node config only: update the image server (imageswarm serve --keys DIR), or boot the node without a trust root',
          },
        )
      }
      if (keyListBytes === undefined) {
        throw new ImageSwarmError(
          'E_SIGNATURE_MISSING',
          `the image server publishes no key list (${keyListUrl}: 404)`,
          {
            operation: 'fetch key list',
            path: keyListUrl,
            hint: 'this node trusts a root key: run the server with serve --keys DIR, or boot the node without a trust root',
          },
        )
      }
      const { keyList } = verifyKeyList(
        keyListBytes,
        keyListSignature?.toString('utf8'),
        trust.root.publicKey,
        {
          now: now(),
          ...(trust.floor.minKeyListVersion === undefined
            ? {}
            : { seenVersion: trust.floor.minKeyListVersion }),
          ...(trust.floor.keyListSha256 === undefined
            ? {}
            : { seenSha256: trust.floor.keyListSha256 }),
        },
        keyListUrl,
      )
      const verified = verifySignedNodeConfig(
        body,
        signature?.toString('utf8'),
        { keyList, now: now(), image: query.image, serial: trust.serial, mac: query.mac },
        { config: url, signature: serverUrl(request.server, signaturePath) },
      )
      checkLayout(query, verified.config, url)
      return {
        config: verified.config,
        source: 'server',
        signed: { signingKeyId: verified.keyId, keyListVersion: keyList.version },
      }
    } catch (err) {
      const retry =
        round === 1 &&
        isImageSwarmError(err) &&
        (err.code === 'E_SIGNATURE_INVALID' || err.code === 'E_KEY_UNKNOWN')
      if (!retry) throw err
      trust.logger.warn(
        { code: err.code, err: err.message },
        'node config signature check failed; fetching it once more (the server may have signed again between two requests)',
      )
    }
  }
}

/** A layout named on the kernel command line must be the one the server gives. */
function checkLayout(query: NodeConfigQuery, config: NodeInstallConfig, url: string): void {
  if (query.layout && config.layout === null) {
    throw new ImageSwarmError(
      'E_LAYOUT_INVALID',
      `asked the server for disk layout ${query.layout}; it answered with none`,
      {
        operation: 'read the node config',
        path: url,
        hint: `put the layout on the server (scripts/disks-layouts/${query.layout}.xml) or fix si.disks-layout=`,
      },
    )
  }
}

function invalidConfig(
  server: string,
  path: string,
  what: string,
  cause?: unknown,
): ImageSwarmError {
  return new ImageSwarmError('E_SERVER_RESPONSE', `the server's node config is invalid: ${what}`, {
    operation: 'read the node config',
    path: serverUrl(server, path),
    hint: 'the server and the installer disagree on the node config: run the same imageswarm version on both',
    ...(cause === undefined ? {} : { cause }),
  })
}
