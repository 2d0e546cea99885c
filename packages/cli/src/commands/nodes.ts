import { ImageSwarmError, NODE_STATES, parseImageName } from '@imageswarm/core'
import type { DeploymentRecord, NodeView, SwarmSummary } from '@imageswarm/tracker'
import type { Command } from 'commander'
import {
  addDashboardClientOptions,
  DashboardClient,
  type DashboardClientFlags,
} from '../dashboard-client.js'
import { collectList, integerFlag } from '../options.js'
import { formatBytes, textTable } from '../text-table.js'

/** What `--state` takes: an install state, or `stale` (live nodes) / `lost` (a deployment's). */
const STATE_FILTERS = [...NODE_STATES, 'stale', 'lost'] as const

export interface NodesFlags extends DashboardClientFlags {
  json: boolean
  state?: string[]
  deployment?: number
}

/** Registers `imageswarm nodes IMAGE`. */
export function addNodesCommand(program: Command): void {
  addDashboardClientOptions(
    program
      .command('nodes')
      .description(
        "show each node of an image's swarm and its state, or a deployment's record (like si_monitortk, without a GUI)",
      )
      .argument('<image>', 'image name (a delta swarm too: NAME.delta-1-2)'),
  )
    .option(
      '--state <state...>',
      `only nodes in these states (repeat, or a,b): ${STATE_FILTERS.join(', ')}`,
      collectList,
    )
    .option(
      '--deployment <id>',
      "a deployment's record (one row per node, as its CSV export) instead of the live swarm",
      integerFlag('--deployment', 1, 999_999_999),
    )
    .action(async (image: string, flags: NodesFlags) => runNodes(image, flags))
}

/**
 * `imageswarm nodes IMAGE`: each node of the image's swarm (host name, MAC, address, state,
 * progress, where its bytes came from), or with `--deployment ID` that deployment's record,
 * from the server's JSON API. `--state` narrows either to some states.
 */
export async function runNodes(image: string, flags: NodesFlags): Promise<void> {
  const name = parseImageName(image)
  const states = flags.state ?? []
  for (const state of states) {
    if (!(STATE_FILTERS as readonly string[]).includes(state)) {
      throw new ImageSwarmError(
        'E_USAGE',
        `--state ${state} is not a node state: expected one of ${STATE_FILTERS.join(', ')}`,
        { path: '--state', hint: 'e.g. --state failed,stale' },
      )
    }
  }
  const api = await DashboardClient.open(flags)
  const base = `/api/images/${encodeURIComponent(name)}`
  if (flags.deployment !== undefined) {
    const record = await api.get<DeploymentRecord>(`${base}/deployments/${flags.deployment}`)
    const rows = record.rows.filter(
      (row) =>
        states.length === 0 || states.includes(row.state) || (row.lost && states.includes('lost')),
    )
    if (flags.json) {
      process.stdout.write(`${JSON.stringify({ ...record, rows }, null, 2)}\n`)
      return
    }
    process.stdout.write(
      `${name} deployment ${record.id} (${record.state}, started ${new Date(record.startedAt).toISOString()}): ${record.text}\n`,
    )
    process.stdout.write(`${deploymentTable(rows).join('\n')}\n`)
    return
  }
  const summary = await api.get<SwarmSummary>(base)
  const { nodes } = await api.get<{ nodes: NodeView[] }>(`${base}/nodes`)
  const shown = nodes.filter(
    (node) =>
      states.length === 0 ||
      states.includes(node.state) ||
      (node.stale && (states.includes('stale') || states.includes('lost'))),
  )
  if (flags.json) {
    process.stdout.write(`${JSON.stringify(shown, null, 2)}\n`)
    return
  }
  const deployment = summary.deployment
  const installed = summary.states.seeding + summary.states.done
  process.stdout.write(
    `${name}: ${installed}/${summary.nodes} installed, ${summary.states.failed} failed, ${summary.stale} stale${summary.foreign > 0 ? `, ${summary.foreign} other BitTorrent ${summary.foreign === 1 ? 'client' : 'clients'}` : ''}${deployment === null ? '' : `; deployment ${deployment.id} ${deployment.state}: ${deployment.text}`}\n`,
  )
  if (shown.length === 0) {
    process.stdout.write(
      nodes.length === 0 ? 'no node has reported yet\n' : 'no node in those states\n',
    )
    return
  }
  process.stdout.write(`${nodesTable(shown, Date.now()).join('\n')}\n`)
}

/** The live table: one line per node, sorted by name. */
export function nodesTable(nodes: readonly NodeView[], now: number): string[] {
  const rows = [...nodes]
    .sort(byName)
    .map((node) => [
      nameOf(node),
      node.mac ?? '-',
      node.address ?? '-',
      `${node.state}${node.stale ? ' (stale)' : ''}`,
      `${Math.floor(node.progress * 100)}%`,
      node.kind === 'foreign' || node.source !== 'status'
        ? '-'
        : formatBytes(node.downloadedFromServer),
      `${Math.max(0, Math.round((now - node.stateSince) / 1000))} s`,
      node.error === null ? '' : `${node.error.code}: ${node.error.message}`,
    ])
  return textTable(
    [
      { title: 'NODE' },
      { title: 'MAC' },
      { title: 'ADDRESS' },
      { title: 'STATE' },
      { title: 'PROGRESS', numeric: true },
      { title: 'FROM SERVER', numeric: true },
      { title: 'IN STATE', numeric: true },
      { title: 'ERROR' },
    ],
    rows,
  )
}

/** A deployment's table: one line per node, as its CSV export. */
export function deploymentTable(rows: DeploymentRecord['rows']): string[] {
  return textTable(
    [
      { title: 'NODE' },
      { title: 'MAC' },
      { title: 'ADDRESS' },
      { title: 'STATE' },
      { title: 'SECONDS', numeric: true },
      { title: 'FROM SERVER', numeric: true },
      { title: 'FROM PEERS', numeric: true },
      { title: 'ERROR' },
    ],
    [...rows]
      .sort((a, b) =>
        (a.node ?? a.peerId).localeCompare(b.node ?? b.peerId, undefined, { numeric: true }),
      )
      .map((row) => [
        row.node ?? `peer ${row.peerId.slice(16, 28)}`,
        row.mac ?? '-',
        row.address ?? '-',
        `${row.state}${row.lost ? ' (lost)' : ''}`,
        row.seconds === null ? '-' : String(row.seconds),
        formatBytes(row.bytesFromServer),
        formatBytes(row.bytesFromPeers),
        row.error === null ? '' : `${row.error.code}: ${row.error.message}`,
      ]),
  )
}

function nameOf(node: NodeView): string {
  if (node.node !== null) return node.node
  if (node.kind === 'foreign')
    return `(other client${node.client === null ? '' : `: ${node.client}`})`
  return `peer ${node.peerId.slice(16, 28)}`
}

function byName(a: NodeView, b: NodeView): number {
  return nameOf(a).localeCompare(nameOf(b), undefined, { numeric: true })
}
