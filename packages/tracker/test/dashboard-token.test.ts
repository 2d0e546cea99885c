import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ImageSwarmError, NODE_STATUS_PATH } from '@imageswarm/core'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createTracker } from '../src/index.js'
import { clientPeerId, nodeToken, statusReport } from './fixtures.js'
import { announce, type RunningTracker, startTracker, testInfoHash } from './tracker-server.js'

const TOKEN = 'd3f1c0ffee5ca1ab1e0ddba11dec0de5'

let dir: string
let running: RunningTracker | undefined

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'imageswarm-token-'))
})

afterEach(async () => {
  await running?.close()
  running = undefined
  await rm(dir, { recursive: true, force: true })
})

async function withToken(): Promise<RunningTracker> {
  const file = join(dir, 'dashboard.token')
  // As `openssl rand -hex 16 > FILE` writes it: the newline is not part of the token.
  await writeFile(file, `${TOKEN}\n`)
  running = await startTracker({ config: { dashboardTokenFile: file } })
  running.tracker.publish(testInfoHash(1), 'rocky9', 1000)
  return running
}

const READ_PATHS = [
  '/',
  '/assets/app.js',
  '/assets/uplot.esm.js',
  '/api/images',
  '/api/images/rocky9/nodes',
  '/api/nothing',
  '/metrics',
]

describe('the dashboard token', () => {
  it('keeps the page, the API and metrics from anyone without it: 401 E_DASHBOARD_UNAUTHORIZED', async () => {
    const { baseUrl } = await withToken()
    for (const path of [...READ_PATHS, '/api/events']) {
      const attempts: Record<string, string>[] = [
        {},
        { authorization: 'Bearer wrong' },
        { cookie: 'imageswarm_dashboard=wrong' },
      ]
      for (const headers of attempts) {
        const response = await fetch(`${baseUrl}${path}`, { headers })
        expect(response.status, `${path} ${JSON.stringify(headers)}`).toBe(401)
        expect(response.headers.get('www-authenticate')).toMatch(/^Bearer /)
        const { error } = (await response.json()) as { error: { code: string; hint: string } }
        expect(error.code).toBe('E_DASHBOARD_UNAUTHORIZED')
        expect(error.hint).toMatch(/--dashboard-token-file/)
      }
    }
    expect((await fetch(`${baseUrl}/?token=wrong`)).status).toBe(401)
  })

  it('lets the token in as a bearer header, a cookie or ?token= (which sets the cookie)', async () => {
    const { baseUrl } = await withToken()
    for (const path of READ_PATHS) {
      const response = await fetch(`${baseUrl}${path}`, {
        headers: { authorization: `Bearer ${TOKEN}` },
      })
      expect(response.status, path).toBe(path === '/api/nothing' ? 404 : 200)
      await response.arrayBuffer()
    }
    // In a browser: the page with ?token= sets an HttpOnly cookie and loads itself again
    // without the token in the address.
    const page = await fetch(`${baseUrl}/?token=${TOKEN}&x=1`, { redirect: 'manual' })
    expect(page.status).toBe(303)
    expect(page.headers.get('location')).toBe('/?x=1')
    const cookie = page.headers.get('set-cookie') ?? ''
    expect(cookie).toMatch(/^imageswarm_dashboard=[^;]+; Path=\/; HttpOnly; SameSite=Strict$/)
    const jar = cookie.split(';')[0]!
    for (const path of READ_PATHS.filter((p) => p !== '/api/nothing')) {
      const response = await fetch(`${baseUrl}${path}`, { headers: { cookie: `x=1; ${jar}` } })
      expect(response.status, path).toBe(200)
      await response.arrayBuffer()
    }
    const events = new AbortController()
    const live = await fetch(`${baseUrl}/api/events`, {
      headers: { cookie: jar },
      signal: events.signal,
    })
    expect(live.status).toBe(200)
    expect(live.headers.get('content-type')).toMatch(/^text\/event-stream/)
    events.abort()
    // An API read with ?token= answers at once (and sets the cookie too).
    const api = await fetch(`${baseUrl}/api/images?token=${TOKEN}`)
    expect(api.status).toBe(200)
  })

  it('leaves the tracker and nodes’ status posts open: nodes do not know the token', async () => {
    const { baseUrl, announceUrl } = await withToken()
    const announced = await announce(announceUrl, {
      infoHash: testInfoHash(1),
      peerId: clientPeerId(1),
      port: 6881,
    })
    expect(announced.status).toBe(200)
    expect(announced.body['failure reason']).toBeUndefined()
    const status = await fetch(`${baseUrl}${NODE_STATUS_PATH}`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: `Bearer ${nodeToken(clientPeerId(1))}`,
      },
      body: JSON.stringify(statusReport(1)),
    })
    expect(status.status).toBe(200)
    expect((await fetch(`${baseUrl}/scrape`)).status).toBe(200)
  })

  it('refuses to start with a token file it cannot read or that holds no usable token, naming the key', async () => {
    const missing = join(dir, 'missing.token')
    const short = join(dir, 'short.token')
    await writeFile(short, 'abc\n')
    for (const [file, message] of [
      [missing, /cannot read the dashboard token file .*ENOENT/],
      [short, /holds no usable token/],
    ] as const) {
      let thrown: unknown
      try {
        createTracker({ config: { dashboardTokenFile: file } })
      } catch (err) {
        thrown = err
      }
      expect(thrown).toBeInstanceOf(ImageSwarmError)
      expect(thrown).toMatchObject({ code: 'E_CONFIG_INVALID', path: file, message })
      expect((thrown as ImageSwarmError).hint).toMatch(/openssl rand -hex 32 > FILE/)
    }
  })
})
