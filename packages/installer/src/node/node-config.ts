import { fetchInstallFile, type ServerRequestOptions } from '@imageswarm/client'
import {
  describeSchemaProblem,
  ImageSwarmError,
  INSTALL_PATHS,
  type NodeInstallConfig,
  NodeInstallConfigSchema,
  serverUrl,
} from '@imageswarm/core'

/** A node's config is a few KiB of JSON, its layout included; more is not one. */
export const NODE_CONFIG_SIZE_LIMIT = 1024 * 1024

export interface NodeConfigQuery {
  image: string
  mac?: string | undefined
  hostname?: string | undefined
  layout?: string | undefined
}

/** `/install/node.json?image=compute&mac=…&hostname=node1&layout=…` (only what is known). */
export function nodeConfigPath(query: NodeConfigQuery): string {
  const params = new URLSearchParams({ image: query.image })
  if (query.mac) params.set('mac', query.mac)
  if (query.hostname) params.set('hostname', query.hostname)
  if (query.layout) params.set('layout', query.layout)
  return `${INSTALL_PATHS.node}?${params.toString()}`
}

/**
 * What the server knows of this node, `GET /install/node.json`, checked against
 * NodeInstallConfigSchema; `source: 'default'` when the server answers 404 (an imageswarm
 * server from before node configs): no groups, overrides or scripts, the default layout,
 * the host name from DHCP. A named layout (`si.disks-layout=`) the server answers without
 * is E_LAYOUT_INVALID: the node must not fall back to wiping its first disk instead.
 */
export async function fetchNodeConfig(
  query: NodeConfigQuery,
  request: ServerRequestOptions,
): Promise<{ config: NodeInstallConfig; source: 'server' | 'default' }> {
  const path = nodeConfigPath(query)
  const body = await fetchInstallFile(path, 'node config', NODE_CONFIG_SIZE_LIMIT, request)
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
  let value: unknown
  try {
    value = JSON.parse(body.toString('utf8'))
  } catch (err) {
    throw invalidConfig(request.server, path, 'it is not JSON', err)
  }
  const parsed = NodeInstallConfigSchema.safeParse(value)
  if (!parsed.success) {
    const problem = describeSchemaProblem(parsed.error, value)
    throw invalidConfig(
      request.server,
      path,
      `${problem.key}: ${problem.message} (received ${problem.received})`,
    )
  }
  if (parsed.data.image !== query.image) {
    throw invalidConfig(request.server, path, `it is for image ${parsed.data.image}`)
  }
  if (query.layout && parsed.data.layout === null) {
    throw new ImageSwarmError(
      'E_LAYOUT_INVALID',
      `asked the server for disk layout ${query.layout}; it answered with none`,
      {
        operation: 'read the node config',
        path: serverUrl(request.server, path),
        hint: `put the layout on the server (scripts/disks-layouts/${query.layout}.xml) or fix si.disks-layout=`,
      },
    )
  }
  return { config: parsed.data, source: 'server' }
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
