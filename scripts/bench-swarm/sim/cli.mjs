// A swarm simulator in virtual time: N nodes and the image server deploy one archive,
// every decision taken by the engine's own policy modules (packages/swarm: PiecePicker,
// Choker, FirstCopySeeding) and the tracker's peer handout (packages/tracker), over a
// flow-level link model with racks and oversubscribed uplinks. The command behind
// scripts/bench-swarm/simulate.mjs.
//
//   node scripts/bench-swarm/simulate.mjs --nodes 1000 --size 1GiB --rate 1gbit \
//     --rack-size 40 --oversubscription 4 [--no-rack-aware] [--json]
//
// Needs packages/swarm and packages/tracker built (pnpm build).
import { parseArgs } from 'node:util'
import { describe, summarize } from './report.mjs'
import { Simulation } from './run.mjs'
import { resolveSimSettings } from './settings.mjs'

/** Runs one simulation to the end; returns its figures (see sim/report.mjs). */
export function simulate(partial, { onProgress } = {}) {
  const settings = resolveSimSettings(partial)
  const cpu = process.cpuUsage()
  const started = performance.now()
  const sim = new Simulation(settings)
  sim.onProgress = onProgress
  sim.run()
  const wallSeconds = (performance.now() - started) / 1000
  const used = process.cpuUsage(cpu)
  return summarize(sim, { wallSeconds, cpuSeconds: (used.user + used.system) / 1e6 })
}

const OPTIONS = {
  nodes: { type: 'string' },
  size: { type: 'string' },
  rate: { type: 'string' },
  racks: { type: 'string' },
  'rack-size': { type: 'string' },
  oversubscription: { type: 'string' },
  latency: { type: 'string' },
  step: { type: 'string' },
  seed: { type: 'string' },
  'server-rate': { type: 'string' },
  'piece-length': { type: 'string' },
  'max-connections': { type: 'string' },
  'server-max-connections': { type: 'string' },
  'upload-slots': { type: 'string' },
  numwant: { type: 'string' },
  'announce-interval': { type: 'string' },
  'start-spread': { type: 'string' },
  'rack-aware': { type: 'boolean' },
  'no-rack-aware': { type: 'boolean' },
  'no-rarest-shortcut': { type: 'boolean' },
  json: { type: 'boolean', default: false },
  progress: { type: 'boolean', default: false },
  help: { type: 'boolean', default: false },
}

const USAGE = `usage: node scripts/bench-swarm/simulate.mjs --nodes N --size SIZE --rate RATE
  [--racks R | --rack-size S] [--oversubscription X] [--rack-aware | --no-rack-aware]
  [--latency 1ms] [--step 50ms] [--seed 1] [--server-rate RATE] [--piece-length 1MiB]
  [--max-connections 80] [--server-max-connections 80] [--upload-slots 20] [--numwant 80]
  [--announce-interval 20s] [--start-spread 0s] [--no-rarest-shortcut] [--progress] [--json]`

/** The flags as settings: each flag's name in camelCase (see sim/settings.mjs). */
export function settingsFromFlags(values) {
  const partial = {}
  for (const [flag, value] of Object.entries(values)) {
    if (flag.startsWith('no-') || ['json', 'help', 'progress', 'rack-aware'].includes(flag))
      continue
    partial[flag.replace(/-([a-z])/g, (_, c) => c.toUpperCase())] = value
  }
  if (values['no-rack-aware']) partial.rackAware = false
  else if (values['rack-aware']) partial.rackAware = true
  if (values['no-rarest-shortcut']) partial.rarestShortcut = false
  return partial
}

/** The command: flags in, a summary or one JSON object out (exit 1: the swarm stuck). */
export async function main() {
  let values
  try {
    ;({ values } = parseArgs({ options: OPTIONS, strict: true }))
  } catch (err) {
    console.error(`${err.message}\n${USAGE}`)
    process.exit(2)
  }
  if (values.help) {
    console.log(USAGE)
    return
  }
  let result
  try {
    const onProgress = values.progress
      ? (p) =>
          console.error(
            `t=${p.virtualSeconds.toFixed(1)} s: ${p.finished}/${p.nodes} done, ${p.flows} flows, ${p.blocks} blocks`,
          )
      : undefined
    result = simulate(settingsFromFlags(values), { onProgress })
  } catch (err) {
    if (err instanceof Error && err.message.startsWith('--')) {
      console.error(`${err.message}\n${USAGE}`)
      process.exit(2)
    }
    throw err
  }
  console.log(values.json ? JSON.stringify(result) : describe(result))
  if (result.tAll === null) process.exitCode = 1
}
