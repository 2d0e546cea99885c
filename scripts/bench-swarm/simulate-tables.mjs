#!/usr/bin/env node
// The simulator's tables: (a) validation against the emulated testbed (25 Mbit/s,
// 128 MiB, N = 4–32) and (b) deployments at scale (100 to 10,000 nodes, 1 and 4 GiB, 1 and
// 10 Gbit/s; flat, and in racks of 40 behind 4:1 uplinks with and without rack-aware
// handouts). Writes docs/benchmarks/swarm/simulation.{md,json} and SVG plots; results of
// earlier runs in simulation.json are kept unless run again, so the table can be filled a
// few runs at a time. Runs one simulation at a time, each in its own process.
//
//   node scripts/bench-swarm/simulate-tables.mjs [--testbed FILE] [--quick] [--budget 600]
//     [--only validation|scale|TEXT,...] [--seeds 1,2,3] [--out DIR] [--fresh]
import { execFile } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { chart, describeMachine } from './lib/report.mjs'

const SIMULATE = fileURLToPath(new URL('./simulate.mjs', import.meta.url))
const OUT = fileURLToPath(new URL('../../docs/benchmarks/swarm', import.meta.url))
const MiB = 1024 * 1024
/** CPU seconds per simulated block (128 KiB) before any run measured it: 1,000 nodes,
 * 1 GiB, 1 Gbit/s took about this on the 2-core machine of the first runs. */
const DEFAULT_SECONDS_PER_BLOCK = 30e-6

const LAYOUTS = [
  { name: 'flat', args: [] },
  { name: 'racks, rack-aware', args: ['--rack-size', '40', '--oversubscription', '4'] },
  {
    name: 'racks, uniform',
    args: ['--rack-size', '40', '--oversubscription', '4', '--no-rack-aware'],
  },
]
const COLORS = { flat: '#d62728', 'racks, rack-aware': '#9467bd', 'racks, uniform': '#7f7f7f' }

const { values } = parseArgs({
  options: {
    testbed: { type: 'string', default: join(OUT, '25mbit-128MiB.json') },
    quick: { type: 'boolean', default: false },
    budget: { type: 'string', default: '600' },
    only: { type: 'string' },
    seeds: { type: 'string', default: '1,2,3' },
    out: { type: 'string', default: OUT },
    fresh: { type: 'boolean', default: false },
  },
})

const log = (line) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`)
const f2 = (x) => (x === null || x === undefined ? '—' : x.toFixed(2))
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length

function runSimulation(args) {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ['--max-old-space-size=16384', SIMULATE, ...args, '--json'],
      { maxBuffer: 256 * MiB },
      (err, stdout, stderr) => {
        // Exit code 1 with a result: the swarm did not finish (reported as such).
        if (stdout.trim().startsWith('{')) resolve(JSON.parse(stdout))
        else reject(new Error(`simulate ${args.join(' ')} failed: ${stderr || err?.message}`))
      },
    )
  })
}

/** Every run of both tables, by label. */
function plannedRuns(seeds) {
  const runs = []
  for (const n of [4, 8, 16, 32]) {
    for (const seed of seeds) {
      runs.push({
        table: 'validation',
        label: `validation N=${n} seed=${seed}`,
        n,
        seed,
        args: ['--nodes', String(n), '--size', '128MiB', '--rate', '25mbit', '--seed', seed],
      })
    }
  }
  for (const n of [100, 1000, 10000]) {
    for (const size of ['1GiB', '4GiB']) {
      for (const rate of ['1gbit', '10gbit']) {
        for (const layout of LAYOUTS) {
          runs.push({
            table: 'scale',
            label: `N=${n} ${size} ${rate} ${layout.name}`,
            n,
            size,
            rate,
            layout: layout.name,
            args: ['--nodes', String(n), '--size', size, '--rate', rate, ...layout.args],
          })
        }
      }
    }
  }
  return runs
}

function selected(run) {
  if (!values.only) return true
  return values.only.split(',').some((part) => part === run.table || run.label.includes(part))
}

function blocksOf(run) {
  const bytes =
    run.table === 'validation' ? 128 * MiB : run.size === '4GiB' ? 4096 * MiB : 1024 * MiB
  return (run.n * bytes) / (128 * 1024)
}

// ---- report ---------------------------------------------------------------------------

function validationRows(results, testbed) {
  return [4, 8, 16, 32].map((n) => {
    const sims = results.filter((r) => r.table === 'validation' && r.n === n).map((r) => r.result)
    const real = testbed.results.find((r) => r.transport === 'imageswarm' && r.n === n)
    const ratios = sims.map((r) => r.tAllOverTmin)
    return {
      n,
      runs: sims.length,
      simTall: sims.length ? mean(sims.map((r) => r.tAll)) : null,
      simRatio: sims.length ? mean(ratios) : null,
      simMin: sims.length ? Math.min(...ratios) : null,
      simMax: sims.length ? Math.max(...ratios) : null,
      simCopies: sims.length ? mean(sims.map((r) => r.serverCopies)) : null,
      testbedTall: real?.tAllVerified ?? null,
      testbedRatio: real ? real.tAllVerified / real.tMin : null,
      testbedCopies: real?.serverCopies ?? null,
    }
  })
}

function markdown(results, testbed, machine) {
  const lines = [
    '# Swarm simulator: validation and deployments at scale',
    '',
    `Written by \`node scripts/bench-swarm/simulate-tables.mjs\` (${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC) on ${machine.cpu}, ${machine.memory}, Node ${machine.node}; one simulation at a time. Each row: \`node scripts/bench-swarm/simulate.mjs\` with the settings shown (defaults otherwise, as the engine has them since af84ee8: 1 MiB pieces, 80 connections of which a node dials at most 20, 20 upload slots, numwant 80, announce every 20 s, 1 ms latency, all nodes starting at once, server upload = node rate and 80 connections, seed 1). Racks: 40 nodes each (N = 100: 40, 40, 20).`,
    '',
    'How it works: every node and the image server run the engine’s own policy modules (packages/swarm: `PiecePicker` with `PieceAvailability`, `Choker`, and on the server `FirstCopySeeding`), with a virtual clock and a seeded random number generator injected, around a small copy of `ArchiveSwarm`’s coordination (interest, the fill loop with `Peer.queueBytes`, haves, choke dropping queued requests, connection limits, the server dialled by every client); peers come from the tracker’s own `handOutPeers`. Data moves as flows (a connection with requests queued at an unchoking uploader) that share every link they cross max-min fairly: node uploads and downloads, and with racks the top-of-rack uplink (40 × rate / 4 each way). Rates are recomputed every step (as long as one piece takes at the node rate, at most 50 ms); within a step blocks and messages are handled at their exact times, messages one latency after they were sent.',
    '',
    'T_min is the Kumar–Ross bound for the configured links, max(F/u_s, F/d, N·F/(u_s + N·u)); with oversubscribed racks it ignores the uplinks, so T_all / T_min there includes what the uplinks cost. Cross-rack copies: bytes that left their rack or came from the server (which sits on the core switch), in copies of the image.',
    '',
  ]
  const rows = validationRows(results, testbed)
  if (rows.some((r) => r.runs > 0)) {
    lines.push(
      '## Validation against the emulated testbed (25 Mbit/s, 128 MiB)',
      '',
      `Testbed: \`${values.testbed.replace(/.*docs\//, 'docs/')}\` (${testbed.date}), imageswarm rows. Simulated with the engine's settings (as the testbed's imageswarm rows ran): mean over seeds ${values.seeds} (range in brackets). The testbed counts the server's bytes on the wire (TCP/IP headers, ~4 % at N = 1) and its nodes share two CPU cores; the simulator moves payload only, on idle CPUs.`,
      '',
      '| N | testbed T_all s (× T_min) | simulated T_all s (× T_min) | sim / testbed (T_all / T_min) | testbed server copies | simulated server copies | sim / testbed (copies) |',
      '|---|---|---|---|---|---|---|',
    )
    for (const r of rows) {
      if (r.runs === 0) continue
      lines.push(
        `| ${r.n} | ${r.testbedTall?.toFixed(1) ?? '—'} (${f2(r.testbedRatio)}) | ${r.simTall.toFixed(1)} (${f2(r.simRatio)}; ${f2(r.simMin)}–${f2(r.simMax)}) | ${r.testbedRatio ? f2(r.simRatio / r.testbedRatio) : '—'} | ${f2(r.testbedCopies)} | ${f2(r.simCopies)} | ${r.testbedCopies ? f2(r.simCopies / r.testbedCopies) : '—'} |`,
      )
    }
    lines.push('')
  }
  const scale = results.filter((r) => r.table === 'scale')
  if (scale.length > 0) {
    lines.push(
      '## At scale',
      '',
      'Wall and CPU: seconds this machine took to simulate the run (one process, one core; the machine was shared with other work, so wall time can exceed CPU time).',
      '',
      '| N | size | rate | layout | T_min s | T_all s | T_all / T_min | server copies | cross-rack copies | wall s | CPU s |',
      '|---|---|---|---|---|---|---|---|---|---|---|',
    )
    const order = plannedRuns([]).map((r) => r.label)
    scale.sort((a, b) => order.indexOf(a.label) - order.indexOf(b.label))
    for (const run of scale) {
      const r = run.result
      lines.push(
        `| ${run.n} | ${run.size} | ${run.rate} | ${run.layout} | ${r.tMin.toFixed(2)} | ${r.tAll === null ? `unfinished (${r.finished}/${r.nodes})` : r.tAll.toFixed(2)} | ${f2(r.tAllOverTmin)} | ${f2(r.serverCopies)} | ${r.racks ? r.crossRackCopies.toFixed(1) : '—'} | ${r.wallSeconds.toFixed(0)} | ${r.cpuSeconds.toFixed(0)} |`,
      )
    }
    lines.push('')
    for (const [size, rate] of combos(scale)) {
      lines.push(`![T_all / T_min against N, ${size}, ${rate}](${timePlotName(size, rate)})`, '')
    }
    if (scale.some((r) => r.n === 1000)) {
      lines.push('![finish times at N = 1,000](simulation-completion.svg)', '')
    }
  }
  return `${lines.join('\n')}\n`
}

function combos(scale) {
  const seen = new Map()
  for (const r of scale) seen.set(`${r.size} ${r.rate}`, [r.size, r.rate])
  return [...seen.values()]
}

function timePlotName(size, rate) {
  return `simulation-time-${size}-${rate}.svg`
}

function plotTimes(scale, size, rate) {
  const runs = scale.filter((r) => r.size === size && r.rate === rate && r.result.tAll !== null)
  const series = LAYOUTS.map((layout) => ({
    name: layout.name,
    color: COLORS[layout.name],
    markers: true,
    points: runs
      .filter((r) => r.layout === layout.name)
      .sort((a, b) => a.n - b.n)
      .map((r) => [Math.log10(r.n), r.result.tAllOverTmin]),
  }))
  series.push({
    name: 'T_min',
    color: '#000',
    points: [
      [2, 1],
      [4, 1],
    ],
  })
  return chart({
    title: `Simulated T_all / T_min against N (${size}, ${rate})`,
    xLabel: 'nodes N',
    yLabel: 'time until every node holds the image / T_min',
    series,
    xTicks: [2, 3, 4],
    xFormat: (x) => String(10 ** x),
  })
}

/** Per-node finish times at N = 1,000: the first size and rate that has them. */
function plotCompletion(scale) {
  const at1000 = scale.filter((r) => r.n === 1000 && r.result.finishTimes)
  const [size, rate] = combos(at1000)[0] ?? []
  const series = LAYOUTS.map((layout) => {
    const run = at1000.find((r) => r.layout === layout.name && r.size === size && r.rate === rate)
    const times = (run?.result.finishTimes ?? []).filter((t) => t !== null).sort((a, b) => a - b)
    const tMin = run?.result.tMin ?? 1
    const points = times.length ? [[0, 0]] : []
    times.forEach((t, i) => {
      points.push([t / tMin, i / times.length], [t / tMin, (i + 1) / times.length])
    })
    return { name: layout.name, color: COLORS[layout.name], points }
  })
  const maxX = Math.max(1, ...series.flatMap((s) => s.points.map((p) => p[0])))
  return chart({
    title: `Nodes holding the image, N = 1,000 (${size}, ${rate})`,
    xLabel: 'time / T_min',
    yLabel: 'fraction of nodes',
    series,
    xTicks: Array.from({ length: 6 }, (_, i) => Number(((maxX * i) / 5).toFixed(1))),
    yMax: 1,
  })
}

async function writeOutputs(results, testbed, machine) {
  const out = values.out
  const json = {
    date: new Date().toISOString(),
    machine,
    testbed: values.testbed,
    validation: validationRows(results, testbed),
    // Per-node finish times only up to 1,000 nodes (the curve's), to keep the file small.
    results: results.map((r) =>
      r.n > 1000 ? { ...r, result: { ...r.result, finishTimes: undefined } } : r,
    ),
  }
  await writeFile(join(out, 'simulation.json'), `${JSON.stringify(json, null, 1)}\n`)
  await writeFile(join(out, 'simulation.md'), markdown(results, testbed, machine))
  const scale = results.filter((r) => r.table === 'scale')
  for (const [size, rate] of combos(scale)) {
    await writeFile(join(out, timePlotName(size, rate)), plotTimes(scale, size, rate))
  }
  if (scale.some((r) => r.n === 1000)) {
    await writeFile(join(out, 'simulation-completion.svg'), plotCompletion(scale))
  }
}

async function main() {
  const testbed = JSON.parse(await readFile(values.testbed, 'utf8'))
  const machine = describeMachine()
  const previous = values.fresh
    ? []
    : await readFile(join(values.out, 'simulation.json'), 'utf8')
        .then((text) => JSON.parse(text).results ?? [])
        .catch(() => [])
  const results = new Map(previous.map((r) => [r.label, r]))
  const budget = Number(values.budget)
  let secondsPerBlock = DEFAULT_SECONDS_PER_BLOCK
  for (const r of previous) {
    if (r.n >= 1000) secondsPerBlock = Math.max(secondsPerBlock, r.result.cpuSeconds / blocksOf(r))
  }
  for (const run of plannedRuns(values.seeds.split(','))) {
    if (!selected(run)) continue
    const estimate = blocksOf(run) * secondsPerBlock
    if (values.quick && (estimate > budget || (run.n >= 10000 && run.size === '4GiB'))) {
      log(`${run.label}: skipped (--quick; about ${estimate.toFixed(0)} s)`)
      continue
    }
    log(`${run.label}: running (about ${estimate.toFixed(0)} s)`)
    const result = await runSimulation(run.args)
    if (run.n >= 1000) {
      secondsPerBlock = Math.max(secondsPerBlock, result.cpuSeconds / blocksOf(run))
    }
    results.set(run.label, { ...run, result })
    log(
      `${run.label}: ${result.tAll === null ? 'unfinished' : `${result.tAllOverTmin.toFixed(2)} × T_min`}, server ${result.serverCopies.toFixed(2)} copies, cross-rack ${result.crossRackCopies.toFixed(1)}, ${result.wallSeconds.toFixed(0)} s wall`,
    )
    await writeOutputs([...results.values()], testbed, machine)
  }
  await writeOutputs([...results.values()], testbed, machine)
  log(`wrote ${join(values.out, 'simulation.md')}`)
}

await main()
