// One image's swarm: summary tiles, throughput and completion charts, the node table.
import { completionChart, throughputChart } from './charts.js'
import { DeploymentHistory } from './deployment-history.js'
import { h, setText } from './dom.js'
import { formatBytes, formatPercent, formatRate, shortHash } from './format.js'
import { NodeTable } from './node-table.js'
import { ACTIVE_STATES, stateBar } from './states.js'
import { VersionHistory } from './version-history.js'

export class ImageView {
  constructor(main, image, clock) {
    this.image = image
    this.clock = clock
    this.tiles = {}
    const tile = (key, label, hint) => {
      const value = h('div', { class: 'tile-value' }, '–')
      const sub = h('div', { class: 'tile-sub' }, hint ?? '')
      this.tiles[key] = { value, sub }
      return h(
        'div',
        { class: `tile t-${key}`, 'data-tile': key },
        h('div', { class: 'tile-label' }, label),
        value,
        sub,
      )
    }
    this.title = h('h1', {}, image)
    this.meta = h('div', { class: 'muted mono' })
    this.bar = h('div', { class: 'bar-slot' })
    const throughput = h('div', { class: 'chart' })
    const completion = h('div', { class: 'chart' })
    const table = h('div', {})
    const versions = h('div', {})
    const deployment = h('div', {})
    main.replaceChildren(
      h(
        'section',
        { class: 'card head-card' },
        h('div', { class: 'card-head' }, h('div', {}, this.title, this.meta)),
        h(
          'div',
          { class: 'tiles' },
          tile('nodes', 'Nodes'),
          tile('installed', 'Installed'),
          tile('active', 'In progress'),
          tile('failed', 'Failed'),
          tile('throughput', 'Throughput'),
          tile('offload', 'From peers'),
          tile('delivered', 'Delivered'),
        ),
        this.bar,
      ),
      deployment,
      h(
        'div',
        { class: 'charts' },
        h('section', { class: 'card' }, h('h2', {}, 'Throughput by source'), throughput),
        h('section', { class: 'card' }, h('h2', {}, 'Completion'), completion),
      ),
      h('section', { class: 'card' }, h('h2', {}, 'Nodes'), table),
      versions,
    )
    this.versions = new VersionHistory(versions, image)
    this.deployment = new DeploymentHistory(deployment, image)
    this.throughput = throughputChart(throughput)
    this.completion = completionChart(completion)
    this.table = new NodeTable(table, () => this.clock())
    this.missing = false
  }

  update(store) {
    const summary = store.summaries.find((s) => s.image === this.image)
    if (summary === undefined) {
      setText(this.meta, 'this image is not published on the server (any more)')
      return
    }
    this.versions.refresh(summary.infoHash)
    this.deployment.update(summary.deployment)
    setText(
      this.meta,
      `infohash ${shortHash(summary.infoHash)}${summary.size === null ? '' : ` · archive ${formatBytes(summary.size)}`} · tracker: ${summary.seeders} seeders, ${summary.leechers} leechers, ${summary.completed} completed`,
    )
    const s = summary.states
    const installed = s.seeding + s.done
    const active = ACTIVE_STATES.reduce((sum, state) => sum + s[state], 0)
    this.#set(
      'nodes',
      String(summary.nodes),
      [
        summary.stale > 0 ? `${summary.stale} stale` : 'all heard from lately',
        summary.foreign > 0
          ? `${summary.foreign} other BitTorrent ${summary.foreign === 1 ? 'client' : 'clients'}`
          : '',
      ]
        .filter(Boolean)
        .join(' · '),
    )
    this.#set(
      'installed',
      String(installed),
      summary.nodes > 0 ? formatPercent(installed / summary.nodes) : '',
    )
    const busy = ACTIVE_STATES.filter((state) => s[state] > 0)
    this.#set(
      'active',
      String(active),
      busy.map((state) => `${s[state]} ${state}`).join(' · ') || 'none',
    )
    this.#set('failed', String(s.failed), s.failed > 0 ? 'see the table' : 'none')
    this.#set(
      'throughput',
      formatRate(summary.downloadRate),
      `${formatRate(summary.serverRate)} server · ${formatRate(summary.peerRate)} peers`,
    )
    this.#set('offload', formatPercent(summary.offload), 'of bytes delivered')
    this.#set(
      'delivered',
      formatBytes(summary.delivered),
      `${formatBytes(summary.fromServer)} server · ${formatBytes(summary.fromPeers)} peers`,
    )
    this.tiles.failed.value.parentElement.classList.toggle('alert', s.failed > 0)
    this.bar.replaceChildren(stateBar(s, summary.nodes))
    this.throughput.update(store.history)
    this.completion.update(store.history)
    this.table.update(store.nodes, store.takeChanged())
  }

  #set(key, value, sub) {
    setText(this.tiles[key].value, value)
    setText(this.tiles[key].sub, sub)
  }

  destroy() {
    this.throughput.destroy()
    this.completion.destroy()
  }
}
