import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { BrowserContext, Page } from 'playwright-core'
import { afterEach, describe, expect, it } from 'vitest'
import { runInstall, startServer } from '../scripts/lib/deployment.mjs'
import { ARTIFACTS, hasChromium, launchBrowser, waitUntil } from './helpers/chromium.js'
import { startLibtorrentSeeder, whyNoLibtorrent } from './helpers/foreign-seeder.js'
import {
  addSampleImage,
  clientDirs,
  makeServerLayout,
  type ServerLayout,
} from './helpers/workspace.js'

type Server = Awaited<ReturnType<typeof startServer>>

const noLibtorrent = whyNoLibtorrent()

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

/** Node `n` installs; with `mac`, it booted over PXE from that NIC (`BOOTIF=`). */
async function install(n: number, mac?: string) {
  let cmdline: string | undefined
  if (mac !== undefined) {
    cmdline = join(layout!.dir, `cmdline-${n}`)
    await writeFile(cmdline, `BOOTIF=01-${mac.replaceAll(':', '-')}\n`)
  }
  return runInstall({
    server: server!.url,
    image: 'compute',
    ...clientDirs(layout!, n),
    seedTime: 0,
    ...(cmdline === undefined ? {} : { cmdline }),
    args: ['--node-name', `node${n}`],
  })
}

/** The node table's rows as a person reads them: name, address, MAC. */
function nodeRows(page: Page): Promise<string[][]> {
  return page.$$eval('#nodes tbody tr', (rows) =>
    rows.map((row) =>
      ['.name', '.c-address .mono:not(.muted)', '.c-address .muted'].map(
        (cell) => row.querySelector(cell)?.textContent ?? '',
      ),
    ),
  )
}

describe.skipIf(!hasChromium)('the dashboard’s deployments in a real browser', () => {
  it('shows each deployment’s summary, keeps the earlier one and exports a CSV row per node', async () => {
    layout = await makeServerLayout('imageswarm-dashboard-deployments-')
    await addSampleImage(layout, 'compute')
    // A short gap: a deployment ends 3 s after its last node finished.
    server = await startServer({
      images: ['compute'],
      ...layout,
      args: ['--deployment-gap', '3'],
    })
    const launched = await launchBrowser(join(layout.dir, 'chromium-profile'))
    browser = launched.context
    const { page } = launched
    const pageErrors: string[] = []
    page.on('pageerror', (err) => pageErrors.push(err.message))

    // The start page: the header names no "null".
    await page.goto(`${server.url}/`)
    await page.waitForSelector('tr[data-image="compute"]')
    expect(await page.textContent('#crumbs')).toBe('Images')

    await page.goto(`${server.url}/#/images/compute`)
    await page.waitForSelector('.live[data-state="live"]')

    // The first deployment: two nodes at once, one of them booted over PXE.
    const first = await Promise.all([install(1), install(2, '52:54:00:12:34:02')])
    for (const result of first) expect(result.code, JSON.stringify(result.failed)).toBe(0)
    await waitUntil(
      page,
      `document.querySelector('#deployment')?.dataset.deploymentId === '1' && document.querySelector('#deployment')?.dataset.state === 'finished'`,
      'deployment 1 finished',
    )
    expect(await page.textContent('#deployment .deployment-text')).toMatch(
      /^2 nodes in \d+ s, server sent [\d.]+ copies$/,
    )
    // The address column: the node's IP, no ephemeral port, and the MAC it booted from.
    expect((await nodeRows(page)).sort()).toEqual([
      ['node1', '127.0.0.1', ''],
      ['node2', '127.0.0.1', '52:54:00:12:34:02'],
    ])

    // The second deployment: one node. The first one's nodes leave the live table and the
    // first deployment is listed as an earlier one.
    const second = await install(3)
    expect(second.code, JSON.stringify(second.failed)).toBe(0)
    await waitUntil(
      page,
      `document.querySelector('#deployment')?.dataset.deploymentId === '2' && document.querySelector('#deployment')?.dataset.state === 'finished' && document.querySelector('#deployments tr[data-deployment="1"]') !== null`,
      'deployment 2 finished beside deployment 1',
    )
    expect(await page.textContent('#deployment .deployment-text')).toMatch(/^1 node in \d+ s/)
    expect(await page.locator('#nodes tbody tr').count()).toBe(1)
    expect(await page.textContent('#nodes tbody tr .name')).toBe('node3')
    expect(await page.textContent('[data-tile="installed"] .tile-value')).toBe('1')
    await mkdir(ARTIFACTS, { recursive: true })
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-deployments.png'), fullPage: true })

    // The earlier deployment's export link downloads its CSV: a header and a row per node.
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.click('#deployments tr[data-deployment="1"] a.export-csv'),
    ])
    expect(download.suggestedFilename()).toBe('compute-deployment-1.csv')
    const csv = await readFile((await download.path())!, 'utf8')
    const lines = csv.trimEnd().split('\r\n')
    expect(lines[0]).toBe(
      'host,mac,address,peer_id,state,started,finished,seconds,bytes_from_server,bytes_from_peers,error',
    )
    const rows = lines.slice(1).map((line) => [line.split(',')[0], line.split(',')[4]])
    expect(rows.sort()).toEqual([
      ['node1', 'done'],
      ['node2', 'done'],
    ])

    // And as JSON: the summary with a row per node, the MAC where the node reported one.
    const [json] = await Promise.all([
      page.waitForEvent('download'),
      page.click('#deployments tr[data-deployment="1"] a.export-json'),
    ])
    expect(json.suggestedFilename()).toBe('compute-deployment-1.json')
    const record = JSON.parse(await readFile((await json.path())!, 'utf8')) as {
      id: number
      nodes: number
      rows: { node: string; mac: string | null }[]
    }
    expect(record).toMatchObject({ id: 1, nodes: 2 })
    expect(record.rows.map((row) => [row.node, row.mac]).sort()).toEqual([
      ['node1', null],
      ['node2', '52:54:00:12:34:02'],
    ])
    expect(pageErrors).toEqual([])
  })

  it.skipIf(noLibtorrent !== undefined)(
    `lists another BitTorrent client under All only, counted apart from the nodes${noLibtorrent ? ` (skipped: ${noLibtorrent})` : ''}`,
    async () => {
      layout = await makeServerLayout('imageswarm-dashboard-others-')
      await addSampleImage(layout, 'compute')
      server = await startServer({ images: ['compute'], ...layout })
      const launched = await launchBrowser(join(layout.dir, 'chromium-profile'))
      browser = launched.context
      const { page } = launched
      const pageErrors: string[] = []
      page.on('pageerror', (err) => pageErrors.push(err.message))
      await page.goto(`${server.url}/#/images/compute`)
      await page.waitForSelector('.live[data-state="live"]')
      const installed = await install(1)
      expect(installed.code, JSON.stringify(installed.failed)).toBe(0)

      // A real libtorrent seeder joins the swarm.
      const seeder = await startLibtorrentSeeder(
        join(layout.torrentsDir, 'image-compute.tar.zst.torrent'),
        layout.tarballsDir,
      )
      try {
        await waitUntil(
          page,
          `document.querySelector('#nodes tbody tr.is-foreign') !== null`,
          'the libtorrent seeder as another client',
        )
        expect(await page.textContent('#nodes tbody tr.is-foreign .name')).toBe(
          'other BitTorrent client',
        )
        expect(await page.textContent('.toolbar-right .shown')).toBe('1 node and 1 other client')
        expect(await page.textContent('.chip[data-filter="all"] .count')).toBe('2')
        // node1, done; the stale chip counts across states, so it is left out of the sum.
        const states = await page.$$eval(
          '.chip:not([data-filter="all"]):not([data-filter="stale"]) .count',
          (counts) => counts.reduce((sum, count) => sum + Number(count.textContent), 0),
        )
        expect(states).toBe(1)
        await page.click('.chip[data-filter="seeding"]')
        expect(await page.locator('#nodes tbody tr.is-foreign').count()).toBe(0)
      } finally {
        await seeder.stop()
      }
      expect(pageErrors).toEqual([])
    },
  )
})
