import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import {
  type ImageManifest,
  makePeerId,
  type NodeStatusReport,
  silentLogger,
} from '@imageswarm/core'
import { afterEach, describe, expect, it } from 'vitest'
import { StatusReporter } from '../src/status-reporter.js'

let server: Server | undefined

afterEach(async () => {
  if (server) await new Promise((resolve) => server!.close(resolve))
  server = undefined
})

/** A status endpoint that records every post, answering each after `delayMs`. */
async function recordPosts(delayMs: number) {
  const posts: NodeStatusReport[] = []
  server = createServer(async (req, res) => {
    let body = ''
    for await (const chunk of req) body += chunk
    posts.push(JSON.parse(body))
    setTimeout(() => res.writeHead(204).end(), delayMs)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, posts }
}

const manifest = {
  name: 'node',
  size: 1000,
  infoHash: 'a'.repeat(40),
} as ImageManifest

describe('StatusReporter', () => {
  it('never posts the failed state without its error', async () => {
    const { url, posts } = await recordPosts(300)
    const reporter = new StatusReporter({
      server: url,
      image: 'node',
      peerId: makePeerId('client'),
      logger: silentLogger(),
    })
    // A failure before any download (a target that is not writable): the move to
    // `failed` is the first thing posted.
    reporter.update({ type: 'manifest', manifest })
    await reporter.flush()
    reporter.update({ type: 'state', state: 'failed', previous: 'waiting' })
    reporter.update({
      type: 'failed',
      error: {
        code: 'E_TARGET_NOT_WRITABLE',
        message: 'target root /a is not writable',
        operation: undefined,
        path: undefined,
        hint: undefined,
      },
    })
    await reporter.flush()
    const failed = posts.filter((post) => post.state === 'failed')
    expect(failed.length).toBeGreaterThan(0)
    for (const post of failed) expect(post.error?.code).toBe('E_TARGET_NOT_WRITABLE')
    expect(posts.at(-1)?.state).toBe('failed')
  })
})
