// The image view's two charts, drawn with uPlot (shipped with the server, no CDN):
// throughput by source, and how many nodes are installed over time.
import uPlot from '/assets/uplot.esm.js'
import { formatRate } from './format.js'
import { ACTIVE_STATES } from './states.js'

const COLORS = {
  server: '#ea580c',
  peers: '#2563eb',
  installed: '#16a34a',
  active: '#2563eb',
  failed: '#dc2626',
}

function fill(color) {
  return `${color}22`
}

const axisStyle = {
  stroke: '#64748b',
  grid: { stroke: '#e2e8f0', width: 1 },
  ticks: { stroke: '#e2e8f0', width: 1 },
  font: '11px system-ui, sans-serif',
}

function baseOptions(width, height) {
  return {
    width,
    height,
    cursor: { drag: { x: false, y: false } },
    // Labels only: values under the cursor would read "–" whenever it is off the chart.
    legend: { live: false },
    scales: { x: { time: true } },
  }
}

/** Throughput: bytes per second the server uploaded, and the nodes uploaded to each other. */
export function throughputChart(container) {
  const options = {
    ...baseOptions(container.clientWidth, 240),
    series: [
      {},
      {
        label: 'Peer to peer',
        stroke: COLORS.peers,
        fill: fill(COLORS.peers),
        width: 2,
        points: { show: false },
      },
      {
        label: 'Image server',
        stroke: COLORS.server,
        fill: fill(COLORS.server),
        width: 2,
        points: { show: false },
      },
    ],
    axes: [
      axisStyle,
      {
        ...axisStyle,
        size: 78,
        values: (_u, ticks) => ticks.map((v) => (v === 0 ? '0' : formatRate(v))),
      },
    ],
    scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(max, 1024)] } },
  }
  return chart(container, options, (h) => [h.t, h.peerRate, h.serverRate])
}

/** Completion curve: nodes installed (seeding or done), still working, and failed. */
export function completionChart(container) {
  const stepped = uPlot.paths.stepped({ align: 1 })
  const options = {
    ...baseOptions(container.clientWidth, 240),
    series: [
      {},
      {
        label: 'Installed',
        stroke: COLORS.installed,
        fill: fill(COLORS.installed),
        width: 2,
        paths: stepped,
        points: { show: false },
      },
      {
        label: 'In progress',
        stroke: COLORS.active,
        width: 1.5,
        paths: stepped,
        points: { show: false },
      },
      {
        label: 'Failed',
        stroke: COLORS.failed,
        width: 1.5,
        paths: stepped,
        points: { show: false },
      },
    ],
    axes: [axisStyle, { ...axisStyle, size: 44, values: (_u, ticks) => ticks.map(String) }],
    scales: {
      x: { time: true },
      y: { range: (_u, _min, max) => [0, Math.max(4, Math.ceil(max * 1.1))] },
    },
  }
  return chart(container, options, (h) => [
    h.t,
    h.installed,
    h.t.map((_, i) => ACTIVE_STATES.reduce((sum, state) => sum + (h[state]?.[i] ?? 0), 0)),
    h.failed,
  ])
}

function chart(container, options, columnsOf) {
  const plot = new uPlot(options, [[], [], [], []].slice(0, options.series.length), container)
  // Follow the card's width; charts drawn for the wrong width look broken.
  const resize = new ResizeObserver(() => {
    const width = container.clientWidth
    if (width > 0 && width !== plot.width) plot.setSize({ width, height: options.height })
  })
  resize.observe(container)
  return {
    update(history) {
      if (history) plot.setData(columnsOf(history))
    },
    destroy() {
      resize.disconnect()
      plot.destroy()
    },
  }
}
