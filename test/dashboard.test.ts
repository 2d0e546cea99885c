import { randomBytes } from 'node:crypto'
import { appendFile, mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { BrowserContext, Page } from 'playwright-core'
import { afterEach, describe, expect, it } from 'vitest'
import { runInstall, runUpdate, startServer } from '../scripts/lib/deployment.mjs'
import { makeSampleImage } from '../scripts/lib/sample-image.mjs'
import { ARTIFACTS, hasChromium, launchBrowser } from './helpers/chromium.js'
import { clientDirs, makeServerLayout, type ServerLayout } from './helpers/workspace.js'

type Server = Awaited<ReturnType<typeof startServer>>

let layout: ServerLayout | undefined
let server: Server | undefined
let browser: BrowserContext | undefined

afterEach(async () => {
  await browser?.close()
  browser = undefined
  await server?.stop()
  server = undefined
  await layout?.remove()
  layout = undefined
})

interface Row {
  peerId: string
  name: string
  state: string
  progress: number
  text: string
}

/** The node table as the page shows it now. */
async function readRows(page: Page): Promise<Row[]> {
  // A string, run in the page: the e2e tests are type-checked without the DOM library.
  return (await page.evaluate(`[...document.querySelectorAll('#nodes tbody tr')].map((tr) => ({
    peerId: tr.dataset.peerId ?? '',
    name: tr.querySelector('.name')?.textContent ?? '',
    state: tr.dataset.state ?? '',
    progress: Number(tr.dataset.progress),
    text: tr.textContent ?? '',
  }))`)) as Row[]
}

describe.skipIf(!hasChromium)('the dashboard in a real browser', () => {
  it('shows the version history and nodes updating through their delta’s swarm', async () => {
    layout = await makeServerLayout('imageswarm-dashboard-')
    const root = join(layout.imagesDir, 'compute')
    await makeSampleImage(root, { dirs: 4, filesPerDir: 10, bigFiles: 1, seed: 'versions' })
    server = await startServer({ images: ['compute'], ...layout })
    const nodes = [1, 2].map((n) => clientDirs(layout!, n))
    for (const dirs of nodes) {
      const installed = await runInstall({
        server: server.url,
        image: 'compute',
        ...dirs,
        seedTime: 0,
      })
      expect(installed.code).toBe(0)
    }
    await server.stop()
    await appendFile(join(root, 'etc/os-release'), 'VERSION_ID=2\n')
    server = await startServer({ images: ['compute'], ...layout })

    const launched = await launchBrowser(join(layout.dir, 'chromium-profile'), {
      width: 1440,
      height: 1100,
    })
    browser = launched.context
    const { page } = launched
    await page.goto(`${server.url}/#/images/compute`)
    await page.waitForSelector('#versions tr[data-version="2"]')
    const history = await page.textContent('#versions')
    expect(history).toMatch(/Versions \(keeping 4\)/)
    expect(await page.textContent('#versions tr[data-version="1"]')).toMatch(/1 changed|changed/)

    const updates = nodes.map((dirs, i) =>
      runUpdate({
        server: server!.url,
        image: 'compute',
        ...dirs,
        seedTime: 2,
        args: ['--node-name', `node${i + 1}`],
      }),
    )
    await page.goto(`${server.url}/#/images/compute.delta-1-2`)
    await page.waitForSelector('#nodes')
    const deadline = Date.now() + 60_000
    let rows: Row[] = []
    while (Date.now() < deadline) {
      rows = await readRows(page)
      if (rows.length >= 2 && rows.every((row) => row.state === 'done')) break
      await page.waitForTimeout(200)
    }
    await mkdir(ARTIFACTS, { recursive: true })
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-update.png'), fullPage: true })
    for (const result of await Promise.all(updates)) {
      expect(result.failed?.error).toBeUndefined()
      expect(result.plan.source).toBe('delta')
    }
    expect(rows.map((row) => [row.name, row.state]).sort()).toEqual([
      ['node1', 'done'],
      ['node2', 'done'],
    ])
  })

  it('shows four real clients appear, make progress and finish, live', async () => {
    layout = await makeServerLayout('imageswarm-dashboard-')
    // Large enough, with a slow server uplink, that the install takes several seconds
    // and the page can be seen moving.
    await makeSampleImage(join(layout.imagesDir, 'compute'), {
      dirs: 8,
      filesPerDir: 20,
      bigFiles: 4,
      bigFileBytes: 4 * 1024 * 1024,
      seed: 'dashboard',
    })
    server = await startServer({
      images: ['compute'],
      ...layout,
      args: ['--upload-limit', '2M', '--announce-interval', '2'],
    })
    const launched = await launchBrowser(join(layout.dir, 'chromium-profile'), {
      width: 1440,
      height: 1100,
    })
    browser = launched.context
    const { page } = launched
    const pageErrors: string[] = []
    page.on('pageerror', (err) => pageErrors.push(err.message))
    page.on('console', (msg) => {
      if (msg.type() === 'error') pageErrors.push(msg.text())
    })

    // The start page lists the image before any node has come.
    await page.goto(`${server.url}/`)
    await page.waitForSelector('tr[data-image="compute"]')
    // The list redraws with every update; its links stay the same elements, so a click
    // cannot fall between two redraws. Mark a cell, wait for a redraw to replace it.
    const link = await page.$('tr[data-image="compute"] a.image-name')
    await page.$eval('tr[data-image="compute"] td:nth-child(2)', (cell) => {
      cell.dataset.probe = 'old'
    })
    await page.waitForSelector('tr[data-image="compute"] td:nth-child(2):not([data-probe])')
    expect(await link!.evaluate((a) => a.isConnected)).toBe(true)
    await page.click('tr[data-image="compute"] a.image-name')
    await page.waitForSelector('#nodes')
    await page.waitForSelector('.live[data-state="live"]')

    const clients = [1, 2, 3, 4].map((n) =>
      runInstall({
        server: server!.url,
        image: 'compute',
        ...clientDirs(layout!, n),
        seedTime: 4,
        args: ['--node-name', `node${n}`],
      }),
    )
    const done = Promise.all(clients)

    // Watch the table until every node is done, remembering each node's progress.
    const seen = new Map<string, number[]>()
    let best = -1
    const deadline = Date.now() + 150_000
    let rows: Row[] = []
    while (Date.now() < deadline) {
      rows = await readRows(page)
      for (const row of rows) {
        const values = seen.get(row.name) ?? []
        if (values.at(-1) !== row.progress) values.push(row.progress)
        seen.set(row.name, values)
      }
      // The screenshot shows the swarm halfway: nodes spread along their progress bars,
      // both sources on the throughput chart. Until then, the busiest moment so far.
      const partway = rows.filter((row) => row.progress > 0 && row.progress < 1).length
      const mean = rows.reduce((sum, row) => sum + row.progress, 0) / Math.max(1, rows.length)
      const score = rows.length < 4 ? -1 : mean >= 0.5 && partway > 0 ? 100 : partway
      if (score > best) {
        best = score
        await mkdir(ARTIFACTS, { recursive: true })
        await page.screenshot({ path: join(ARTIFACTS, 'dashboard.png'), fullPage: true })
      }
      if (rows.length >= 4 && rows.every((row) => row.state === 'done')) break
      await page.waitForTimeout(200)
    }
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-done.png'), fullPage: true })

    const results = await done
    for (const result of results) expect(result.code, JSON.stringify(result.failed)).toBe(0)

    expect(rows.map((row) => row.name).sort()).toEqual(['node1', 'node2', 'node3', 'node4'])
    expect(rows.map((row) => row.state)).toEqual(['done', 'done', 'done', 'done'])
    // Progress moved: the page showed nodes partway, and values rising to 100%.
    const partway = [...seen.values()].flat().filter((p) => p > 0 && p < 1)
    expect(partway.length).toBeGreaterThan(0)
    for (const values of seen.values()) expect(values.at(-1)).toBe(1)
    expect(rows.every((row) => row.text.includes('100%'))).toBe(true)

    // The summary tiles and both charts follow.
    const installed = await page.textContent('[data-tile="installed"] .tile-value')
    expect(installed).toBe('4')
    expect(await page.locator('.chart canvas').count()).toBe(2)
    const delivered = await page.textContent('[data-tile="delivered"] .tile-value')
    expect(delivered).toMatch(/MiB/)
    expect(pageErrors).toEqual([])

    // The filter narrows the table to one state.
    await page.click('.chip[data-filter="failed"]')
    expect(await page.locator('#nodes tbody tr').count()).toBe(0)
    await page.click('.chip[data-filter="done"]')
    expect(await page.locator('#nodes tbody tr').count()).toBe(4)

    // How each node's progress rose, beside the screenshots.
    await writeFile(join(ARTIFACTS, 'dashboard-progress.json'), JSON.stringify([...seen]))
  })

  it('shows a client whose target is not writable as failed, with its error', async () => {
    layout = await makeServerLayout('imageswarm-dashboard-')
    await makeSampleImage(join(layout.imagesDir, 'login'), {
      dirs: 2,
      filesPerDir: 5,
      bigFiles: 1,
      bigFileBytes: 256 * 1024,
      seed: 'login',
    })
    server = await startServer({ images: ['login'], ...layout })
    const launched = await launchBrowser(join(layout.dir, 'chromium-profile'), {
      width: 1440,
      height: 900,
    })
    browser = launched.context
    const { page } = launched
    await page.goto(`${server.url}/#/images/login`)
    await page.waitForSelector('.live[data-state="live"]')

    // A regular file where the target root should be: not a directory, not writable
    // even for root (the tests may run as root, for whom permissions do not apply).
    const dirs = clientDirs(layout, 1)
    await mkdir(join(dirs.target, '..'), { recursive: true })
    await writeFile(dirs.target, 'not a directory')
    const result = await runInstall({
      server: server.url,
      image: 'login',
      ...dirs,
      args: ['--node-name', 'broken1'],
    })
    expect(result.failed?.error.code).toBe('E_TARGET_NOT_WRITABLE')

    const row = page.locator('#nodes tbody tr[data-state="failed"]')
    await row.waitFor({ timeout: 15_000 })
    expect(await row.locator('.name').textContent()).toBe('broken1')
    expect(await row.locator('.c-error').textContent()).toMatch(
      /^E_TARGET_NOT_WRITABLE: target root .* is not writable/,
    )
    expect(await page.textContent('[data-tile="failed"] .tile-value')).toBe('1')
    // The failed filter finds it.
    await page.click('.chip[data-filter="failed"]')
    expect(await page.locator('#nodes tbody tr').count()).toBe(1)
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-failed.png'), fullPage: true })
  })

  it('asks for the read-only token, then works in the browser after ?token= once', async () => {
    layout = await makeServerLayout('imageswarm-dashboard-')
    await makeSampleImage(join(layout.imagesDir, 'login'), {
      dirs: 2,
      filesPerDir: 5,
      bigFiles: 1,
      bigFileBytes: 256 * 1024,
      seed: 'login',
    })
    const token = randomBytes(24).toString('hex')
    const tokenFile = join(layout.dir, 'dashboard.token')
    await writeFile(tokenFile, `${token}\n`, { mode: 0o600 })
    server = await startServer({
      images: ['login'],
      ...layout,
      args: ['--dashboard-token-file', tokenFile],
    })
    const launched = await launchBrowser(join(layout.dir, 'chromium-profile'), {
      width: 1440,
      height: 900,
    })
    browser = launched.context
    const { page } = launched
    const pageErrors: string[] = []
    page.on('pageerror', (err) => pageErrors.push(err.message))

    // Without the token: a JSON 401, nothing of the swarm.
    const refused = await page.goto(`${server.url}/#/images/login`)
    expect(refused?.status()).toBe(401)
    expect(await page.textContent('body')).toContain('E_DASHBOARD_UNAUTHORIZED')

    // Once with ?token=: the page comes back without it in the address, and its own
    // requests (scripts, live events) carry the cookie it set.
    await page.goto(`${server.url}/?token=${token}#/images/login`)
    await page.waitForSelector('.live[data-state="live"]')
    expect(page.url()).toBe(`${server.url}/#/images/login`)
    const cookies = await browser.cookies(server.url)
    expect(cookies).toMatchObject([
      { name: 'imageswarm_dashboard', httpOnly: true, sameSite: 'Strict' },
    ])

    // A node installs; it reports without the token, and the page shows it.
    const result = await runInstall({
      server: server.url,
      image: 'login',
      ...clientDirs(layout, 1),
      seedTime: 1,
      args: ['--node-name', 'secured1'],
    })
    expect(result.code, JSON.stringify(result.failed)).toBe(0)
    const row = page.locator('#nodes tbody tr[data-state="done"]')
    await row.waitFor({ timeout: 15_000 })
    expect(await row.locator('.name').textContent()).toBe('secured1')

    // The cookie keeps working on a fresh load of the page.
    await page.reload()
    await page.waitForSelector('.live[data-state="live"]')
    await page.locator('#nodes tbody tr[data-state="done"]').waitFor({ timeout: 15_000 })
    expect(pageErrors).toEqual([])
    await mkdir(ARTIFACTS, { recursive: true })
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-token.png'), fullPage: true })
  })
})
