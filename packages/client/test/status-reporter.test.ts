import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import {
  type ImageManifest,
  type InstallEvent,
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

/**
 * A status endpoint that records every post, answering each after `delayMs`: with no body,
 * or with `reply` as JSON.
 */
async function recordPosts(delayMs: number, reply?: unknown) {
  const posts: NodeStatusReport[] = []
  server = createServer(async (req, res) => {
    let body = ''
    for await (const chunk of req) body += chunk
    posts.push(JSON.parse(body))
    setTimeout(() => {
      if (reply === undefined) res.writeHead(204).end()
      else res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(reply))
    }, delayMs)
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

function progress(downloaded: number): InstallEvent {
  return {
    type: 'download-progress',
    size: 1000,
    totals: { downloaded, downloadedFromServer: 0, uploaded: 0 },
    downloadRate: 100,
    uploadRate: 0,
    peers: 1,
  }
}

function reporterFor(server: string): StatusReporter {
  return new StatusReporter({
    server,
    image: 'node',
    peerId: makePeerId('client'),
    logger: silentLogger(),
  })
}

/**
 * Starts a download, then feeds a progress event every 100 ms, `ticks` times: how many
 * posts the progress alone made.
 */
async function postsDuringProgress(
  reporter: StatusReporter,
  posts: NodeStatusReport[],
  ticks: number,
): Promise<number> {
  reporter.update({ type: 'manifest', manifest })
  reporter.update({ type: 'state', state: 'downloading', previous: 'waiting' })
  await reporter.flush()
  const afterStart = posts.length
  for (let i = 1; i <= ticks; i++) {
    reporter.update(progress(i * 10))
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  await reporter.flush()
  return posts.length - afterStart
}

describe('StatusReporter', () => {
  it('never posts the failed state without its error', async () => {
    const { url, posts } = await recordPosts(300)
    const reporter = reporterFor(url)
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

  it('posts progress as rarely as the server asks, and state changes at once', async () => {
    const { url, posts } = await recordPosts(0, { ok: true, reportIntervalMs: 60_000 })
    const reporter = reporterFor(url)
    // Two seconds of progress: a reporter at its default second would post again.
    expect(await postsDuringProgress(reporter, posts, 20)).toBe(0)
    reporter.update({ type: 'state', state: 'verifying', previous: 'downloading' })
    await reporter.flush()
    expect(posts.at(-1)?.state).toBe('verifying')
    expect(posts.at(-1)?.downloaded).toBe(200)
  })

  it('keeps its own second when the reply names no interval or an unreasonable one', async () => {
    for (const reply of [undefined, { ok: true }, { ok: true, reportIntervalMs: 5 }]) {
      const { url, posts } = await recordPosts(0, reply)
      const progressPosts = await postsDuringProgress(reporterFor(url), posts, 13)
      expect(progressPosts, JSON.stringify(reply)).toBeGreaterThan(0)
      await new Promise((resolve) => server!.close(resolve))
      server = undefined
    }
  })
})
