#!/usr/bin/env node
// The multi-server benchmark (issue 21): on one emulated cluster, in one session, deploys
// one image to N hosts from a single server (the reference), from a primary and its mirror
// (the baseline), with the primary killed part way, and with the primary's tracker lost
// part way; writes the raw figures (JSON) and a Markdown table of ratios to the baseline
// measured in the same run.
//
//   node scripts/bench-swarm/multi-server.mjs --clients 16 --rate 25mbit --size 128MiB \
//     --runs 1 --out docs/benchmarks/swarm
//
// Needs root (network namespaces), iproute2 and zstd, like run.mjs; see docs/benchmarks/.
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { makeImageRoot, parseSize } from './lib/bench.mjs'
import { runMultiServer, startPrimary, stopServer } from './lib/multi-server.mjs'
import { writeMultiServerReport } from './lib/multi-server-report.mjs'
import { createCluster, destroyStaleNamespaces, parseRate, whyNoNamespaces } from './lib/netns.mjs'
import { killAll } from './lib/processes.mjs'

/** The scenarios, in the order they run; the last two only on request. */
export const SCENARIOS = {
  single: { mirror: false, fail: 'none', title: 'one server (reference)' },
  baseline: { mirror: true, fail: 'none', title: 'two servers, no failure' },
  kill: { mirror: true, fail: 'server', title: 'A killed (SIGKILL)', target: 1.25 },
  tracker: { mirror: true, fail: 'tracker', title: "A's HTTP port lost", target: 1.1 },
  'single-kill': { mirror: false, fail: 'server', title: 'one server, killed' },
  'single-tracker': { mirror: false, fail: 'tracker', title: 'one server, HTTP port lost' },
}

const { values } = parseArgs({
  options: {
    clients: { type: 'string', default: '16' },
    rate: { type: 'string', default: '25mbit' },
    size: { type: 'string', default: '128MiB' },
    runs: { type: 'string', default: '1' },
    'fail-at': { type: 'string', default: '0.5' },
    scenarios: { type: 'string', default: 'single,baseline,kill,tracker' },
    'work-dir': { type: 'string', default: '/var/tmp/imageswarm-bench-multi' },
    out: {
      type: 'string',
      default: fileURLToPath(new URL('../../docs/benchmarks/swarm', import.meta.url)),
    },
    label: { type: 'string', default: '' },
    timeout: { type: 'string' },
    verbose: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
})
if (values.help) {
  process.stdout.write(
    'usage: multi-server.mjs [--clients 16] [--rate 25mbit] [--size 128MiB] [--runs 1]\n' +
      '                        [--fail-at 0.5] [--scenarios single,baseline,kill,tracker]\n' +
      '                        [--label NAME] [--out DIR] [--work-dir DIR] [--timeout S] [--verbose]\n' +
      `scenarios: ${Object.keys(SCENARIOS).join(', ')}\n`,
  )
  process.exit(0)
}

const n = Number(values.clients)
const runs = Number(values.runs)
const failAt = Number(values['fail-at'])
const size = parseSize(values.size)
const rateBps = parseRate(values.rate)
const scenarios = values.scenarios.split(',')
for (const s of scenarios) {
  if (!SCENARIOS[s]) throw new Error(`unknown scenario ${s}: one of ${Object.keys(SCENARIOS)}`)
}
const label = values.label || `multi-server-${values.rate}-${values.size}`
const log = (line) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`)

const why = whyNoNamespaces()
if (why) {
  process.stderr.write(`cannot run the multi-server bench: ${why}\n`)
  process.exit(1)
}
destroyStaleNamespaces()
const workDir = values['work-dir']
const name = `bench-${size}`
const dirs = {
  imagesDir: join(workDir, 'images'),
  tarballsDir: join(workDir, 'tarballs'),
  torrentsDir: join(workDir, 'torrents'),
}
await makeImageRoot(join(dirs.imagesDir, name), size)
const cluster = createCluster({ clients: n, rate: values.rate, servers: 2 })
const teardown = () => {
  killAll()
  cluster.destroy()
}
process.on('exit', teardown)
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    teardown()
    process.stderr.write(`\ninterrupted by ${signal}; cluster removed\n`)
    process.exit(130)
  })
}

const started = new Date()
const results = []
try {
  log(`cluster: 2 servers + ${n} clients at ${values.rate}; publishing ${name}`)
  const image = { name, dirs }
  await stopServer(
    await startPrimary({ host: cluster.server, image, workDir: join(workDir, 'runs', 'publish') }),
  )
  const manifest = JSON.parse(
    await readFile(join(dirs.torrentsDir, `image-${name}.manifest.json`), 'utf8'),
  )
  image.archiveBytes = (await stat(join(dirs.tarballsDir, manifest.archiveFile))).size
  const tMin = (image.archiveBytes * 8) / rateBps
  const timeoutMs = (values.timeout ? Number(values.timeout) : Math.max(120, 30 * tMin)) * 1000
  log(
    `archive ${image.archiveBytes} bytes, T_min ${tMin.toFixed(1)} s, timeout ${timeoutMs / 1000} s`,
  )

  for (let run = 1; run <= runs; run++) {
    for (const scenario of scenarios) {
      const spec = SCENARIOS[scenario]
      const runDir = join(workDir, 'runs', `${scenario}-${run}`)
      await rm(runDir, { recursive: true, force: true })
      await mkdir(runDir, { recursive: true })
      log(`run ${run}: ${scenario} (${spec.title})`)
      const r = await runMultiServer({
        cluster,
        image,
        workDir: runDir,
        mirror: spec.mirror,
        fail: spec.fail,
        failAt,
        timeoutMs,
        log,
        ...(values.verbose
          ? { onClientLog: (host, line) => process.stderr.write(`  [${host.name}] ${line}\n`) }
          : {}),
      })
      const result = {
        scenario,
        run,
        n,
        rate: values.rate,
        archiveBytes: image.archiveBytes,
        tMin,
        fail: r.fail,
        failAt: r.failAt,
        faultAt: r.faultAt,
        progressAtFault: r.progressAtFault,
        tAllVerified: r.tAllVerified,
        tAllExtracted: r.tAllExtracted,
        finished: r.finished,
        serverCopies: r.serverCopies,
        servers: r.servers,
        mirror: r.mirror,
        clientsSentBytes: r.clients.reduce((sum, c) => sum + r.sent[c.name], 0),
        clients: r.clients.map(({ stderr, dir, target, ...c }) => ({
          ...c,
          sentBytes: r.sent[c.name],
          // The end of a failed client's log says why; a finished one's is noise.
          ...(c.code === 0 ? {} : { stderrTail: stderr.slice(-5) }),
        })),
      }
      results.push(result)
      log(
        `${scenario}: ${r.finished}/${n} finished, all verified ${r.tAllVerified?.toFixed(1) ?? '—'} s, servers sent ${r.serverCopies?.toFixed(2)} copies${r.faultAt === null ? '' : `, fault at ${r.faultAt.toFixed(1)} s`}`,
      )
      if (r.finished === n) await rm(runDir, { recursive: true, force: true })
    }
  }
} catch (err) {
  process.stderr.write(`bench failed: ${err.stack ?? err}\n`)
  process.exitCode = 1
} finally {
  process.off('exit', teardown)
  teardown()
}

if (results.length > 0) {
  const report = {
    label,
    date: started.toISOString(),
    command: `node scripts/bench-swarm/multi-server.mjs ${process.argv.slice(2).join(' ')}`.trim(),
    settings: { clients: n, rate: values.rate, size: values.size, runs, failAt, scenarios },
    scenarios: Object.fromEntries(scenarios.map((s) => [s, SCENARIOS[s]])),
    results,
  }
  await mkdir(values.out, { recursive: true })
  const jsonPath = join(values.out, `${label}.json`)
  await writeFile(jsonPath, `${JSON.stringify(report, null, 2)}\n`)
  const mdPath = await writeMultiServerReport(report, values.out)
  log(`wrote ${jsonPath} and ${mdPath}`)
}
