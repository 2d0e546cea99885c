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
import { parseRetryAfter, StatusReporter } from '../src/status-reporter.js'

let server: Server | undefined

afterEach(async () => {
  if (server) await new Promise((resolve) => server!.close(resolve))
  server = undefined
})

/** How the test server answers the nth post (from 0): a status, headers and JSON body. */
type Answer = { status: number; headers?: Record<string, string>; body?: unknown }

/**
 * A status endpoint that records every post (and when it came), answering each after
 * `delayMs`: with no body, with `reply` as JSON, or as `answer` says for that post.
 */
async function recordPosts(delayMs: number, reply?: unknown, answer?: (nth: number) => Answer) {
  const posts: NodeStatusReport[] = []
  const times: number[] = []
  server = createServer(async (req, res) => {
    let body = ''
    for await (const chunk of req) body += chunk
    const nth = posts.length
    posts.push(JSON.parse(body))
    times.push(Date.now())
    setTimeout(() => {
      const answered = answer?.(nth)
      if (answered !== undefined) {
        res.writeHead(answered.status, answered.headers).end(JSON.stringify(answered.body ?? {}))
      } else if (reply === undefined) res.writeHead(204).end()
      else res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(reply))
    }, delayMs)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, posts, times }
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

/** The end of an install, as the client reports it: the state, then its totals. */
function finish(reporter: StatusReporter): void {
  const totals = { downloaded: 1000, downloadedFromServer: 0, uploaded: 0 }
  reporter.update({ type: 'state', state: 'done', previous: 'seeding' })
  reporter.update({ type: 'installed', target: '/a', totals, seconds: 1 })
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

  it('holds reports back as long as a 429’s Retry-After says, then posts the latest', async () => {
    const { url, posts, times } = await recordPosts(0, undefined, (nth) =>
      nth === 1 ? { status: 429, headers: { 'retry-after': '1' } } : { status: 204 },
    )
    const reporter = reporterFor(url)
    reporter.update({ type: 'manifest', manifest })
    await reporter.flush()
    reporter.update({ type: 'state', state: 'downloading', previous: 'waiting' })
    await new Promise((resolve) => setTimeout(resolve, 200))
    // A state change would go at once, but the server asked for a second's rest.
    reporter.update(progress(500))
    reporter.update({ type: 'state', state: 'verifying', previous: 'downloading' })
    expect(posts).toHaveLength(2)
    await reporter.flush()
    expect(posts.map((post) => post.state)).toEqual(['waiting', 'downloading', 'verifying'])
    expect(posts[2]?.downloaded).toBe(500)
    expect(times[2]! - times[1]!).toBeGreaterThanOrEqual(950)
  })

  it('sends the final state again when the server failed to take it', async () => {
    const { url, posts } = await recordPosts(0, undefined, (nth) =>
      nth === 1 ? { status: 503 } : { status: 204 },
    )
    const reporter = reporterFor(url)
    reporter.update({ type: 'manifest', manifest })
    await reporter.flush()
    finish(reporter)
    await reporter.flush()
    expect(posts.map((post) => post.state)).toEqual(['waiting', 'done', 'done'])
  })

  it('does not send again what a server without the status API refused', async () => {
    const { url, posts } = await recordPosts(0, undefined, () => ({ status: 404 }))
    const reporter = reporterFor(url)
    reporter.update({ type: 'manifest', manifest })
    await reporter.flush()
    finish(reporter)
    const started = Date.now()
    await reporter.flush()
    await new Promise((resolve) => setTimeout(resolve, 1200))
    expect(posts.map((post) => post.state)).toEqual(['waiting', 'done'])
    expect(Date.now() - started).toBeLessThan(2500)
  })

  it('reads Retry-After as seconds or as an HTTP date', () => {
    const now = Date.parse('2026-11-22T12:00:00Z')
    expect(parseRetryAfter('3', now)).toBe(3000)
    expect(parseRetryAfter('Sun, 22 Nov 2026 12:00:10 GMT', now)).toBe(10_000)
    expect(parseRetryAfter('Sun, 22 Nov 2026 11:00:00 GMT', now)).toBe(0)
    expect(parseRetryAfter('soon', now)).toBeUndefined()
    expect(parseRetryAfter(null, now)).toBeUndefined()
  })
})
