// The benchmark's report: a Markdown table with the machine and settings, and two SVG
// plots (T_all / T_min against N per transport; the completion curve of the largest N).
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { cpus, release, totalmem } from 'node:os'
import { join } from 'node:path'

const COLORS = {
  imageswarm: '#d62728',
  'imageswarm-baseline': '#ff9896',
  'imageswarm-racks': '#9467bd',
  http: '#7f7f7f',
  aria2: '#1f77b4',
}
const MiB = 1024 * 1024

function versionOf(command, args) {
  try {
    return execFileSync(command, args, { timeout: 5000 }).toString().split('\n')[0].trim()
  } catch {
    return 'not installed'
  }
}

/** The wire library under imageswarm's swarm engine (packages/swarm). */
function wireVersion() {
  try {
    const url = new URL(
      '../../../packages/swarm/node_modules/bittorrent-protocol/package.json',
      import.meta.url,
    )
    return JSON.parse(readFileSync(url, 'utf8')).version
  } catch {
    return 'unknown'
  }
}

export function describeMachine() {
  return {
    cpu: `${cpus()[0]?.model ?? 'unknown'} × ${cpus().length}`,
    memory: `${Math.round(totalmem() / 1024 ** 3)} GiB`,
    kernel: release(),
    node: process.version,
    bittorrentProtocol: wireVersion(),
    aria2: versionOf('aria2c', ['--version']),
  }
}

const f1 = (x) => (x === null || x === undefined ? '—' : x.toFixed(1))
const f2 = (x) => (x === null || x === undefined ? '—' : x.toFixed(2))

/** One run's report as Markdown; returns the path written. */
export async function writeReport(run, outDir) {
  const machine = describeMachine()
  const byN = new Map()
  for (const r of run.results) {
    if (!byN.has(r.n)) byN.set(r.n, {})
    byN.get(r.n)[r.transport] = r
  }
  const transports = run.settings.transports
  const lines = [
    `# Swarm benchmark: ${run.label}`,
    '',
    `Date: ${run.date.slice(0, 16).replace('T', ' ')} UTC. Command:`,
    '',
    '```sh',
    run.command,
    '```',
    '',
    `Machine: ${machine.cpu}, ${machine.memory}, Linux ${machine.kernel}, Node ${machine.node}, imageswarm's swarm engine on bittorrent-protocol ${machine.bittorrentProtocol}, ${machine.aria2}.`,
    `Every emulated host (one network namespace each, veth into one bridge) is capped at ${run.settings.rate} in both directions with htb, one class per other host; all hosts share this machine's CPUs.`,
    `Archive: ${f1(run.results[0]?.archiveBytes / MiB)} MiB; T_min = F/u (Kumar–Ross with equal links) = ${f1(run.results[0]?.tMin)} s.`,
    '',
    'T_all = time until the last client holds a verified archive (× T_min in brackets); extracted = until the last target root is unpacked; copies = bytes the server host sent, in copies of the archive; CPU = CPU seconds summed over all client hosts (the part spent in the kernel in brackets) / the server host; RSS = largest peak RSS of one client process.',
    '',
    `| N | ${transports.map((t) => `${t}: T_all s (×T_min) | extracted s | copies | CPU client/server s | RSS MiB`).join(' | ')} | ${
      transports.includes('imageswarm')
        ? transports
            .filter((t) => t !== 'imageswarm')
            .map((t) => `imageswarm / ${t}`)
            .join(' | ')
        : ''
    } |`,
    `|---|${transports.map(() => '---|---|---|---|---').join('|')}|${
      transports.includes('imageswarm')
        ? transports
            .filter((t) => t !== 'imageswarm')
            .map(() => '---')
            .join('|')
        : ''
    }|`,
  ]
  for (const [n, cells] of byN) {
    const row = [String(n)]
    for (const t of transports) {
      const r = cells[t]
      if (!r) {
        row.push('', '', '', '', '')
        continue
      }
      row.push(
        r.tAllVerified === null
          ? `${r.finished} of ${r.n} finished`
          : `${f1(r.tAllVerified)} (${f2(r.tAllVerified / r.tMin)})`,
        f1(r.tAllExtracted),
        f2(r.serverCopies),
        `${f1(r.usage.client?.cpu)}${r.usage.client?.sys === undefined ? '' : ` (${f1(r.usage.client.sys)})`} / ${f1(r.usage.server?.cpu)}`,
        f1((r.usage.client?.peakRss ?? 0) / MiB),
      )
    }
    if (transports.includes('imageswarm')) {
      for (const t of transports.filter((t) => t !== 'imageswarm')) {
        const a = cells.imageswarm?.tAllVerified
        const b = cells[t]?.tAllVerified
        row.push(a && b ? f2(a / b) : '—')
      }
    }
    lines.push(`| ${row.join(' | ')} |`)
  }
  const timePlot = `${run.label}-time.svg`
  const curvePlot = `${run.label}-completion.svg`
  lines.push(
    '',
    `![T_all / T_min against N](${timePlot})`,
    '',
    `![completion curve, N = ${Math.max(...byN.keys())}](${curvePlot})`,
    '',
    'Per-client times (s, verified / extracted):',
    '',
  )
  for (const r of run.results) {
    lines.push(
      `- ${r.transport} N=${r.n}: ${r.clients.map((c) => `${c.name} ${f1(c.verifiedAt)}/${f1(c.extractedAt)}`).join(', ')}`,
    )
  }
  await writeFile(join(outDir, timePlot), plotTimes(run, transports))
  await writeFile(join(outDir, curvePlot), plotCompletion(run, transports))
  const mdPath = join(outDir, `${run.label}.md`)
  await writeFile(mdPath, `${lines.join('\n')}\n`)
  return mdPath
}

function svg(width, height, body) {
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">\n<rect width="100%" height="100%" fill="white"/>\n${body.join('\n')}\n</svg>\n`
}

/** A line chart with axes; series = [{ name, color, points: [[x, y]] }]; `xFormat` labels
 * the ticks (the simulator's tables plot log10 N). */
export function chart({ title, xLabel, yLabel, series, xTicks, yMax, xFormat = (x) => x }) {
  const W = 640
  const H = 400
  const m = { l: 60, r: 130, t: 36, b: 48 }
  const xs = series.flatMap((s) => s.points.map((p) => p[0]))
  const xMin = Math.min(...xTicks, ...xs)
  const xMax = Math.max(...xTicks, ...xs)
  const top = yMax ?? Math.max(1, ...series.flatMap((s) => s.points.map((p) => p[1]))) * 1.1
  const X = (x) => m.l + ((x - xMin) / (xMax - xMin || 1)) * (W - m.l - m.r)
  const Y = (y) => H - m.b - (y / top) * (H - m.t - m.b)
  const body = [
    `<text x="${W / 2 - 60}" y="20" font-size="14">${title}</text>`,
    `<line x1="${m.l}" y1="${H - m.b}" x2="${W - m.r}" y2="${H - m.b}" stroke="black"/>`,
    `<line x1="${m.l}" y1="${m.t}" x2="${m.l}" y2="${H - m.b}" stroke="black"/>`,
    `<text x="${(W - m.r + m.l) / 2}" y="${H - 10}" text-anchor="middle">${xLabel}</text>`,
    `<text x="16" y="${(H - m.b + m.t) / 2}" transform="rotate(-90 16 ${(H - m.b + m.t) / 2})" text-anchor="middle">${yLabel}</text>`,
  ]
  for (const x of xTicks) {
    body.push(`<text x="${X(x)}" y="${H - m.b + 16}" text-anchor="middle">${xFormat(x)}</text>`)
  }
  for (let i = 0; i <= 5; i++) {
    const y = (top * i) / 5
    body.push(
      `<line x1="${m.l}" y1="${Y(y)}" x2="${W - m.r}" y2="${Y(y)}" stroke="#ddd"/>`,
      `<text x="${m.l - 6}" y="${Y(y) + 4}" text-anchor="end">${y.toFixed(y < 10 ? 1 : 0)}</text>`,
    )
  }
  series.forEach((s, i) => {
    if (s.points.length === 0) return
    const d = s.points.map((p, j) => `${j ? 'L' : 'M'}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`)
    body.push(`<path d="${d.join(' ')}" fill="none" stroke="${s.color}" stroke-width="2"/>`)
    if (s.markers) {
      for (const p of s.points) {
        body.push(
          `<circle cx="${X(p[0]).toFixed(1)}" cy="${Y(p[1]).toFixed(1)}" r="3" fill="${s.color}"/>`,
        )
      }
    }
    body.push(
      `<line x1="${W - m.r + 10}" y1="${m.t + 10 + i * 18}" x2="${W - m.r + 30}" y2="${m.t + 10 + i * 18}" stroke="${s.color}" stroke-width="2"/>`,
      `<text x="${W - m.r + 36}" y="${m.t + 14 + i * 18}">${s.name}</text>`,
    )
  })
  return svg(W, H, body)
}

function plotTimes(run, transports) {
  const ns = [...new Set(run.results.map((r) => r.n))]
  const series = transports.map((t) => ({
    name: t,
    color: COLORS[t] ?? '#2ca02c',
    markers: true,
    points: run.results
      .filter((r) => r.transport === t && r.tAllVerified !== null)
      .map((r) => [r.n, r.tAllVerified / r.tMin]),
  }))
  series.push({ name: 'T_min', color: '#000', points: ns.map((n) => [n, 1]) })
  return chart({
    title: `T_all / T_min against N (${run.settings.rate}, ${run.settings.size})`,
    xLabel: 'clients N',
    yLabel: 'time until every client verified / T_min',
    series,
    xTicks: ns,
  })
}

function plotCompletion(run, transports) {
  const n = Math.max(...run.results.map((r) => r.n))
  const tMin = run.results[0]?.tMin ?? 1
  const series = transports.map((t) => {
    const r = run.results.find((x) => x.transport === t && x.n === n)
    const times = (r?.clients ?? [])
      .map((c) => c.verifiedAt)
      .filter((x) => x !== null)
      .sort((a, b) => a - b)
    const points = [[0, 0]]
    times.forEach((time, i) => {
      points.push([time / tMin, i / n], [time / tMin, (i + 1) / n])
    })
    return { name: t, color: COLORS[t] ?? '#2ca02c', points }
  })
  const maxX = Math.max(1, ...series.flatMap((s) => s.points.map((p) => p[0])))
  const ticks = Array.from({ length: 6 }, (_, i) => Number(((maxX * i) / 5).toFixed(1)))
  return chart({
    title: `Clients holding a verified archive, N = ${n}`,
    xLabel: 'time / T_min',
    yLabel: 'fraction of clients',
    series,
    xTicks: ticks,
    yMax: 1,
  })
}
