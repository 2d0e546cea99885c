import {
  createLogger,
  type ImageManifest,
  type InstallEvent,
  makePeerId,
  NODE_TOKEN_PATTERN,
  type NodeStatusReport,
  silentLogger,
} from '@imageswarm/core'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { parseRetryAfter } from '../src/http-answer.js'
import { StatusReporter } from '../src/status-reporter.js'

// The reporter's timing (its report interval, Retry-After, backoff) runs on vitest's fake
// clock, and its posts go to the fake server below: every test says exactly which posts
// are made, in what order, whatever the machine's load.
beforeEach(() => {
  vi.useFakeTimers({ toFake: ['Date', 'setTimeout', 'clearTimeout'], now: 1_700_000_000_000 })
})

afterEach(() => {
  vi.useRealTimers()
})

/** How the fake server answers one post. */
interface Answer {
  status: number
  headers?: Record<string, string>
  body?: unknown
}

interface Post {
  report: NodeStatusReport
  authorization: string | null
  /** Fake-clock milliseconds since the test began. */
  at: number
}

/**
 * A status endpoint as a `fetch` function: records every post and answers it as `answer`
 * says for the nth post (from 0), or, without `answer`, leaves it in flight until the
 * test calls `reply()`.
 */
function fakeServer(answer?: (nth: number) => Answer) {
  const start = Date.now()
  const posts: Post[] = []
  const inFlight: ((answer: Answer) => void)[] = []
  const fetchStatus = (async (_url: string | URL | Request, init?: RequestInit) => {
    const nth = posts.length
    posts.push({
      report: JSON.parse(String(init?.body)),
      authorization: new Headers(init?.headers).get('authorization'),
      at: Date.now() - start,
    })
    const { status, headers, body } =
      answer?.(nth) ?? (await new Promise<Answer>((resolve) => inFlight.push(resolve)))
    return new Response(body === undefined ? null : JSON.stringify(body), { status, headers })
  }) as typeof fetch
  return {
    fetch: fetchStatus,
    posts,
    /** Answers the oldest post still in flight, then lets the reporter act on it. */
    async reply(answer: Answer = { status: 200, body: { ok: true } }) {
      const next = inFlight.shift()
      if (!next) throw new Error('no post in flight')
      next(answer)
      await vi.advanceTimersByTimeAsync(0)
    },
    states: () => posts.map((post) => post.report.state),
  }
}

const manifest = { name: 'node', size: 1000, infoHash: 'a'.repeat(40) } as ImageManifest

const ok: Answer = { status: 200, body: { ok: true } }

function reporterFor(server: { fetch: typeof fetch }, logger = silentLogger()): StatusReporter {
  return new StatusReporter({
    server: 'http://192.0.2.1:6969',
    image: 'node',
    peerId: makePeerId('client'),
    logger,
    fetch: server.fetch,
  })
}

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

const totals = { downloaded: 1000, downloadedFromServer: 400, uploaded: 250 }
const failure: InstallEvent = {
  type: 'failed',
  error: {
    code: 'E_TARGET_NOT_WRITABLE',
    message: 'target root /a is not writable',
    operation: undefined,
    path: undefined,
    hint: undefined,
  },
}

/** The end of a failed install, as install.ts emits it: the state, then the error. */
function fail(reporter: StatusReporter): void {
  reporter.update({ type: 'state', state: 'failed', previous: 'downloading' })
  reporter.update(failure)
}

/** The end of a finished install: the state, then the totals. */
function finish(reporter: StatusReporter): void {
  reporter.update({ type: 'state', state: 'done', previous: 'seeding' })
  reporter.update({ type: 'installed', target: '/a', totals, seconds: 1 })
}

/** Every post in `done` or `failed` carries what makes it final. */
function expectFinalPostsComplete(posts: Post[]): void {
  for (const { report } of posts) {
    if (report.state === 'failed') expect(report.error?.code).toBe('E_TARGET_NOT_WRITABLE')
    if (report.state === 'done') expect(report).toMatchObject(totals)
  }
}

describe('StatusReporter', () => {
  it('posts nothing for the move to done or failed by itself, however long since the last post', async () => {
    for (const end of [fail, finish]) {
      const server = fakeServer(() => ok)
      const reporter = reporterFor(server)
      reporter.update({ type: 'manifest', manifest })
      await reporter.flush()
      // Long past the report interval: any other event would be posted now.
      await vi.advanceTimersByTimeAsync(5000)
      const state = end === fail ? 'failed' : 'done'
      reporter.update({ type: 'state', state, previous: 'downloading' })
      await reporter.flush()
      expect(server.states()).toEqual(['waiting'])
      end(reporter)
      await reporter.flush()
      expect(server.states()).toEqual(['waiting', state])
      expectFinalPostsComplete(server.posts)
    }
  })

  it('never lets the final state out without its details through a post in flight or a retry', async () => {
    // A progress post in flight when the install fails: what goes next is the failure.
    const busy = fakeServer()
    const reporter = reporterFor(busy)
    reporter.update({ type: 'manifest', manifest })
    await busy.reply()
    reporter.update({ type: 'state', state: 'downloading', previous: 'waiting' })
    await busy.reply()
    await vi.advanceTimersByTimeAsync(1000)
    reporter.update(progress(500))
    reporter.update({ type: 'state', state: 'failed', previous: 'downloading' })
    await busy.reply()
    expect(busy.states()).toEqual(['waiting', 'downloading', 'downloading'])
    reporter.update(failure)
    await busy.reply()
    await reporter.flush()
    expect(busy.states()).toEqual(['waiting', 'downloading', 'downloading', 'failed'])
    expectFinalPostsComplete(busy.posts)

    // A post the server turned away, to be sent again after a second: the state event
    // comes while it waits, the timer fires before the event with the totals.
    const flaky = fakeServer((nth) => (nth === 1 ? { status: 503 } : ok))
    const retried = reporterFor(flaky)
    retried.update({ type: 'manifest', manifest })
    retried.update({ type: 'state', state: 'downloading', previous: 'waiting' })
    await vi.advanceTimersByTimeAsync(0)
    retried.update({ type: 'state', state: 'done', previous: 'seeding' })
    await vi.advanceTimersByTimeAsync(1000)
    retried.update({ type: 'installed', target: '/a', totals, seconds: 1 })
    await retried.flush()
    expect(flaky.states()).toEqual(['waiting', 'downloading', 'downloading', 'done'])
    expectFinalPostsComplete(flaky.posts)
  })

  it('reports nothing after done or failed', async () => {
    const server = fakeServer(() => ok)
    const reporter = reporterFor(server)
    reporter.update({ type: 'manifest', manifest })
    fail(reporter)
    await reporter.flush()
    await vi.advanceTimersByTimeAsync(5000)
    reporter.update(progress(900))
    reporter.update({ type: 'installed', target: '/a', totals, seconds: 1 })
    await reporter.flush()
    expect(server.states()).toEqual(['waiting', 'failed'])
  })

  it('posts progress as rarely as the server asks, and state changes at once', async () => {
    const server = fakeServer(() => ({ status: 200, body: { ok: true, reportIntervalMs: 60_000 } }))
    const reporter = reporterFor(server)
    reporter.update({ type: 'manifest', manifest })
    reporter.update({ type: 'state', state: 'downloading', previous: 'waiting' })
    await reporter.flush()
    // Two seconds of progress, a tick every 100 ms: at its default second it would post.
    for (let i = 1; i <= 20; i++) {
      reporter.update(progress(i * 10))
      await vi.advanceTimersByTimeAsync(100)
    }
    expect(server.states()).toEqual(['waiting', 'downloading'])
    reporter.update({ type: 'state', state: 'verifying', previous: 'downloading' })
    await reporter.flush()
    expect(server.states()).toEqual(['waiting', 'downloading', 'verifying'])
    expect(server.posts.at(-1)?.report.downloaded).toBe(200)
  })

  it('keeps its own second when the reply names no interval or an unreasonable one', async () => {
    for (const body of [undefined, { ok: true }, { ok: true, reportIntervalMs: 5 }]) {
      const server = fakeServer(() => ({ status: body === undefined ? 204 : 200, body }))
      const reporter = reporterFor(server)
      reporter.update({ type: 'manifest', manifest })
      await reporter.flush()
      for (let i = 1; i <= 25; i++) {
        reporter.update(progress(i * 10))
        await vi.advanceTimersByTimeAsync(100)
      }
      // Progress at 0 ms (the manifest's post), then once a second: at 1.0 s and 2.0 s.
      expect(
        server.posts.map((post) => post.at),
        JSON.stringify(body),
      ).toEqual([0, 1000, 2000])
    }
  })

  it('holds reports back as long as a 429’s Retry-After says, then posts the latest', async () => {
    const server = fakeServer((nth) =>
      nth === 1 ? { status: 429, headers: { 'retry-after': '1' } } : ok,
    )
    const reporter = reporterFor(server)
    reporter.update({ type: 'manifest', manifest })
    await reporter.flush()
    reporter.update({ type: 'state', state: 'downloading', previous: 'waiting' })
    await vi.advanceTimersByTimeAsync(200)
    // A state change would go at once, but the server asked for a second's rest.
    reporter.update(progress(500))
    reporter.update({ type: 'state', state: 'verifying', previous: 'downloading' })
    await vi.advanceTimersByTimeAsync(799)
    expect(server.states()).toEqual(['waiting', 'downloading'])
    await vi.advanceTimersByTimeAsync(1)
    expect(server.states()).toEqual(['waiting', 'downloading', 'verifying'])
    expect(server.posts[2]?.report.downloaded).toBe(500)
    expect(server.posts[2]!.at - server.posts[1]!.at).toBe(1000)
  })

  it('sends the final state again when the server failed to take it', async () => {
    const server = fakeServer((nth) => (nth === 1 ? { status: 503 } : { status: 204 }))
    const reporter = reporterFor(server)
    reporter.update({ type: 'manifest', manifest })
    await reporter.flush()
    finish(reporter)
    await vi.advanceTimersByTimeAsync(1000)
    await reporter.flush()
    expect(server.states()).toEqual(['waiting', 'done', 'done'])
    expectFinalPostsComplete(server.posts)
  })

  it('does not send again what a server without the status API refused', async () => {
    const server = fakeServer(() => ({ status: 404 }))
    const reporter = reporterFor(server)
    reporter.update({ type: 'manifest', manifest })
    await reporter.flush()
    finish(reporter)
    await reporter.flush()
    await vi.advanceTimersByTimeAsync(120_000)
    expect(server.states()).toEqual(['waiting', 'done'])
  })

  it('sends its own node token with every post, from the first, and takes the one a reply names', async () => {
    const named = 'N'.repeat(43)
    const server = fakeServer((nth) =>
      nth === 1 ? { status: 200, body: { ok: true, nodeToken: named } } : ok,
    )
    const reporter = reporterFor(server)
    reporter.update({ type: 'manifest', manifest })
    reporter.update({ type: 'state', state: 'downloading', previous: 'waiting' })
    await reporter.flush()
    fail(reporter)
    await reporter.flush()
    const [first, second, third] = server.posts.map((post) => post.authorization)
    expect(first).toMatch(/^Bearer /)
    expect(first!.slice('Bearer '.length)).toMatch(NODE_TOKEN_PATTERN)
    expect(second).toBe(first)
    expect(third).toBe(`Bearer ${named}`)
  })

  it('stops for good after a 403, saying so once', async () => {
    const lines: { level: number; msg: string; err?: string }[] = []
    const logger = createLogger({
      name: 'install',
      level: 'debug',
      destination: { write: (line: string) => lines.push(JSON.parse(line)) },
    })
    const server = fakeServer((nth) =>
      nth === 1
        ? {
            status: 403,
            body: { error: { code: 'E_NODE_FORBIDDEN', message: 'peer id belongs to another' } },
          }
        : ok,
    )
    const reporter = reporterFor(server, logger)
    reporter.update({ type: 'manifest', manifest })
    reporter.update({ type: 'state', state: 'downloading', previous: 'waiting' })
    await reporter.flush()
    for (let i = 1; i <= 30; i++) {
      reporter.update(progress(i * 10))
      await vi.advanceTimersByTimeAsync(100)
    }
    fail(reporter)
    await reporter.flush()
    await vi.advanceTimersByTimeAsync(120_000)
    expect(server.states()).toEqual(['waiting', 'downloading'])
    const warnings = lines.filter((line) => line.level === 40)
    expect(warnings).toHaveLength(1)
    expect(warnings[0]?.err).toBe('HTTP 403 E_NODE_FORBIDDEN: peer id belongs to another')
  })

  it('reports to every server on its own: one that is down neither delays nor stops the others', async () => {
    const up = 'http://192.0.2.1:6969'
    const down = 'http://192.0.2.2:6969'
    const start = Date.now()
    const posts: { server: string; state: string; at: number; authorization: string | null }[] = []
    const fetchStatus = (async (url: string | URL | Request, init?: RequestInit) => {
      const server = String(url).startsWith(up) ? up : down
      posts.push({
        server,
        state: JSON.parse(String(init?.body)).state,
        at: Date.now() - start,
        authorization: new Headers(init?.headers).get('authorization'),
      })
      if (server === down) throw new TypeError('fetch failed')
      return new Response(JSON.stringify({ ok: true }), { status: 200 })
    }) as typeof fetch
    const lines: { level: number; server?: string }[] = []
    const logger = createLogger({
      name: 'install',
      level: 'debug',
      destination: { write: (line: string) => lines.push(JSON.parse(line)) },
    })
    const reporter = new StatusReporter({
      server: [down, up],
      image: 'node',
      peerId: makePeerId('client'),
      logger,
      fetch: fetchStatus,
    })
    reporter.update({ type: 'manifest', manifest })
    await vi.advanceTimersByTimeAsync(0)
    reporter.update({ type: 'state', state: 'downloading', previous: 'waiting' })
    await vi.advanceTimersByTimeAsync(1500)
    fail(reporter)
    const flushed = reporter.flush()
    await vi.advanceTimersByTimeAsync(3000)
    await flushed
    const of = (server: string) =>
      posts.filter((post) => post.server === server).map(({ state, at }) => ({ state, at }))
    // Each state change reaches the server that is up when it happens.
    expect(of(up)).toEqual([
      { state: 'waiting', at: 0 },
      { state: 'downloading', at: 0 },
      { state: 'failed', at: 1500 },
    ])
    // The one that is down is asked again on its own backoff (1 s, 2 s), the latest report.
    expect(of(down)).toEqual([
      { state: 'waiting', at: 0 },
      { state: 'downloading', at: 1000 },
      { state: 'failed', at: 3000 },
    ])
    // Each server gets a node token of its own: neither can speak for the node to the other.
    const token = (server: string) => posts.find((post) => post.server === server)?.authorization
    expect(token(up)).toMatch(/^Bearer /)
    expect(token(down)).toMatch(/^Bearer /)
    expect(token(up)).not.toBe(token(down))
    expect(lines.filter((line) => line.level === 40)).toEqual([
      expect.objectContaining({ server: down }),
    ])
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
