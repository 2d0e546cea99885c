import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { ServerRegistry } from '../src/server-registry.js'
import { ServerWatch } from '../src/server-watch.js'

const IMAGE = 'd'.repeat(40)
const cleanups: (() => void | Promise<void>)[] = []

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

async function healthServer(): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    if (req.url === '/healthz') res.writeHead(200).end('{"ok":true}')
    else res.writeHead(404).end()
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }
}

/** Polls until `check` holds, at most 5 s. */
async function until(check: () => boolean): Promise<void> {
  for (let waited = 0; !check(); waited += 20) {
    if (waited > 5_000) throw new Error('not within 5 s')
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

describe('ServerWatch', () => {
  it('leaves out a server that stops answering and takes it back when it answers again', async () => {
    const other = await healthServer()
    const registry = new ServerRegistry({
      self: () => 'http://10.0.0.1:6969',
      ownImages: () => [IMAGE],
    })
    registry.heard({ url: other.url, images: [IMAGE], intervalSeconds: 60 })
    const watch = new ServerWatch({ registry, intervalMs: 20 })
    watch.start()
    cleanups.push(() => watch.stop())
    expect(registry.serversFor(IMAGE)).toHaveLength(2)

    const port = Number(new URL(other.url).port)
    other.server.closeAllConnections()
    await new Promise((resolve) => other.server.close(resolve))
    await until(() => registry.isDown(other.url))
    expect(registry.serversFor(IMAGE)).toEqual(['http://10.0.0.1:6969'])

    const back = createServer((_req, res) => res.writeHead(200).end('{"ok":true}'))
    back.listen(port, '127.0.0.1')
    await once(back, 'listening')
    cleanups.push(
      () =>
        new Promise<void>((resolve) => {
          back.closeAllConnections()
          back.close(() => resolve())
        }),
    )
    await until(() => !registry.isDown(other.url))
    expect(registry.serversFor(IMAGE)).toEqual(['http://10.0.0.1:6969', other.url])
  })
})
