import {
  fetchInstallFile,
  type ImageServers,
  type RequestSettings,
  type ServerRequestOptions,
} from '@imageswarm/client'
import { serverUrl } from '@imageswarm/core'

/**
 * Where the installer's files besides the image (overrides, post-install scripts) come
 * from: the first of the image servers that answers (the node installer's, the one that gave
 * the manifest first), with `request`'s settings; or, without `servers`, the one server
 * `request` names.
 */
export type InstallFileSource =
  | { servers: ImageServers; request: RequestSettings }
  | { servers?: undefined; request: ServerRequestOptions }

/**
 * A file from `source` (see client's fetchInstallFile): its body, undefined when the server
 * that answered does not have it (404), and the URL it was asked at.
 */
export async function fetchFileFrom(
  source: InstallFileSource,
  path: string,
  what: string,
  limit: number,
): Promise<{ body: Buffer | undefined; url: string }> {
  if (source.servers) return source.servers.fetchInstallFile(path, what, limit, source.request)
  const body = await fetchInstallFile(path, what, limit, source.request)
  return { body, url: serverUrl(source.request.server, path) }
}

/** Just the source of `options`, to hand on. */
export function fileSource(options: InstallFileSource): InstallFileSource {
  return options.servers
    ? { servers: options.servers, request: options.request }
    : { request: options.request }
}
