import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CLI, runInstall, startServer } from '../scripts/lib/deployment.mjs'
import {
  addSampleImage,
  clientDirs,
  makeServerLayout,
  type ServerLayout,
} from './helpers/workspace.js'

type Server = Awaited<ReturnType<typeof startServer>>

// `imageswarm images` and `imageswarm nodes IMAGE` against a real server that has the
// dashboard token on: one real install (done), one node that reports a failure.

let layout: ServerLayout
let server: Server
let tokenFile: string

/** `imageswarm ARGS` with the server's URL; resolves with its exit code and output. */
async function cli(args: string[], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, IMAGESWARM_SERVER: server.url, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk) => (stdout += chunk))
  child.stderr.on('data', (chunk) => (stderr += chunk))
  const [code] = await once(child, 'exit')
  return { code: code as number, stdout, stderr }
}

/** A node posting its status over HTTP, as the install client does. */
async function post(report: Record<string, unknown>, token: string) {
  const response = await fetch(`${server.url}/api/nodes/status`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify(report),
  })
  expect(response.status).toBe(200)
}

beforeAll(async () => {
  layout = await makeServerLayout('imageswarm-status-commands-')
  await addSampleImage(layout, 'compute')
  tokenFile = join(layout.dir, 'dashboard.token')
  await writeFile(tokenFile, `${randomBytes(24).toString('hex')}\n`, { mode: 0o600 })
  server = await startServer({
    images: ['compute'],
    ...layout,
    // The deployment still runs while the commands are asked, however slow the machine.
    args: ['--dashboard-token-file', tokenFile, '--deployment-gap', '1h'],
  })
  // The node booted over PXE: its kernel command line names the boot NIC (PXELINUX's form).
  const cmdline = join(layout.dir, 'cmdline')
  await writeFile(cmdline, 'quiet BOOTIF=01-52-54-00-12-34-01\n')
  const installed = await runInstall({
    server: server.url,
    image: 'compute',
    ...clientDirs(layout, 1),
    seedTime: 0,
    cmdline,
    args: ['--node-name', 'rack1-n01'],
  })
  expect(installed.code, JSON.stringify(installed.failed)).toBe(0)
  const manifest = (await (await fetch(`${server.url}/images/compute/manifest.json`)).json()) as {
    infoHash: string
    size: number
  }
  const token = randomBytes(32).toString('base64url')
  const report = {
    image: 'compute',
    infoHash: manifest.infoHash,
    peerId: Buffer.from('-IS01C0-000000000002', 'latin1').toString('hex'),
    node: 'rack1-n02',
    mac: '52:54:00:12:34:02',
    state: 'downloading',
    size: manifest.size,
    downloaded: 0,
    downloadedFromServer: 0,
    uploaded: 0,
    downloadRate: 0,
    uploadRate: 0,
    peers: 1,
  }
  await post(report, token)
  await post(
    { ...report, state: 'failed', error: { code: 'E_NO_SPACE', message: 'disk full' } },
    token,
  )
}, 180_000)

afterAll(async () => {
  await server?.stop()
  await layout?.remove()
})

describe('imageswarm images and nodes', () => {
  it('ask for the dashboard token when the server has one', async () => {
    const result = await cli(['images'])
    expect(result.code).toBe(4)
    expect(result.stderr).toMatch(/dashboard-token-file/)
  })

  it('list the published images with their nodes and last deployment', async () => {
    const result = await cli(['images', '--dashboard-token-file', tokenFile])
    expect(result.code, result.stderr).toBe(0)
    const [header, row] = result.stdout.trimEnd().split('\n')
    expect(header).toMatch(/^IMAGE\s+VERSION\s+SIZE\s+NODES\s+INSTALLED\s+FAILED\s+STALE\s+/)
    expect(row).toMatch(/^compute\s+1 \(1 kept\)\s+[\d.]+ MiB\s+2\s+1\/2\s+1\s+0\s+/)
    expect(row).toMatch(
      /#1 (running|finished): 2 nodes in \d+ s, server sent [\d.]+ copies \(1 failed\)$/,
    )
    // Columns line up: a number ends where its heading ends.
    const nodesEnd = header!.indexOf('NODES') + 'NODES'.length
    expect(row!.slice(0, nodesEnd)).toMatch(/\s2$/)

    const json = await cli(['images', '--json'], { IMAGESWARM_DASHBOARD_TOKEN_FILE: tokenFile })
    expect(json.code, json.stderr).toBe(0)
    expect(JSON.parse(json.stdout)).toMatchObject([
      {
        image: 'compute',
        versions: { newest: 1, kept: 1 },
        nodes: 2,
        deployment: { id: 1, nodes: 2, installed: 1, failed: 1 },
      },
    ])
  })

  it('show each node of an image, filtered by state', async () => {
    const all = await cli(['nodes', 'compute', '--dashboard-token-file', tokenFile])
    expect(all.code, all.stderr).toBe(0)
    const lines = all.stdout.trimEnd().split('\n')
    expect(lines[0]).toMatch(
      /^compute: 1\/2 installed, 1 failed, 0 stale; deployment 1 (running|finished)/,
    )
    expect(lines[1]).toMatch(/^NODE\s+MAC\s+ADDRESS\s+STATE\s+PROGRESS/)
    expect(lines[2]).toMatch(
      /^rack1-n01\s+52:54:00:12:34:01\s+127\.0\.0\.1\s+(seeding|done)\s+100%/,
    )
    expect(lines[3]).toMatch(
      /^rack1-n02\s+52:54:00:12:34:02\s+127\.0\.0\.1\s+failed\s+0%.*E_NO_SPACE: disk full$/,
    )

    const failed = await cli([
      'nodes',
      'compute',
      '--state',
      'failed',
      '--json',
      '--dashboard-token-file',
      tokenFile,
    ])
    expect(failed.code, failed.stderr).toBe(0)
    expect(JSON.parse(failed.stdout)).toMatchObject([
      { node: 'rack1-n02', state: 'failed', mac: '52:54:00:12:34:02', deployment: 1 },
    ])
  })

  it('show a deployment’s record, and refuse a state that is none', async () => {
    const record = await cli([
      'nodes',
      'compute',
      '--deployment',
      '1',
      '--dashboard-token-file',
      tokenFile,
    ])
    expect(record.code, record.stderr).toBe(0)
    const lines = record.stdout.trimEnd().split('\n')
    expect(lines[0]).toMatch(/^compute deployment 1 \(running, started .*\): 2 nodes in/)
    expect(lines[1]).toMatch(/^NODE\s+MAC\s+ADDRESS\s+STATE\s+SECONDS\s+FROM SERVER\s+FROM PEERS/)
    expect(lines.slice(2).map((line) => line.split(/\s+/)[0])).toEqual(['rack1-n01', 'rack1-n02'])

    const bad = await cli(['nodes', 'compute', '--state', 'broken'])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toMatch(/--state broken is not a node state/)
    const unknown = await cli(['nodes', 'nosuch', '--dashboard-token-file', tokenFile])
    expect(unknown.code).toBe(3)
  })
})
