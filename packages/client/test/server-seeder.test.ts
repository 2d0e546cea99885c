import { once } from 'node:events'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { type Logger, silentLogger } from '@imageswarm/core'
import { afterEach, describe, expect, it } from 'vitest'
import { locateServerSeeder, locateServerSeeders } from '../src/server-seeder.js'

let server: Server | undefined

afterEach(async () => {
  server?.closeAllConnections()
  if (server) await new Promise((resolve) => server!.close(resolve))
  server = undefined
})

/** An image server on `localhost` (a name, resolved by the client) answering every request. */
async function serve(answer: (req: IncomingMessage, res: ServerResponse) => void) {
  const seen = { paths: [] as string[] }
  server = createServer((req, res) => {
    seen.paths.push(req.url ?? '')
    answer(req, res)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return { url: `http://localhost:${(server.address() as AddressInfo).port}`, seen }
}

/** A logger that keeps its warnings. */
function recordingLogger(): { logger: Logger; warnings: string[] } {
  const warnings: string[] = []
  const logger = silentLogger()
  logger.warn = ((_fields: unknown, message?: string) => {
    warnings.push(message ?? '')
  }) as Logger['warn']
  return { logger, warnings }
}

describe('locateServerSeeder', () => {
  it('gives the server host resolved to an IP address and the seeder port it publishes', async () => {
    const { url, seen } = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"seeder":{"port":6881}}')
    })
    const endpoint = await locateServerSeeder(url, silentLogger())
    expect(endpoint?.port).toBe(6881)
    expect(['127.0.0.1', '::1']).toContain(endpoint?.host)
    expect(seen.paths).toEqual(['/server.json'])
  })

  it('goes on without a trusted server, asking once, when the server does not publish it', async () => {
    const { url, seen } = await serve((_req, res) => res.writeHead(404).end())
    const { logger, warnings } = recordingLogger()
    expect(await locateServerSeeder(url, logger)).toBeUndefined()
    expect(seen.paths).toHaveLength(1)
    expect(warnings[0]).toMatch(/no BitTorrent peer is trusted as the server/)
  })

  it('refuses a description that is not one: no port, or a body far too large', async () => {
    const bodies = ['{"seeder":{"port":0}}', `{"seeder":{"port":6881},"x":"${'x'.repeat(10_000)}"}`]
    for (const body of bodies) {
      const { url } = await serve((_req, res) => res.writeHead(200).end(body))
      expect(await locateServerSeeder(url, silentLogger())).toBeUndefined()
      server?.closeAllConnections()
      await new Promise((resolve) => server!.close(resolve))
      server = undefined
    }
  }, 20_000)

  it('finds every server’s seeder at once, leaving out one that does not answer, and each address once', async () => {
    const { url } = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"seeder":{"port":6881}}')
    })
    const probe = createServer()
    probe.listen(0, '127.0.0.1')
    await once(probe, 'listening')
    const down = `http://127.0.0.1:${(probe.address() as AddressInfo).port}`
    await new Promise((resolve) => probe.close(resolve))
    const { logger, warnings } = recordingLogger()
    // The same server written two ways: dialled once.
    const byAddress = url.replace('localhost', '127.0.0.1')
    const endpoints = await locateServerSeeders([down, byAddress, `${byAddress}/`], logger)
    expect(endpoints).toHaveLength(1)
    expect(endpoints[0]?.port).toBe(6881)
    expect(warnings).toEqual([expect.stringMatching(/does not say where its seeder listens/)])
  }, 20_000)
})
