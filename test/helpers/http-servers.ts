import { once } from 'node:events'
import {
  createServer,
  type Server as HttpServer,
  type IncomingMessage,
  request,
  type ServerResponse,
} from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach } from 'vitest'

/**
 * HTTP servers a test plays a hostile or broken image server with, on loopback; each is
 * closed after the test that started it (register this before the server fixture, so it
 * runs first: hooks run in reverse, see vitest.config.ts).
 */
export function useHttpServers() {
  const servers: HttpServer[] = []
  afterEach(async () => {
    for (const server of servers.splice(0)) {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    }
  })

  /** A server that answers every request with `handle`; resolves with its base URL. */
  async function startHttpServer(
    handle: (req: IncomingMessage, res: ServerResponse) => void,
  ): Promise<string> {
    const server = createServer(handle)
    servers.push(server)
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  }

  /**
   * A server in front of the real one: `intercept` may answer a request itself (return
   * true); everything else (manifest, .torrent, web-seed ranges, status posts) is passed
   * through to `upstream` as it is, streamed both ways.
   */
  function startInterceptingProxy(
    upstream: string,
    intercept: (req: IncomingMessage, res: ServerResponse) => boolean,
  ): Promise<string> {
    return startHttpServer((req, res) => {
      if (intercept(req, res)) return
      const forward = request(
        `${upstream}${req.url}`,
        { method: req.method, headers: req.headers },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers)
          answer.pipe(res)
        },
      )
      forward.on('error', () => res.destroy())
      req.pipe(forward)
    })
  }

  return { startHttpServer, startInterceptingProxy }
}
