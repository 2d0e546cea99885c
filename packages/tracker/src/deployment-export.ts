import type { DeploymentRecord } from './deployment.js'

/** The export's columns, in order: one row per node. */
export const DEPLOYMENT_CSV_COLUMNS = [
  'host',
  'mac',
  'address',
  'peer_id',
  'state',
  'started',
  'finished',
  'seconds',
  'bytes_from_server',
  'bytes_from_peers',
  'error',
] as const

/**
 * A deployment as CSV (RFC 4180: CRLF line ends, fields quoted where needed), one row
 * per node, times in ISO 8601 UTC. A node that went silent before finishing has the state
 * it was last in and the error `E_NODE_LOST`. Text a node reported that a spreadsheet would
 * take for a formula (`=`, `+`, `-`, `@` first) is prefixed with `'`.
 *
 * @example
 *   deploymentCsv(record)
 *   // host,mac,address,peer_id,state,started,finished,seconds,bytes_from_server,…
 *   // node01,52:54:00:12:34:01,10.0.0.11,2d49…,done,2026-12-04T02:00:01.000Z,…
 */
export function deploymentCsv(record: DeploymentRecord): string {
  const lines = [DEPLOYMENT_CSV_COLUMNS.join(',')]
  for (const row of record.rows) {
    const error =
      row.error !== null
        ? `${row.error.code}: ${row.error.message}`
        : row.lost
          ? 'E_NODE_LOST: not heard from before it finished'
          : ''
    lines.push(
      [
        text(row.node ?? ''),
        row.mac ?? '',
        row.address ?? '',
        row.peerId,
        row.state,
        new Date(row.started).toISOString(),
        row.finished === null ? '' : new Date(row.finished).toISOString(),
        row.seconds === null ? '' : String(row.seconds),
        String(row.bytesFromServer),
        String(row.bytesFromPeers),
        text(error),
      ].join(','),
    )
  }
  return `${lines.join('\r\n')}\r\n`
}

/** The file name an export is saved under: `compute-deployment-3.csv`. */
export function deploymentFileName(record: DeploymentRecord, extension: 'csv' | 'json'): string {
  return `${record.image.replace(/[^A-Za-z0-9._-]/g, '_')}-deployment-${record.id}.${extension}`
}

function text(value: string): string {
  const safe = /^[=+\-@\t\r]/.test(value) ? `'${value}` : value
  return /[",\r\n]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe
}
