#!/usr/bin/env node
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
// Load benchmark of the tracker: many simulated peers announcing to one real server.
//
//   node scripts/bench-tracker.mjs [--peers N] [--rounds R] [--concurrency C] [--time-limit S] [--json]
//
// Starts `imageswarm serve` on 127.0.0.1 with a tiny image (the tracker, seeder and
// dashboard in their own process, as in production), then N peers (default 5,000) each
// announce `started` and R - 1 updates (default R = 3: 15,000 announces), at most C
// (default 64) in flight over keep-alive connections. Each peer has its own port and
// peer id, asks for 50 peers in compact form, and reports progress in `downloaded` and
// `left` as a client would. Reports announces per second and latency percentiles, then
// what the dashboard holds: nodes in the JSON API and the time to list them all.
// Bounded: at most 50,000 peers and --time-limit seconds (default 120) of announcing.
// Build first: pnpm build
import { Agent, request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { startServer } from './lib/deployment.mjs'

const args = process.argv.slice(2)
const option = (name, fallback) => {
  const at = args.indexOf(name)
  return at === -1 ? fallback : args[at + 1]
}
const peers = Math.min(50_000, Number(option('--peers', '5000')))
const rounds = Math.max(1, Number(option('--rounds', '3')))
const concurrency = Math.max(1, Number(option('--concurrency', '64')))
const timeLimitMs = Number(option('--time-limit', '120')) * 1000
const json = args.includes('--json')

const SIZE = 4 * 1024 * 1024 * 1024

function percentile(sorted, p) {
  if (sorted.length === 0) return Number.NaN
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]
}

function binary(hex) {
  return hex.replace(/../g, (byte) => `%${byte.toUpperCase()}`)
}

function peerId(n) {
  return Buffer.from(`-IS01C0-${String(n).padStart(12, '0')}`, 'latin1').toString('hex')
}

function get(agent, url) {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent }, (res) => {
      const chunks = []
      res.on('data', (chunk) => chunks.push(chunk))
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks) }))
    })
    req.on('error', reject)
    req.end()
  })
}

const dir = await mkdtemp(join(tmpdir(), 'imageswarm-bench-tracker-'))
let server
try {
  const imagesDir = join(dir, 'images')
  await mkdir(join(imagesDir, 'bench', 'etc'), { recursive: true })
  await writeFile(join(imagesDir, 'bench', 'etc', 'hostname'), 'bench\n')
  server = await startServer({
    images: ['bench'],
    imagesDir,
    tarballsDir: join(dir, 'tarballs'),
    torrentsDir: join(dir, 'torrents'),
    pidFile: join(dir, 'serve.pid'),
  })
  const manifest = JSON.parse(
    (await get(undefined, `${server.url}/images/bench/manifest.json`)).body.toString(),
  )
  const infoHash = binary(manifest.infoHash)
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency })

  // Every announce of the run, in order: round by round, each peer once per round.
  const total = peers * rounds
  const latencies = new Float64Array(total)
  let next = 0
  let done = 0
  let failures = 0
  const started = performance.now()
  const deadline = started + timeLimitMs

  async function worker() {
    while (next < total && performance.now() < deadline) {
      const index = next++
      const round = Math.floor(index / peers)
      const n = index % peers
      const downloaded = Math.floor((SIZE * round) / rounds)
      const event = round === 0 ? '&event=started' : ''
      const url =
        `${server.url}/announce?info_hash=${infoHash}&peer_id=${binary(peerId(n))}` +
        `&port=${10_000 + (n % 50_000)}&uploaded=0&downloaded=${downloaded}` +
        `&left=${SIZE - downloaded}&compact=1&numwant=50${event}`
      const t0 = performance.now()
      try {
        const { status, body } = await get(agent, url)
        if (status !== 200 || body.includes('failure reason')) failures += 1
      } catch {
        failures += 1
      }
      latencies[done++] = performance.now() - t0
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  const seconds = (performance.now() - started) / 1000
  const sorted = Array.from(latencies.subarray(0, done)).sort((a, b) => a - b)

  // What the dashboard made of it: every peer is a node, and listing them stays quick.
  const t0 = performance.now()
  const nodes = JSON.parse(
    (await get(agent, `${server.url}/api/images/bench/nodes`)).body.toString(),
  ).nodes
  const listMs = performance.now() - t0
  const metricsBytes = (await get(agent, `${server.url}/metrics`)).body.length
  agent.destroy()

  const result = {
    peers,
    rounds,
    concurrency,
    announces: done,
    failures,
    seconds: Number(seconds.toFixed(2)),
    announcesPerSecond: Math.round(done / seconds),
    latencyMs: {
      p50: Number(percentile(sorted, 50).toFixed(2)),
      p90: Number(percentile(sorted, 90).toFixed(2)),
      p99: Number(percentile(sorted, 99).toFixed(2)),
      max: Number(sorted.at(-1)?.toFixed(2) ?? Number.NaN),
    },
    dashboard: { nodes: nodes.length, listNodesMs: Math.round(listMs), metricsBytes },
    truncated: done < total,
  }
  if (json) {
    console.log(JSON.stringify(result))
  } else {
    console.log(
      `tracker: ${result.announces} announces from ${peers} peers (${rounds} rounds, ${concurrency} in flight) in ${result.seconds} s${result.truncated ? ' (time limit reached)' : ''}`,
    )
    console.log(
      `  ${result.announcesPerSecond} announces/s; latency p50 ${result.latencyMs.p50} ms, p90 ${result.latencyMs.p90} ms, p99 ${result.latencyMs.p99} ms, max ${result.latencyMs.max} ms; ${failures} failed`,
    )
    console.log(
      `  dashboard: ${nodes.length} nodes, listed in ${result.dashboard.listNodesMs} ms; /metrics ${metricsBytes} bytes`,
    )
  }
  if (failures > 0) process.exitCode = 1
} finally {
  await server?.stop()
  await rm(dir, { recursive: true, force: true })
}
