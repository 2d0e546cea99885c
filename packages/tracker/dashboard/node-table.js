// The table of an image's nodes. Built for a thousand rows updated every second: each
// node's row is made once and kept; an update rewrites only the cells whose text
// changed, and re-sorting moves existing rows instead of rebuilding the table.
import { h, setAttr, setText } from './dom.js'
import { formatAgo, formatBytes, formatDuration, formatPercent, formatRate } from './format.js'
import { STATE_LABELS, STATES } from './states.js'

const STATE_ORDER = Object.fromEntries(STATES.map((state, i) => [state, i]))

// Only a node's own status posts say how many of its bytes came from the server; a peer
// known from its announces alone shows none rather than 0%.
function fromServer(node) {
  if (node.source !== 'status') return null
  return node.downloaded > 0 ? node.downloadedFromServer / node.downloaded : null
}

function nameOf(node) {
  if (node.node) return node.node
  if (node.kind === 'foreign') return 'other BitTorrent client'
  return `peer ${node.peerId.slice(16, 28)}`
}

/** The address column: the IP (a port of a client's is ephemeral and says nothing), and the MAC. */
function addressOf(node) {
  return node.address ?? '–'
}

/** Columns: header, sort value, and whether larger comes first when first clicked. */
const COLUMNS = [
  { key: 'node', label: 'Node', sort: (n) => nameOf(n) },
  { key: 'address', label: 'Address', sort: (n) => n.mac ?? n.address ?? '' },
  { key: 'state', label: 'State', sort: (n) => STATE_ORDER[n.state] + (n.stale ? 0.5 : 0) },
  { key: 'progress', label: 'Progress', sort: (n) => n.progress, desc: true },
  { key: 'down', label: 'Down', sort: (n) => n.downloadRate, desc: true, num: true },
  { key: 'up', label: 'Up', sort: (n) => n.uploadRate, desc: true, num: true },
  { key: 'server', label: 'From server', sort: (n) => fromServer(n) ?? -1, desc: true, num: true },
  { key: 'peers', label: 'Peers', sort: (n) => n.peers ?? -1, desc: true, num: true },
  { key: 'eta', label: 'ETA', sort: (n) => n.etaSeconds ?? Number.POSITIVE_INFINITY, num: true },
  { key: 'since', label: 'In state', sort: (n) => -n.stateSince, desc: true, num: true },
  { key: 'seen', label: 'Last seen', sort: (n) => -n.lastSeen, num: true },
  { key: 'error', label: 'Error', sort: (n) => n.error?.code ?? '' },
]

const FILTERS = ['all', ...STATES, 'stale']

export class NodeTable {
  /** `clock` is the server's time (epoch ms), so ages do not depend on this machine's clock. */
  constructor(container, clock) {
    this.clock = clock
    this.rows = new Map()
    this.sortKey = 'state'
    this.sortDesc = false
    this.filter = 'all'
    this.query = ''
    this.nodes = new Map()

    this.chips = new Map()
    const chips = h('div', { class: 'chips', role: 'group', 'aria-label': 'Filter by state' })
    for (const filter of FILTERS) {
      const chip = h(
        'button',
        {
          class: `chip${filter === 'all' ? ' on' : ''}`,
          type: 'button',
          'data-filter': filter,
          onclick: () => this.setFilter(filter),
        },
        h(
          'span',
          { class: filter === 'all' ? 'chip-label' : `chip-label dot-${filter}` },
          filter === 'all' ? 'All' : (STATE_LABELS[filter] ?? 'Stale'),
        ),
        h('span', { class: 'count' }, '0'),
      )
      this.chips.set(filter, chip)
      chips.append(chip)
    }
    this.search = h('input', {
      type: 'search',
      class: 'search',
      placeholder: 'Filter by name, address, peer id or error…',
      'aria-label': 'Filter nodes',
      oninput: () => {
        this.query = this.search.value.trim().toLowerCase()
        this.refresh()
      },
    })
    this.shown = h('span', { class: 'muted shown' })

    this.headers = new Map()
    const headRow = h('tr')
    for (const column of COLUMNS) {
      const th = h(
        'th',
        {
          class: `sortable${column.num ? ' num' : ''} c-${column.key}`,
          'data-sort': column.key,
          onclick: () => this.sortBy(column.key),
        },
        column.label,
      )
      this.headers.set(column.key, th)
      headRow.append(th)
    }
    this.tbody = h('tbody')
    this.empty = h('p', { class: 'empty' }, 'No node has announced or reported yet.')
    container.replaceChildren(
      h(
        'div',
        { class: 'toolbar' },
        chips,
        h('div', { class: 'toolbar-right' }, this.shown, this.search),
      ),
      h(
        'div',
        { class: 'table-wrap' },
        h('table', { class: 'grid nodes', id: 'nodes' }, h('thead', {}, headRow), this.tbody),
      ),
      this.empty,
    )
    this.#markSort()
  }

  setFilter(filter) {
    this.filter = filter
    for (const [name, chip] of this.chips) chip.classList.toggle('on', name === filter)
    this.refresh()
  }

  sortBy(key) {
    if (this.sortKey === key) this.sortDesc = !this.sortDesc
    else {
      this.sortKey = key
      this.sortDesc = COLUMNS.find((c) => c.key === key)?.desc === true
    }
    this.#markSort()
    this.refresh()
  }

  /** Takes the current nodes and the peer ids that changed (null: all of them). */
  update(nodes, changed) {
    this.nodes = nodes
    const now = this.clock()
    for (const [peerId, node] of nodes) {
      let row = this.rows.get(peerId)
      if (row === undefined) {
        row = this.#makeRow(node)
        this.rows.set(peerId, row)
      }
      if (changed === null || changed.has(peerId) || row.node !== node) this.#fill(row, node, now)
    }
    for (const [peerId, row] of this.rows) {
      if (!nodes.has(peerId)) {
        row.tr.remove()
        this.rows.delete(peerId)
      }
    }
    this.refresh()
  }

  /** Filters, sorts and places the rows; refreshes the cells that age with time. */
  refresh() {
    const counts = Object.fromEntries(FILTERS.map((f) => [f, 0]))
    let others = 0
    const visible = []
    for (const row of this.rows.values()) {
      const node = row.node
      counts.all += 1
      // Another BitTorrent client is listed under All, and counted in no state: the states
      // are the nodes' installs.
      if (node.kind === 'foreign') others += 1
      else {
        counts[node.state] += 1
        if (node.stale) counts.stale += 1
      }
      if (!this.#matches(node)) continue
      visible.push(row)
    }
    for (const [filter, chip] of this.chips) setText(chip.lastChild, String(counts[filter]))

    const column = COLUMNS.find((c) => c.key === this.sortKey) ?? COLUMNS[0]
    const sign = this.sortDesc ? -1 : 1
    visible.sort((a, b) => {
      const x = column.sort(a.node)
      const y = column.sort(b.node)
      if (x < y) return -sign
      if (x > y) return sign
      return nameOf(a.node).localeCompare(nameOf(b.node), undefined, { numeric: true })
    })
    // Move rows into order, touching only those out of place.
    let cursor = this.tbody.firstChild
    const now = this.clock()
    for (const row of visible) {
      if (row.tr !== cursor) this.tbody.insertBefore(row.tr, cursor)
      else cursor = cursor.nextSibling
      this.#fillTimes(row, now)
    }
    while (cursor) {
      const next = cursor.nextSibling
      cursor.remove()
      cursor = next
    }
    const nodes = counts.all - others
    const total =
      `${nodes} ${nodes === 1 ? 'node' : 'nodes'}` +
      (others === 0 ? '' : ` and ${others} other ${others === 1 ? 'client' : 'clients'}`)
    setText(this.shown, visible.length === counts.all ? total : `${visible.length} of ${total}`)
    this.empty.hidden = this.rows.size > 0
  }

  #matches(node) {
    if (this.filter !== 'all') {
      if (node.kind === 'foreign') return false
      if (this.filter === 'stale' ? !node.stale : node.state !== this.filter) return false
    }
    if (!this.query) return true
    const haystack = `${nameOf(node)} ${node.client ?? ''} ${node.address ?? ''} ${node.mac ?? ''} ${node.peerId} ${node.error?.code ?? ''} ${node.error?.message ?? ''}`
    return haystack.toLowerCase().includes(this.query)
  }

  #markSort() {
    for (const [key, th] of this.headers) {
      th.classList.toggle('sorted', key === this.sortKey)
      th.classList.toggle('desc', key === this.sortKey && this.sortDesc)
      th.setAttribute(
        'aria-sort',
        key === this.sortKey ? (this.sortDesc ? 'descending' : 'ascending') : 'none',
      )
    }
  }

  #makeRow(node) {
    const cells = {}
    const tr = h('tr', { 'data-peer-id': node.peerId })
    for (const column of COLUMNS) {
      cells[column.key] = h('td', { class: `${column.num ? 'num ' : ''}c-${column.key}` })
      tr.append(cells[column.key])
    }
    cells.name = h('div', { class: 'name' })
    cells.sub = h('div', { class: 'muted mono' })
    cells.node.append(cells.name, cells.sub)
    cells.ip = h('div', { class: 'mono' })
    cells.mac = h('div', { class: 'muted mono' })
    cells.address.append(cells.ip, cells.mac)
    cells.pill = h('span', { class: 'pill' })
    cells.state.append(cells.pill)
    cells.fill = h('div', { class: 'fill' })
    cells.pct = h('span', { class: 'pct' })
    cells.progress.append(h('div', { class: 'bar' }, cells.fill), cells.pct)
    return { tr, cells, node }
  }

  #fill(row, node, now) {
    const { tr, cells } = row
    row.node = node
    setAttr(tr, 'data-state', node.state)
    setAttr(tr, 'data-progress', node.progress.toFixed(4))
    tr.classList.toggle('is-stale', node.stale)
    tr.classList.toggle('is-failed', node.state === 'failed')
    tr.classList.toggle('is-foreign', node.kind === 'foreign')
    setText(cells.name, nameOf(node))
    // The first 8 bytes are the client's prefix (-IS01C0-), the same for every node; another
    // client is named by its peer id (aria2, libtorrent) where it can be.
    setText(
      cells.sub,
      node.kind === 'foreign'
        ? (node.client ?? node.peerId.slice(0, 16))
        : node.peerId.slice(16, 28),
    )
    setAttr(cells.sub, 'title', node.peerId)
    setText(cells.ip, addressOf(node))
    setText(cells.mac, node.mac ?? '')
    setAttr(cells.address, 'title', node.port ? `BitTorrent port ${node.port}` : '')
    setAttr(cells.pill, 'class', `pill s-${node.state}${node.stale ? ' stale' : ''}`)
    setText(cells.pill, `${STATE_LABELS[node.state]}${node.stale ? ' · stale' : ''}`)
    setAttr(cells.fill, 'style', `width:${(node.progress * 100).toFixed(1)}%`)
    setAttr(cells.fill, 'class', `fill s-${node.state}`)
    setText(cells.pct, formatPercent(node.progress))
    setAttr(
      cells.progress,
      'title',
      node.size ? `${formatBytes(node.downloaded)} of ${formatBytes(node.size)}` : '',
    )
    setText(cells.down, formatRate(node.downloadRate))
    setText(cells.up, formatRate(node.uploadRate))
    setText(cells.server, formatPercent(fromServer(node)))
    setText(cells.peers, node.peers === null ? '–' : String(node.peers))
    setText(cells.error, node.error ? `${node.error.code}: ${node.error.message}` : '')
    setAttr(cells.error, 'title', node.error ? `${node.error.code}: ${node.error.message}` : '')
    this.#fillTimes(row, now)
  }

  #fillTimes(row, now) {
    const { node, cells } = row
    setText(cells.eta, formatDuration(node.etaSeconds))
    setText(cells.since, formatDuration((now - node.stateSince) / 1000))
    setText(cells.seen, formatAgo(node.lastSeen, now))
  }
}
