// The multi-server benchmark's report (issue 21): a Markdown table of every scenario's time
// until every client verified, as a ratio to the two-server baseline of the same run (the
// machine is shared, so absolute times drift between sessions; ratios measured minutes
// apart on one cluster do not), the servers' upload in archive copies and the mirror's fill.
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describeMachine } from './report.mjs'

const MiB = 1024 * 1024
const f1 = (x) => (x === null || x === undefined ? '—' : x.toFixed(1))
const f2 = (x) => (x === null || x === undefined ? '—' : x.toFixed(2))

function median(xs) {
  const sorted = xs.filter((x) => x !== null && Number.isFinite(x)).sort((a, b) => a - b)
  if (sorted.length === 0) return null
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

/** Each result's time until every client verified over its run's baseline's (null if either is missing). */
export function ratiosToBaseline(results) {
  return results.map((r) => {
    const base = results.find((b) => b.run === r.run && b.scenario === 'baseline')
    return r.tAllVerified !== null && base?.tAllVerified ? r.tAllVerified / base.tAllVerified : null
  })
}

/** One session's report as Markdown; returns the path written. */
export async function writeMultiServerReport(report, outDir) {
  const machine = describeMachine()
  const { settings, results } = report
  const first = results[0]
  const ratios = ratiosToBaseline(results)
  const lines = [
    `# Several image servers: ${report.label}`,
    '',
    `Date: ${report.date.slice(0, 16).replace('T', ' ')} UTC. Command:`,
    '',
    '```sh',
    report.command,
    '```',
    '',
    `Machine: ${machine.cpu}, ${machine.memory}, Linux ${machine.kernel}, Node ${machine.node}, imageswarm's swarm engine on bittorrent-protocol ${machine.bittorrentProtocol}.`,
    `Every emulated host (one network namespace each, veth into one bridge) is capped at ${settings.rate} in both directions with htb, one class per other host; all hosts share this machine's CPUs.`,
    `Two server hosts: A (10.77.0.1) serves the image, B (10.77.0.2) runs \`serve --mirror-of A\` with empty directories and fills from A through the swarm before the clients start. ${settings.clients} install clients get \`--server A,B\` (\`--server A\` in the one-server scenarios).`,
    `Archive: ${f1(first?.archiveBytes / MiB)} MiB; T_min = F/u (Kumar–Ross with equal links) = ${f1(first?.tMin)} s. Faults are injected when the clients' mean progress first reaches ${settings.failAt}: A's serve process killed with SIGKILL, or A's HTTP port (tracker, manifests, web seed) black-holed while its seeder keeps running.`,
    '',
    'T_all = time from the clients starting until the last one holds a verified archive; × baseline = T_all over the two-server baseline of the same run (targets: killed ≤ 1.25, HTTP port lost < 1.10); copies = bytes the server hosts sent during the deployment, together (A / B), in copies of the archive (target about 1); mirror fill = what B downloaded before the clients started (from web seeds in brackets), and its seconds; finished = clients that exited 0 with an extracted root.',
    '',
    '| run | scenario | fault at s (mean progress) | T_all s | extracted s | × baseline | target | copies (A / B) | mirror fill MiB (web seed) s | finished |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ]
  results.forEach((r, i) => {
    const spec = report.scenarios[r.scenario]
    const [a, b] = r.servers
    const copies = (s) => (s ? f2(s.sentBytes / r.archiveBytes) : '—')
    lines.push(
      `| ${[
        r.run,
        spec.title,
        r.fail === 'none'
          ? '—'
          : r.faultAt === null
            ? 'not reached'
            : `${f1(r.faultAt)} (${f2(r.progressAtFault)})`,
        r.tAllVerified === null ? `${r.finished} of ${r.n} finished` : f1(r.tAllVerified),
        f1(r.tAllExtracted),
        r.scenario === 'baseline' && r.tAllVerified !== null ? '1' : f2(ratios[i]),
        spec.target ? `${spec.target === 1.1 ? '<' : '≤'} ${f2(spec.target)}` : '',
        `${f2(r.serverCopies)} (${copies(a)} / ${copies(b)})`,
        r.mirror
          ? `${f1(r.mirror.downloaded / MiB)} (${f1(r.mirror.downloadedFromWebSeed / MiB)}) ${f1(r.mirror.seconds)}`
          : '—',
        `${r.finished} / ${r.n}`,
      ].join(' | ')} |`,
    )
  })
  if (settings.runs > 1) {
    lines.push('', 'Median over the runs:', '')
    for (const scenario of settings.scenarios) {
      const picked = results.map((r, i) => [r, ratios[i]]).filter(([r]) => r.scenario === scenario)
      lines.push(
        `- ${report.scenarios[scenario].title}: × baseline ${f2(median(picked.map(([, x]) => x)))}, copies ${f2(median(picked.map(([r]) => r.serverCopies)))}`,
      )
    }
  }
  lines.push('', 'Per-client times (s, verified / extracted; exit code when not 0):', '')
  for (const r of results) {
    lines.push(
      `- run ${r.run} ${r.scenario}: ${r.clients
        .map(
          (c) =>
            `${c.name} ${f1(c.verifiedAt)}/${f1(c.extractedAt)}${c.code === 0 ? '' : ` exit ${c.code ?? c.signal}`}`,
        )
        .join(', ')}`,
    )
  }
  const mdPath = join(outDir, `${report.label}.md`)
  await writeFile(mdPath, `${lines.join('\n')}\n`)
  return mdPath
}
