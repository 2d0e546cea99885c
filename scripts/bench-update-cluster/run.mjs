#!/usr/bin/env node
// The update benchmark in the emulated cluster (issue 16's cluster figure): N nodes at the
// old version of a real root, brought to the new one by `imageswarm update` (the delta
// through the swarm) and, in the same run, by rsync from the one server to every node as
// SystemImager's si_updateclient does; each at N = 1 and N = --nodes.
//
//   node scripts/bench-update-cluster/run.mjs --nodes 16 --rate 25mbit \
//     --old /var/tmp/delta/v1 --new /var/tmp/delta/v3
//
// The cluster is bench-swarm's (scripts/bench-swarm/lib/netns.mjs): one network namespace
// per host, a veth into one bridge, every link capped with htb at --rate both ways.
// Preparation (not timed): the server publishes a copy of --old, one node installs it, its
// root is copied to every node; the server restarts with a copy of --new and makes the
// delta. Timed: every node updated at once, imageswarm then rsync (node roots reset from
// the prepared copy before each run). Writes docs/benchmarks/update/cluster-N<N>.{md,json}.
// Needs root. --old and --new are only read.
import { execFile } from 'node:child_process'
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { cpus } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs, promisify } from 'node:util'
import { DEFAULT_UPDATE_EXCLUDES } from '../../packages/core/dist/index.js'
import { compareTrees } from '../../packages/core/dist/testing/index.js'
import {
  createCluster,
  destroyStaleNamespaces,
  namespaceInode,
  parseRate,
  readCounters,
  whyNoNamespaces,
} from '../bench-swarm/lib/netns.mjs'
import { killAll, spawnIn, stopProcess } from '../bench-swarm/lib/processes.mjs'
import { sampleNamespaces } from '../bench-swarm/lib/procstat.mjs'
import { describeMachine } from '../bench-swarm/lib/report.mjs'
import { CLI, runInstall, runUpdate, startServer } from '../lib/deployment.mjs'

const exec = promisify(execFile)
const { values } = parseArgs({
  options: {
    nodes: { type: 'string', default: '16' },
    rate: { type: 'string', default: '25mbit' },
    old: { type: 'string' },
    new: { type: 'string' },
    'seed-time': { type: 'string', default: '30' },
    'work-dir': { type: 'string', default: '/var/tmp/imageswarm-bench-update-cluster' },
    out: {
      type: 'string',
      default: fileURLToPath(new URL('../../docs/benchmarks/update', import.meta.url)),
    },
    check: { type: 'string', default: '3' },
    // Rewrites the Markdown report from a run's JSON (no cluster, nothing timed).
    'from-json': { type: 'string' },
    help: { type: 'boolean', default: false },
  },
})
if (values.help || (!values['from-json'] && (!values.old || !values.new))) {
  process.stderr.write(
    'usage: run.mjs --old ROOT --new ROOT [--nodes 16] [--rate 25mbit] [--seed-time 30]\n' +
      '               [--check NODES] [--work-dir DIR] [--out DIR] | --from-json RUN.json\n',
  )
  process.exit(values.help ? 0 : 2)
}

const N = Number(values.nodes)
const IMAGE = 'debian'
const HTTP_PORT = 6969
const RSYNC_PORT = 873
const seedTime = Number(values['seed-time'])
const work = values['work-dir']
const dirs = {
  imagesDir: join(work, 'images'),
  tarballsDir: join(work, 'tarballs'),
  torrentsDir: join(work, 'torrents'),
  pidFile: join(work, 'serve.pid'),
}
const imageRoot = join(dirs.imagesDir, IMAGE)
const prepared = join(work, 'prepared-v1')
const nodeDir = (host) => join(work, 'nodes', host.name)
const nodeRoot = (host) => join(nodeDir(host), 'root')
/** What compareTrees leaves out: what the node owns, and what neither method touches. */
const SKIP = [
  'etc/imageswarm',
  'var/lib/imageswarm',
  'run',
  'proc',
  'sys',
  'dev',
  'tmp',
  'var/log',
  'var/tmp',
]
if (values['from-json']) {
  const saved = JSON.parse(await readFile(values['from-json'], 'utf8'))
  const path = join(values.out, `${saved.label}.md`)
  await writeFile(path, report(saved))
  process.stderr.write(`wrote ${path}\n`)
  process.exit(0)
}
const log = (line) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`)
const seconds = (ms) => Number((ms / 1000).toFixed(2))

// Everything started here, ended at teardown (by PID, never by name).
const children = new Set()
let cluster
let server
function track(child) {
  children.add(child)
  child.once('exit', () => children.delete(child))
  return child
}
function teardown() {
  for (const child of children) {
    try {
      child.kill('SIGKILL')
    } catch {}
  }
  killAll()
  cluster?.destroy()
}
const onSignal = (signal) => {
  teardown()
  process.stderr.write(`\ninterrupted by ${signal}; cluster removed\n`)
  process.exit(130)
}

async function resetRoots(hosts) {
  const t = performance.now()
  for (const host of hosts) {
    await rm(nodeDir(host), { recursive: true, force: true })
    await mkdir(join(nodeDir(host), 'staging'), { recursive: true })
    await exec('cp', ['-a', prepared, nodeRoot(host)], { maxBuffer: 1 << 24 })
  }
  log(`reset ${hosts.length} node root(s) to version 1 in ${seconds(performance.now() - t)} s`)
}

async function serve(source) {
  if (server) await stopServer()
  await rm(imageRoot, { recursive: true, force: true })
  await exec('cp', ['-a', source, imageRoot])
  const t = performance.now()
  server = await startServer({
    images: [IMAGE],
    ...dirs,
    address: cluster.server.ip,
    port: HTTP_PORT,
    netns: cluster.server.ns,
    args: ['--keep-versions', '4'],
    readyTimeoutMs: 900_000,
  })
  track(server.process)
  return { seconds: seconds(performance.now() - t), logs: server.logs }
}

async function stopServer() {
  const s = server
  server = undefined
  const timer = setTimeout(() => s.process.kill('SIGKILL'), 10_000)
  await s.stop()
  clearTimeout(timer)
}

function startSampler(hosts) {
  return sampleNamespaces([
    { name: cluster.server.ns, role: 'server', inode: namespaceInode(cluster.server.ns) },
    ...hosts.map((h) => ({ name: h.ns, role: 'node', inode: namespaceInode(h.ns) })),
  ])
}

function wire(before, after, host) {
  return {
    sent: after[host.name].sent - before[host.name].sent,
    received: after[host.name].received - before[host.name].received,
  }
}

/** Run A: `imageswarm update` on every node at once. */
async function runImageswarm(hosts) {
  await resetRoots(hosts)
  const before = readCounters(cluster)
  const sampler = startSampler(hosts)
  const t0 = performance.now()
  const nodes = hosts.map((host) => {
    const record = { name: host.name, at: {}, states: {} }
    const run = runUpdate({
      server: server.url,
      image: IMAGE,
      staging: join(nodeDir(host), 'staging'),
      target: nodeRoot(host),
      seedTime,
      netns: host.ns,
      args: ['--no-report'],
      timeoutMs: 900_000,
      onEvent: (event) => {
        const at = seconds(performance.now() - t0)
        if (event.type === 'state') record.states[event.state] ??= at
        else if (event.type !== 'download-progress' && event.type !== 'seeding')
          record.at[event.type] ??= at
      },
    })
    track(run.process)
    return { host, record, run }
  })
  const outcomes = await Promise.all(nodes.map((n) => n.run))
  const usage = sampler.stop()
  const after = readCounters(cluster)
  const records = nodes.map(({ host, record }, i) => {
    const o = outcomes[i]
    const totals = o.updated?.totals
    return {
      ...record,
      code: o.code ?? o.signal,
      updatedAt: record.at.updated ?? null,
      // The root is whole and recorded when the node starts seeding (or is done).
      rootAt: record.states.seeding ?? record.states.done ?? null,
      updateSeconds: o.updated?.seconds ?? null,
      plan: o.plan,
      downloaded: totals?.downloaded ?? null,
      fromServer: totals?.downloadedFromServer ?? null,
      fromPeers: totals ? totals.downloaded - totals.downloadedFromServer : null,
      uploaded: totals?.uploaded ?? null,
      wire: wire(before, after, host),
      failed: o.failed?.error,
      warnings: o.logs
        .filter((l) => (l.level ?? 0) >= 40 || (l.level === undefined && l.msg))
        .map((l) => ({ level: l.level, msg: l.msg, err: l.err })),
    }
  })
  return summarize('imageswarm', hosts, records, before, after, usage, (r) => r.updatedAt)
}

/** rsync's `--stats` lines as numbers. */
function parseStats(lines) {
  const stats = {}
  for (const line of lines) {
    const match = /^([A-Za-z][A-Za-z ]+?):\s+([\d,.]+)/.exec(line)
    if (match) stats[match[1]] = Number(match[2].replaceAll(',', ''))
  }
  return stats
}

/** Run B: rsync from the server's daemon to every node at once, as si_updateclient does. */
async function runRsync(hosts) {
  await resetRoots(hosts)
  const excludes = DEFAULT_UPDATE_EXCLUDES.map((pattern) => `--exclude=${pattern}`)
  const before = readCounters(cluster)
  const sampler = startSampler(hosts)
  const t0 = performance.now()
  const handles = hosts.map((host) => {
    const lines = []
    const handle = spawnIn(
      host.ns,
      [
        'rsync',
        '-aHAX',
        '--numeric-ids',
        '--delete',
        '--stats',
        ...excludes,
        `rsync://${cluster.server.ip}:${RSYNC_PORT}/${IMAGE}/`,
        `${nodeRoot(host)}/`,
      ],
      { timeoutMs: 1_800_000, onLine: (_stream, line) => lines.push(line) },
    )
    return { host, handle, lines }
  })
  const exits = await Promise.all(handles.map((h) => h.handle.exited))
  const usage = sampler.stop()
  const after = readCounters(cluster)
  const records = handles.map(({ host, lines }, i) => {
    const stats = parseStats(lines)
    return {
      name: host.name,
      code: exits[i].code ?? exits[i].signal,
      doneAt: seconds(exits[i].at - t0),
      downloaded: stats['Total bytes received'] ?? null,
      sentToServer: stats['Total bytes sent'] ?? null,
      filesTransferred: stats['Number of regular files transferred'] ?? null,
      literal: stats['Literal data'] ?? null,
      matched: stats['Matched data'] ?? null,
      wire: wire(before, after, host),
      errors: lines.filter((l) => /^rsync[: ]|error|failed/i.test(l)).slice(0, 10),
    }
  })
  return summarize('rsync', hosts, records, before, after, usage, (r) =>
    r.code === 0 ? r.doneAt : null,
  )
}

function summarize(transport, hosts, records, before, after, usage, doneAt) {
  const times = records.map(doneAt)
  const done = times.filter((t) => t !== null)
  const mean = (list) => (list.length ? list.reduce((a, b) => a + b, 0) / list.length : null)
  const serverWire = wire(before, after, cluster.server)
  const result = {
    transport,
    n: hosts.length,
    finished: done.length,
    tAll: done.length === hosts.length ? Math.max(...done) : null,
    tMean: mean(done),
    serverSent: serverWire.sent,
    nodeBytesMean: mean(records.map((r) => r.downloaded ?? 0)),
    nodeWireReceivedMean: mean(records.map((r) => r.wire.received)),
    usage: usage.perRole,
    nodes: records,
  }
  if (transport === 'imageswarm') {
    const roots = records.map((r) => r.rootAt)
    result.tAllRoot = roots.every((t) => t !== null) ? Math.max(...roots) : null
    result.tMeanRoot = mean(roots.filter((t) => t !== null))
    result.fromServer = records.reduce((s, r) => s + (r.fromServer ?? 0), 0)
    result.fromPeers = records.reduce((s, r) => s + (r.fromPeers ?? 0), 0)
  }
  log(
    `${transport} N=${result.n}: ${result.finished}/${result.n} done, T_all ${result.tAll} s` +
      (result.tAllRoot !== undefined ? ` (roots whole ${result.tAllRoot} s)` : '') +
      `, mean ${result.tMean?.toFixed(2)} s, server sent ${result.serverSent} B` +
      (result.fromPeers !== undefined
        ? `, from server ${result.fromServer} B / from peers ${result.fromPeers} B`
        : ''),
  )
  return result
}

async function check(label, hosts) {
  const chosen = [...new Set([hosts[0], hosts[Math.floor(hosts.length / 2)], hosts.at(-1)])]
  const out = []
  for (const host of chosen.slice(0, Math.max(1, Number(values.check)))) {
    const differences = await compareTrees(values.new, nodeRoot(host), { skipPaths: SKIP })
    out.push({ node: host.name, differences: differences.length, first: differences.slice(0, 8) })
    log(
      `check ${label} ${host.name}: ${differences.length} differences ${differences.slice(0, 3).join('; ')}`,
    )
  }
  return out
}

async function startRsyncDaemon() {
  const conf = join(work, 'rsyncd.conf')
  await writeFile(
    conf,
    [
      `pid file = ${join(work, 'rsyncd.pid')}`,
      `log file = ${join(work, 'rsyncd.log')}`,
      'uid = 0',
      'gid = 0',
      'use chroot = no',
      'max connections = 0',
      '',
      `[${IMAGE}]`,
      `  path = ${imageRoot}`,
      '  read only = yes',
      '  numeric ids = yes',
      '',
    ].join('\n'),
  )
  await rm(join(work, 'rsyncd.pid'), { force: true })
  const daemon = spawnIn(cluster.server.ns, [
    'rsync',
    '--daemon',
    '--no-detach',
    `--config=${conf}`,
    `--address=${cluster.server.ip}`,
    `--port=${RSYNC_PORT}`,
  ])
  for (let i = 0; i < 50; i++) {
    const lines = []
    const probe = spawnIn(
      cluster.clients[0].ns,
      ['rsync', `rsync://${cluster.server.ip}:${RSYNC_PORT}/`],
      { timeoutMs: 5000, onLine: (_s, line) => lines.push(line) },
    )
    const { code } = await probe.exited
    if (code === 0 && lines.some((l) => l.startsWith(IMAGE))) return daemon
    await new Promise((r) => setTimeout(r, 200))
  }
  await stopProcess(daemon)
  throw new Error('the rsync daemon did not answer')
}

// ---------------------------------------------------------------------------------------
const why = whyNoNamespaces()
if (why) {
  process.stderr.write(`cannot run the cluster: ${why}\n`)
  process.exit(1)
}
destroyStaleNamespaces()
const startedAt = new Date()
const tStart = performance.now()
process.on('exit', teardown)
process.once('SIGINT', onSignal)
process.once('SIGTERM', onSignal)
const results = { runs: [], checks: {} }
let failure
try {
  await rm(work, { recursive: true, force: true })
  await mkdir(dirs.imagesDir, { recursive: true })
  cluster = createCluster({ clients: N, rate: values.rate })
  const hosts = cluster.clients
  log(`cluster: 1 server + ${N} nodes at ${values.rate}`)

  // Preparation: version 1 on every node.
  const v1 = await serve(values.old)
  results.publishV1Seconds = v1.seconds
  log(`version 1 published in ${v1.seconds} s at ${server.url}`)
  const install = await runInstall({
    server: server.url,
    image: IMAGE,
    staging: join(work, 'install-staging'),
    target: prepared,
    seedTime: 0,
    netns: hosts[0].ns,
    args: ['--no-report'],
    timeoutMs: 900_000,
  })
  if (install.code !== 0)
    throw new Error(`install failed: ${JSON.stringify(install.failed ?? install.logs.slice(-5))}`)
  await rm(join(work, 'install-staging'), { recursive: true, force: true })
  log(
    `node installed at version 1: ${(await readFile(join(prepared, 'etc/imageswarm/installed.json'), 'utf8')).trim()}`,
  )

  // Version 2 and the delta 1 → 2.
  const v2 = await serve(values.new)
  const deltaLogs = v2.logs.filter((l) => l.msg === 'delta made')
  const { stdout } = await exec(process.execPath, [
    CLI,
    'versions',
    IMAGE,
    '--tarballs-dir',
    dirs.tarballsDir,
    '--json',
  ])
  const versions = JSON.parse(stdout)
  results.publishV2Seconds = v2.seconds
  results.delta = deltaLogs.map(
    ({ from, to, size, members, removals, referenceBytes, tarBytes, level, seconds: s }) => ({
      from,
      to,
      size,
      members,
      removals,
      referenceBytes,
      tarBytes,
      level,
      seconds: s,
    }),
  )
  results.versions = versions
  const d = results.delta.find((x) => x.from === 1)
  if (!d) throw new Error(`the server made no delta 1 → 2: ${JSON.stringify(versions.deltas)}`)
  log(`version 2 published in ${v2.seconds} s; delta 1 → 2: ${d.size} B made in ${d.seconds} s`)

  // Run A: imageswarm, N = 1 then N.
  for (const n of [1, N]) {
    const run = await runImageswarm(hosts.slice(0, n))
    run.checks = await check(`imageswarm N=${n}`, hosts.slice(0, n))
    results.runs.push(run)
  }
  results.serverLogWarnings = server.logs
    .filter((l) => (l.level ?? 0) >= 40)
    .map((l) => ({ level: l.level, msg: l.msg, err: l.err }))
  await stopServer()

  // Run B: rsync from the server's daemon, N = 1 then N.
  const daemon = await startRsyncDaemon()
  try {
    for (const n of [1, N]) {
      const run = await runRsync(hosts.slice(0, n))
      run.checks = await check(`rsync N=${n}`, hosts.slice(0, n))
      results.runs.push(run)
    }
  } finally {
    await stopProcess(daemon)
  }
} catch (err) {
  failure = err
  log(`bench failed: ${err.stack ?? err}`)
} finally {
  process.off('SIGINT', onSignal)
  process.off('SIGTERM', onSignal)
  if (server) await stopServer().catch(() => {})
  teardown()
  process.off('exit', teardown)
}

// ---------------------------------------------------------------------------------------
const run = {
  label: `cluster-N${N}`,
  date: startedAt.toISOString(),
  command: `node scripts/bench-update-cluster/run.mjs ${process.argv.slice(2).join(' ')}`,
  machine: describeMachine(),
  cores: cpus().length,
  settings: {
    nodes: N,
    rate: values.rate,
    rateBps: parseRate(values.rate),
    seedTime,
    old: values.old,
    new: values.new,
  },
  wallSeconds: seconds(performance.now() - tStart),
  error: failure ? String(failure.stack ?? failure) : undefined,
  ...results,
}
await mkdir(values.out, { recursive: true })
const jsonPath = join(values.out, `${run.label}.json`)
await writeFile(jsonPath, `${JSON.stringify(run, null, 2)}\n`)
const mdPath = join(values.out, `${run.label}.md`)
await writeFile(mdPath, report(run))
log(`wrote ${jsonPath} and ${mdPath}`)
process.exit(failure ? 1 : 0)

function report(r) {
  const MB = (b) => (b === null || b === undefined ? '—' : (b / 1e6).toFixed(2))
  const s = (x) => (x === null || x === undefined ? '—' : x.toFixed(1))
  const find = (t, n) => r.runs.find((x) => x.transport === t && x.n === n)
  const correctness = (x) =>
    x.checks?.length
      ? x.checks
          .map(
            (c) => `${c.node}: ${c.differences === 0 ? 'equal' : `${c.differences} differences`}`,
          )
          .join(', ')
      : '—'
  const rows = r.runs.map((x) => {
    const iw = x.transport === 'imageswarm'
    return `| ${x.transport} | ${x.n} | ${x.finished}/${x.n} | ${s(x.tAll)}${iw ? ` (${s(x.tAllRoot)})` : ''} | ${s(x.tMean)}${iw ? ` (${s(x.tMeanRoot)})` : ''} | ${MB(x.serverSent)} | ${MB(x.nodeBytesMean)} / ${MB(x.nodeWireReceivedMean)} | ${iw ? `${MB(x.fromServer)} / ${MB(x.fromPeers)}` : '—'} | ${s(x.usage.node?.cpu)} / ${s(x.usage.server?.cpu)} | ${correctness(x)} |`
  })
  const a1 = find('imageswarm', 1)
  const aN = find('imageswarm', r.settings.nodes)
  const b1 = find('rsync', 1)
  const bN = find('rsync', r.settings.nodes)
  const ratio = (a, b) => (a?.tAll && b?.tAll ? (a.tAll / b.tAll).toFixed(2) : '—')
  const d = r.delta?.find((x) => x.from === 1)
  const notes = []
  for (const x of r.runs) {
    for (const node of x.nodes) {
      if (node.code !== 0)
        notes.push(
          `${x.transport} N=${x.n} ${node.name} exited with ${node.code}${node.failed ? `: ${node.failed.message ?? JSON.stringify(node.failed)}` : ''}${node.errors?.length ? `: ${node.errors.join(' | ')}` : ''}`,
        )
    }
    if (x.transport === 'imageswarm') {
      const seen = new Map()
      for (const node of x.nodes)
        for (const w of node.warnings ?? []) seen.set(w.msg, (seen.get(w.msg) ?? 0) + 1)
      for (const [msg, count] of seen) notes.push(`imageswarm N=${x.n}: ${count}× log "${msg}"`)
      const byFile = [...new Set(x.nodes.map((node) => node.plan?.byFile ?? 0))]
      if (byFile.some((b) => b > 0))
        notes.push(
          `imageswarm N=${x.n}: every node's update-plan had byFile = ${byFile.join('/')} (of write ${x.nodes[0]?.plan?.write}): entries the delta does not carry, fetched from the server by HTTP as a tar of the image root (POST members) besides the delta: directories the update touches whose own entry is not a delta member, and local drift (none here: every root was a copy of the installed version 1).`,
        )
    }
  }
  for (const w of r.serverLogWarnings ?? [])
    notes.push(
      `server log (level ${w.level}): "${w.msg}"${w.err ? ` (err: ${JSON.stringify(w.err)})` : ''}`,
    )
  // Where an imageswarm node's time went: means over the nodes of the time between events.
  const PHASES = [
    ['start → manifest (process start, manifest)', () => 0, (n) => n.at.manifest],
    [
      '→ update-plan (file index, deltas, root compared)',
      (n) => n.at.manifest,
      (n) => n.at['update-plan'],
    ],
    ['→ delta downloaded (swarm)', (n) => n.states.downloading, (n) => n.at['download-complete']],
    [
      '→ delta opened (reference from the root, zstd)',
      (n) => n.states.verifying,
      (n) => n.states.extracting,
    ],
    [
      '→ applied (staged, checked, renamed, directories)',
      (n) => n.states.extracting,
      (n) => n.at.extracted,
    ],
    [
      '→ root compared again, version recorded',
      (n) => n.at.extracted,
      (n) => n.states.seeding ?? n.states.done,
    ],
    ['→ `updated` (left the swarm)', (n) => n.states.seeding ?? n.states.done, (n) => n.at.updated],
  ]
  const iwRuns = r.runs.filter((x) => x.transport === 'imageswarm')
  const phaseMean = (x, from, to) => {
    const list = x.nodes.map((n) => to(n) - from(n)).filter((v) => Number.isFinite(v))
    return list.length ? list.reduce((a, b) => a + b, 0) / list.length : null
  }
  const phaseRows = PHASES.map(
    ([name, from, to]) =>
      `| ${name} | ${iwRuns.map((x) => s(phaseMean(x, from, to))).join(' | ')} |`,
  )
  const swarmLines = iwRuns.map((x) => {
    const starts = x.nodes.map((n) => n.states.downloading).filter(Number.isFinite)
    const ends = x.nodes.map((n) => n.at['download-complete']).filter(Number.isFinite)
    const uploaded = x.nodes.reduce((sum, n) => sum + (n.uploaded ?? 0), 0)
    const tMin = d ? (d.size * 8) / r.settings.rateBps : null
    return `- N = ${x.n}: the delta moved between ${s(Math.min(...starts))} s (first node asks) and ${s(Math.max(...ends))} s (last node holds it), ${s(Math.max(...ends) - Math.min(...starts))} s (one copy over one link: ${s(tMin)} s); the server sent ${MB(x.fromServer)} MB of it (${(x.fromServer / d.size).toFixed(2)} copies), the nodes ${MB(x.fromPeers)} MB to each other, and uploaded ${MB(uploaded)} MB in all: ${MB(uploaded - x.fromPeers)} MB of piece data sent by nodes was not counted by any receiver (duplicates; the delta is ${Math.ceil(d.size / 1048576)} pieces of 1 MiB).`
  })
  return [
    `# imageswarm update against rsync in the emulated cluster (N = ${r.settings.nodes})`,
    '',
    `Date: ${r.date.slice(0, 16).replace('T', ' ')} UTC (whole run ${Math.round(r.wallSeconds)} s). Command:`,
    '',
    '```sh',
    r.command,
    '```',
    '',
    `Machine: ${r.machine.cpu}, ${r.machine.memory}, Linux ${r.machine.kernel}, Node ${r.machine.node}; every emulated host (a network namespace, veth into one bridge; scripts/bench-swarm/lib/netns.mjs) capped at ${r.settings.rate} both ways with htb. All hosts share this machine's ${r.cores} cores, and other work may have run beside it.`,
    '',
    `Update: ${r.settings.old} → ${r.settings.new} (issue 16's U2). The server published the old root as version 1, one node installed it and its root was copied to every node; the server then published the new root as version 2 and made the delta 1 → 2: **${MB(d?.size)} MB** (${d?.members} members, ${d?.removals} removals, zstd level ${d?.level}, reference ${MB(d?.referenceBytes)} MB) in **${d?.seconds} s** (publishing version 2 with its archive, index and delta took ${r.publishV2Seconds} s in all).`,
    '',
    `- **imageswarm**: \`imageswarm update --seed-time ${r.settings.seedTime} --no-report\` on every node at once; T = until the node's \`updated\` event (emitted after it has left the swarm: it lingers while the tracker reports leechers), in brackets until its root was whole and its version recorded (its \`seeding\` state).`,
    `- **rsync** (si_updateclient's method): an rsync daemon on the server host serving the new root, \`rsync -aHAX --numeric-ids --delete --stats\` with imageswarm's ${DEFAULT_UPDATE_EXCLUDES.length} default update excludes (SystemImager's list and more) from every node at once; T = until rsync exited.`,
    '',
    'T_all = the last node; mean = mean per node; server sent = bytes the server host put on its link (bridge counter, all protocols, headers included); per node = bytes the node received (imageswarm: delta bytes from the `updated` totals; rsync: `Total bytes received`) / on the wire (bridge counter); CPU = CPU seconds of all node processes / of the server host; correctness = compareTrees(new root, node root) on the nodes checked, skipping ' +
      SKIP.join(', ') +
      '.',
    '',
    '| transport | N | done | T_all s | mean s | server sent MB | per node MB (payload / wire) | from server / from peers MB | CPU nodes / server s | correctness |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
    ...rows,
    '',
    `imageswarm / rsync, T_all: N = 1: ${ratio(a1, b1)}; N = ${r.settings.nodes}: **${ratio(aN, bN)}**` +
      (aN?.tAllRoot && bN?.tAll ? ` (roots whole: ${(aN.tAllRoot / bN.tAll).toFixed(2)})` : '') +
      `. Server bytes at N = ${r.settings.nodes}: imageswarm ${MB(aN?.serverSent)} MB, rsync ${MB(bN?.serverSent)} MB.`,
    '',
    ...(aN && bN
      ? [
          `Reading: the ${aN.n} imageswarm nodes used ${s(aN.usage.node?.cpu)} CPU seconds in all (rsync's: ${s(bN.usage.node?.cpu)}), at least ${s(aN.usage.node?.cpu / r.cores)} s of wall time on this machine's ${r.cores} cores before any waiting on the network, so imageswarm's T_all here is bounded by CPU, not by the links; rsync's is bounded by the server's link: ${MB(bN.serverSent)} MB at ${r.settings.rate} take ${s((bN.serverSent * 8) / r.settings.rateBps)} s. On hardware where each node has its own CPU the imageswarm figure would be nearer its N = 1 time plus the swarm's download time.`,
          '',
        ]
      : []),
    `Where an imageswarm node's time went (mean seconds per node; the nodes of N = ${r.settings.nodes} share ${r.cores} cores, so CPU-bound phases stretch):`,
    '',
    `| phase | ${iwRuns.map((x) => `N = ${x.n}`).join(' | ')} |`,
    `| --- | ${iwRuns.map(() => '---:').join(' | ')} |`,
    ...phaseRows,
    '',
    'The swarm part:',
    '',
    ...swarmLines,
    '',
    ...(r.error ? ['**The run failed:**', '', '```', r.error, '```', ''] : []),
    ...(notes.length ? ['Noted during the run:', '', ...notes.map((n) => `- ${n}`), ''] : []),
    `Raw figures: [${r.label}.json](${r.label}.json).`,
    '',
  ].join('\n')
}
