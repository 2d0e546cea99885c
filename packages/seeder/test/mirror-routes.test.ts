import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { silentLogger } from '@imageswarm/core'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { handleMirrorRequest } from '../src/mirror-routes.js'
import { ServerRegistry } from '../src/server-registry.js'

const IMAGE = 'c'.repeat(40)
let server: Server
let base: string
let registry: ServerRegistry

beforeEach(async () => {
  registry = new ServerRegistry({ self: () => 'http://10.0.0.1:6969', ownImages: () => [IMAGE] })
  server = createServer((req, res) => {
    if (!handleMirrorRequest(registry, req, res, silentLogger())) res.writeHead(404).end()
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})

afterEach(async () => {
  server.closeAllConnections()
  await new Promise((resolve) => server.close(resolve))
})

function register(body: unknown) {
  return fetch(`${base}/mirrors`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  })
}

describe('POST /mirrors', () => {
  it('registers a mirror and answers with every server, this one first', async () => {
    const answer = await register({
      url: 'http://10.0.0.2:6969/',
      images: [IMAGE],
      intervalSeconds: 10,
    })
    expect(answer.status).toBe(200)
    expect(await answer.json()).toEqual({
      servers: [
        { url: 'http://10.0.0.1:6969', images: [IMAGE] },
        { url: 'http://10.0.0.2:6969', images: [IMAGE] },
      ],
    })
    expect(registry.serversFor(IMAGE)).toEqual(['http://10.0.0.1:6969', 'http://10.0.0.2:6969'])
  })

  it.each([
    ['not JSON', '{'],
    ['a URL that is not http', { url: 'ftp://x', images: [], intervalSeconds: 10 }],
    ['an infohash that is not one', { url: 'http://x:1', images: ['abc'], intervalSeconds: 10 }],
    ['no interval', { url: 'http://x:1', images: [] }],
    ['an unknown key', { url: 'http://x:1', images: [], intervalSeconds: 10, extra: 1 }],
  ])('refuses %s with 400 E_USAGE and registers nothing', async (_what, body) => {
    const answer = await register(body)
    expect(answer.status).toBe(400)
    expect(((await answer.json()) as { error: { code: string } }).error.code).toBe('E_USAGE')
    expect(registry.list().servers).toHaveLength(1)
  })

  it('answers other methods with 405', async () => {
    const answer = await fetch(`${base}/mirrors`)
    expect(answer.status).toBe(405)
    expect(answer.headers.get('allow')).toBe('POST')
  })
})
