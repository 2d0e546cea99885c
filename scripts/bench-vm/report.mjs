// @ts-check
// The VM benchmark's report: a Markdown table (whole-cluster times, each stage's mean and
// slowest node, what the server sent, memory and CPU), and SVG plots: each node's stages
// on a timeline, for both transports, and the share of nodes booted against time.
import { writeFile } from 'node:fs/promises'
import { cpus, release, totalmem } from 'node:os'
import { join } from 'node:path'
import { DEPLOY_STAGES } from '../lib/vm-deploy.mjs'

const MiB = 1024 * 1024

/** @type {Record<string, string>} */
const STAGE_COLORS = {
  'firmware-pxe': '#9467bd',
  ramdisk: '#8c564b',
  partitioning: '#e377c2',
  download: '#d62728',
  verify: '#ff9896',
  extract: '#1f77b4',
  configure: '#aec7e8',
  bootloader: '#2ca02c',
  seeding: '#98df8a',
  reboot: '#7f7f7f',
  boot: '#ff7f0e',
}

/** @type {Record<string, string>} */
const STAGE_NAMES = {
  'firmware-pxe': 'firmware and PXE',
  ramdisk: 'kernel, /init and DHCP',
  partitioning: 'node config and partitioning',
  download: 'download',
  verify: 'sha256',
  extract: 'extraction',
  configure: 'fstab, host name, overrides',
  bootloader: 'bootloader (GRUB)',
  seeding: 'post-install, seeding',
  reboot: 'reboot',
  boot: 'boot of the installed system',
}

/** @type {Record<string, string>} */
const TRANSPORT_COLORS = { torrent: '#d62728', http: '#7f7f7f' }

const f1 = (/** @type {number | undefined | null} */ x) =>
  x === undefined || x === null || Number.isNaN(x) ? '—' : x.toFixed(1)

/**
 * @typedef {object} BenchRun
 * @property {number} n
 * @property {'torrent' | 'http'} transport
 * @property {number} tAll seconds from power-on to the last node booted (NaN if one failed)
 * @property {number} booted nodes that booted the installed system
 * @property {import('../lib/vm-deploy.mjs').NodeTimeline[]} nodes
 * @property {{ seconds: number, cores: number, hostBusy: number, qemuCpuSeconds: number, peakRss: Record<string, number> }} usage
 * @property {number} serverCpuSeconds
 * @property {number} archiveBytes
 * @property {{ node: string | null, downloaded: number, downloadedFromServer: number, uploaded: number, state: string }[]} dashboard
 * @property {string[]} failures
 */

/**
 * Seconds each stage took on each node of a run, by stage.
 * @param {BenchRun} run
 */
function stageSeconds(run) {
  /** @type {Record<string, number[]>} */
  const byStage = {}
  for (const node of run.nodes) {
    for (const { stage, start, end } of node.stages) {
      const values = byStage[stage] ?? []
      values.push((end - start) / 1000)
      byStage[stage] = values
    }
  }
  return byStage
}

const mean = (/** @type {number[]} */ values) =>
  values.length === 0 ? Number.NaN : values.reduce((sum, value) => sum + value, 0) / values.length

/**
 * Writes README.md (the table, the method, the plots) and the SVGs into `outDir`.
 * @param {{ label: string, date: string, command: string, settings: Record<string, unknown>, accel: string, runs: BenchRun[], machine?: Record<string, string> }} bench
 * @param {string} outDir
 */
export async function writeVmReport(bench, outDir) {
  /** @type {Record<string, string>} */
  const machine = {
    cpu: `${cpus()[0]?.model ?? 'unknown'} × ${cpus().length}`,
    memory: `${Math.round(totalmem() / 1024 ** 3)} GiB`,
    kernel: release(),
    node: process.version,
    ...(bench.machine ?? {}),
  }
  const counts = [...new Set(bench.runs.map((run) => run.n))].sort((a, b) => a - b)
  const lines = [
    `## Results: ${bench.label}`,
    '',
    `Date: ${bench.date.slice(0, 16).replace('T', ' ')} UTC. Command:`,
    '',
    '```sh',
    bench.command,
    '```',
    '',
    `Machine: ${machine.cpu}, ${machine.memory}, Linux ${machine.kernel}, Node ${machine.node}, QEMU ${machine.qemu ?? '?'} (${bench.accel}). Settings: ${JSON.stringify(bench.settings)}.`,
    '',
    "T_all: power-on of every VM (all at once) to the last node printing `IMAGESWARM-BOOTED` from its installed system. Stages: the mean over the nodes (the slowest node in brackets), in seconds. Server sent: archive bytes the server uploaded (dashboard counters), in copies of the archive. RSS: peak resident set of one VM's QEMU (mean / largest). CPU: host CPU busy over the run, of all cores; QEMU: CPU seconds of all VMs.",
    '',
    `| N | transport | T_all s | ${DEPLOY_STAGES.map((stage) => STAGE_NAMES[stage]).join(' | ')} | server sent (copies) | RSS MiB per VM | host CPU busy | QEMU CPU s |`,
    `|---|---|---|${DEPLOY_STAGES.map(() => '---').join('|')}|---|---|---|---|`,
  ]
  for (const run of bench.runs) {
    const byStage = stageSeconds(run)
    const rss = Object.values(run.usage.peakRss).map((bytes) => bytes / MiB)
    const fromServer = run.dashboard.reduce((sum, node) => sum + node.downloadedFromServer, 0)
    lines.push(
      `| ${run.n} | ${run.transport} | ${run.booted === run.n ? f1(run.tAll) : `${run.booted} of ${run.n} booted`} | ${DEPLOY_STAGES.map(
        (stage) => {
          const values = byStage[stage] ?? []
          return values.length === 0 ? '—' : `${f1(mean(values))} (${f1(Math.max(...values))})`
        },
      ).join(
        ' | ',
      )} | ${f1(fromServer / MiB)} MiB (${(fromServer / run.archiveBytes).toFixed(2)}) | ${f1(mean(rss))} / ${f1(Math.max(...rss))} | ${(run.usage.hostBusy * 100).toFixed(0)} % of ${run.usage.cores} cores | ${f1(run.usage.qemuCpuSeconds)} |`,
    )
  }
  lines.push('')
  for (const n of counts) {
    const timeline = `${bench.label}-n${n}-timeline.svg`
    const curve = `${bench.label}-n${n}-completion.svg`
    await writeFile(join(outDir, timeline), plotTimelines(bench.runs.filter((run) => run.n === n)))
    await writeFile(join(outDir, curve), plotCompletion(bench.runs.filter((run) => run.n === n)))
    lines.push(
      `![N = ${n}: each node's stages, swarm and HTTP](${timeline})`,
      '',
      `![N = ${n}: nodes booted into the installed system against time](${curve})`,
      '',
    )
  }
  lines.push(
    'Per node (s from power-on: installer start / downloaded / extracted / GRUB done / booted; MiB from peers / from the server / uploaded):',
    '',
  )
  for (const run of bench.runs) {
    lines.push(`- ${run.transport} N=${run.n}:`)
    for (const node of run.nodes) {
      const at = (/** @type {string} */ stage) => {
        const entry = node.stages.find((candidate) => candidate.stage === stage)
        return entry ? f1((entry.start - node.poweredOn) / 1000) : '—'
      }
      const board = run.dashboard.find(
        (entry) => entry.node === node.node && entry.state === 'done',
      )
      lines.push(
        `  ${node.node} ${at('partitioning')} / ${at('verify')} / ${at('configure')} / ${at('seeding')} / ${node.booted ? f1((node.booted - node.poweredOn) / 1000) : 'not booted'}; ${board ? `${f1((board.downloaded - board.downloadedFromServer) / MiB)} / ${f1(board.downloadedFromServer / MiB)} / ${f1(board.uploaded / MiB)}` : '—'}${node.failure ? `; ${node.failure}` : ''}`,
      )
    }
    for (const failure of run.failures) lines.push(`  failure: ${failure}`)
  }
  return `${lines.join('\n')}\n`
}

/**
 * @param {number} width
 * @param {number} height
 * @param {string[]} body
 */
function svg(width, height, body) {
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">\n<rect width="100%" height="100%" fill="white"/>\n${body.join('\n')}\n</svg>\n`
}

/**
 * One panel per transport, one row per node, each stage a coloured bar from its start to
 * its end (seconds since the VMs were powered on), with a legend of the stages.
 * @param {BenchRun[]} runs
 */
function plotTimelines(runs) {
  const rowHeight = 16
  const left = 70
  const right = 190
  const width = 900
  const panelGap = 40
  const top = 40
  const starts = runs.map((run) => Math.min(...run.nodes.map((node) => node.poweredOn)))
  const maxSeconds = Math.max(
    10,
    ...runs.flatMap((run, index) =>
      run.nodes.flatMap((node) =>
        node.stages.map((stage) => (stage.end - (starts[index] ?? 0)) / 1000),
      ),
    ),
  )
  const ticks = niceTicks(maxSeconds)
  const scale = (/** @type {number} */ seconds) =>
    left + (seconds / (ticks.at(-1) ?? maxSeconds)) * (width - left - right)
  /** @type {string[]} */
  const body = [
    `<text x="${left}" y="20" font-size="14">Each node's stages from power-on to the installed system's boot, N = ${runs[0]?.n ?? '?'}</text>`,
  ]
  let y = top
  runs.forEach((run, index) => {
    const t0 = starts[index] ?? 0
    body.push(
      `<text x="${left}" y="${y + 4}" font-weight="bold">${run.transport === 'torrent' ? 'swarm (si.dl-protocol=torrent)' : 'plain HTTP (si.dl-protocol=http)'}</text>`,
    )
    y += 12
    const panelTop = y
    for (const node of run.nodes) {
      body.push(
        `<text x="${left - 6}" y="${y + rowHeight - 4}" text-anchor="end">${node.node}</text>`,
      )
      for (const stage of node.stages) {
        const x1 = scale((stage.start - t0) / 1000)
        const x2 = scale((stage.end - t0) / 1000)
        body.push(
          `<rect x="${x1.toFixed(1)}" y="${y + 2}" width="${Math.max(0.5, x2 - x1).toFixed(1)}" height="${rowHeight - 4}" fill="${STAGE_COLORS[stage.stage]}"><title>${node.node} ${STAGE_NAMES[stage.stage]}: ${f1((stage.end - stage.start) / 1000)} s</title></rect>`,
        )
      }
      y += rowHeight
    }
    for (const tick of ticks) {
      body.push(
        `<line x1="${scale(tick)}" y1="${panelTop}" x2="${scale(tick)}" y2="${y}" stroke="#ddd"/>`,
        `<text x="${scale(tick)}" y="${y + 14}" text-anchor="middle">${tick}</text>`,
      )
    }
    y += panelGap
  })
  body.push(
    `<text x="${(left + width - right) / 2}" y="${y - 8}" text-anchor="middle">seconds since power-on</text>`,
  )
  DEPLOY_STAGES.forEach((stage, index) => {
    const ly = top + index * 18
    body.push(
      `<rect x="${width - right + 12}" y="${ly}" width="14" height="12" fill="${STAGE_COLORS[stage]}"/>`,
      `<text x="${width - right + 32}" y="${ly + 10}">${STAGE_NAMES[stage]}</text>`,
    )
  })
  return svg(width, Math.max(y, top + DEPLOY_STAGES.length * 18 + 20), body)
}

/**
 * The share of nodes booted into the installed system (solid) and holding the verified
 * archive (dashed) against seconds since power-on, one line per transport.
 * @param {BenchRun[]} runs
 */
function plotCompletion(runs) {
  const width = 640
  const height = 400
  const m = { l: 60, r: 170, t: 36, b: 48 }
  const series = runs.flatMap((run) => {
    const t0 = Math.min(...run.nodes.map((node) => node.poweredOn))
    const steps = (/** @type {number[]} */ times) => {
      const sorted = times.sort((a, b) => a - b)
      /** @type {[number, number][]} */
      const points = [[0, 0]]
      sorted.forEach((time, index) => {
        points.push([time, index / run.n], [time, (index + 1) / run.n])
      })
      return points
    }
    const booted = run.nodes.flatMap((node) => (node.booted ? [(node.booted - t0) / 1000] : []))
    const downloaded = run.nodes.flatMap((node) => {
      const verify = node.stages.find((stage) => stage.stage === 'verify')
      return verify ? [(verify.start - t0) / 1000] : []
    })
    const color = TRANSPORT_COLORS[run.transport] ?? '#2ca02c'
    return [
      { name: `${run.transport}: booted`, color, dash: '', points: steps(booted) },
      { name: `${run.transport}: downloaded`, color, dash: '5,4', points: steps(downloaded) },
    ]
  })
  const maxX = Math.max(10, ...series.flatMap((line) => line.points.map((point) => point[0])))
  const ticks = niceTicks(maxX)
  const X = (/** @type {number} */ x) => m.l + (x / (ticks.at(-1) ?? maxX)) * (width - m.l - m.r)
  const Y = (/** @type {number} */ y) => height - m.b - y * (height - m.t - m.b)
  /** @type {string[]} */
  const body = [
    `<text x="${m.l}" y="20" font-size="14">Nodes done against time, N = ${runs[0]?.n ?? '?'}</text>`,
    `<line x1="${m.l}" y1="${height - m.b}" x2="${width - m.r}" y2="${height - m.b}" stroke="black"/>`,
    `<line x1="${m.l}" y1="${m.t}" x2="${m.l}" y2="${height - m.b}" stroke="black"/>`,
    `<text x="${(width - m.r + m.l) / 2}" y="${height - 10}" text-anchor="middle">seconds since power-on</text>`,
    `<text x="16" y="${(height - m.b + m.t) / 2}" transform="rotate(-90 16 ${(height - m.b + m.t) / 2})" text-anchor="middle">fraction of nodes</text>`,
  ]
  for (const tick of ticks) {
    body.push(`<text x="${X(tick)}" y="${height - m.b + 16}" text-anchor="middle">${tick}</text>`)
  }
  for (let i = 0; i <= 4; i++) {
    body.push(
      `<line x1="${m.l}" y1="${Y(i / 4)}" x2="${width - m.r}" y2="${Y(i / 4)}" stroke="#ddd"/>`,
      `<text x="${m.l - 6}" y="${Y(i / 4) + 4}" text-anchor="end">${(i / 4).toFixed(2)}</text>`,
    )
  }
  series.forEach((line, index) => {
    const d = line.points.map(
      (point, j) => `${j ? 'L' : 'M'}${X(point[0]).toFixed(1)},${Y(point[1]).toFixed(1)}`,
    )
    body.push(
      `<path d="${d.join(' ')}" fill="none" stroke="${line.color}" stroke-width="2"${line.dash ? ` stroke-dasharray="${line.dash}"` : ''}/>`,
      `<line x1="${width - m.r + 10}" y1="${m.t + 10 + index * 18}" x2="${width - m.r + 30}" y2="${m.t + 10 + index * 18}" stroke="${line.color}" stroke-width="2"${line.dash ? ` stroke-dasharray="${line.dash}"` : ''}/>`,
      `<text x="${width - m.r + 36}" y="${m.t + 14 + index * 18}">${line.name}</text>`,
    )
  })
  return svg(width, height, body)
}

/**
 * Round tick values from 0 to at least `max`.
 * @param {number} max
 */
function niceTicks(max) {
  const rough = max / 6
  const magnitude = 10 ** Math.floor(Math.log10(rough))
  const step =
    [1, 2, 5, 10].map((k) => k * magnitude).find((candidate) => candidate >= rough) ?? rough
  const ticks = []
  for (let tick = 0; tick < max + step; tick += step) ticks.push(Math.round(tick))
  return ticks
}
