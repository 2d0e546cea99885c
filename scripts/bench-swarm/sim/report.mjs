// A run's figures: the JSON object simulate.mjs prints with --json, and a short summary.
import { CLOCK_START, tMinSeconds } from './run.mjs'

const MiB = 1024 * 1024

/** The figures of a finished Simulation; `wallSeconds` and `cpuSeconds` measured around it. */
export function summarize(sim, { wallSeconds, cpuSeconds }) {
  const { settings } = sim
  const clients = sim.nodes.slice(1)
  const finishTimes = clients.map((node) =>
    node.done ? round((node.finishedAt - CLOCK_START) / 1000, 4) : null,
  )
  const finished = finishTimes.filter((t) => t !== null)
  const tMin = tMinSeconds(settings)
  const tAll = finished.length === clients.length ? Math.max(...finished) : null
  return {
    nodes: settings.nodes,
    size: settings.size,
    rate: settings.rate,
    serverRate: settings.serverRate,
    racks: settings.racks,
    rackSize: settings.rackSize,
    oversubscription: settings.oversubscription,
    rackAware: settings.rackAware,
    tMin: round(tMin, 4),
    tAll: tAll === null ? null : round(tAll, 4),
    tAllOverTmin: tAll === null ? null : round(tAll / tMin, 4),
    finished: finished.length,
    serverCopies: round(sim.serverBytes / settings.size, 4),
    crossRackBytes: sim.crossRackBytes,
    crossRackCopies: round(sim.crossRackBytes / settings.size, 4),
    duplicateBytes: sim.duplicateBytes,
    finishTimes,
    wallSeconds: round(wallSeconds, 2),
    cpuSeconds: round(cpuSeconds, 2),
    virtualSeconds: round((sim.now - CLOCK_START) / 1000, 3),
    steps: sim.steps,
    events: {
      messages: sim.messages,
      blocks: sim.blocks,
      requests: sim.requests,
      connections: sim.connections,
      peakFlows: sim.peakFlows,
    },
    settings,
    notes: [
      'tMin = Kumar–Ross bound max(F/u_server, F/d_min, N·F/(u_server + Σu_i)) for the configured links; with oversubscribed racks it ignores the uplinks.',
      'Messages arrive at the first step boundary at or after the latency; blocks when their last byte has gone through a max-min fair share of every link they cross.',
    ],
  }
}

/** A few lines for a terminal. */
export function describe(result) {
  const layout =
    result.racks > 0
      ? `${result.racks} racks of ${result.rackSize} at ${result.oversubscription}:1, ${result.rackAware ? 'rack-aware' : 'uniform'} handout`
      : 'flat'
  const lines = [
    `${result.nodes} nodes, ${(result.size / MiB).toFixed(0)} MiB at ${formatRate(result.rate)} (server ${formatRate(result.serverRate)}), ${layout}`,
    result.tAll === null
      ? `stuck: ${result.finished} of ${result.nodes} finished by ${result.virtualSeconds} s`
      : `T_all ${result.tAll.toFixed(1)} s = ${result.tAllOverTmin.toFixed(2)} × T_min (${result.tMin.toFixed(1)} s)`,
    `server copies ${result.serverCopies.toFixed(2)}, cross-rack copies ${result.crossRackCopies.toFixed(1)}`,
    `simulated in ${result.wallSeconds.toFixed(1)} s wall (${result.cpuSeconds.toFixed(1)} s CPU), ${result.steps} steps, ${result.events.blocks} blocks, ${result.events.messages} messages`,
  ]
  return lines.join('\n')
}

export function formatRate(bits) {
  if (bits >= 1e9) return `${bits / 1e9} Gbit/s`
  if (bits >= 1e6) return `${bits / 1e6} Mbit/s`
  return `${bits / 1e3} kbit/s`
}

function round(x, digits) {
  const scale = 10 ** digits
  return Math.round(x * scale) / scale
}
