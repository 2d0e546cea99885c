// The start page: every published image with its swarm at a glance.
import { h, setText } from './dom.js'
import { formatBytes, formatPercent, formatRate, shortHash } from './format.js'
import { STATES, stateBar } from './states.js'

export function renderImageList(main, summaries, servers = []) {
  if (!updateRows(main, summaries)) main.replaceChildren(imagesCard(summaries))
  renderServers(main, servers)
}

function imagesCard(summaries) {
  const rows = summaries.map(imageRow)
  return h(
    'section',
    { class: 'card' },
    h(
      'div',
      { class: 'card-head' },
      h('h1', {}, 'Images'),
      h('span', { class: 'muted' }, `${summaries.length} published on this server`),
    ),
    summaries.length === 0
      ? h('p', { class: 'empty' }, 'No image is published yet.')
      : h(
          'table',
          { class: 'grid images' },
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              h('th', {}, 'Image'),
              h('th', { class: 'num' }, 'Size'),
              h('th', {}, 'Nodes by state'),
              h('th', { class: 'num', title: 'seeding or done / all nodes' }, 'Installed'),
              h('th', { class: 'num', title: 'from the tracker' }, 'Seeders / leechers'),
              h('th', { class: 'num' }, 'Throughput'),
              h(
                'th',
                { class: 'num', title: 'share of bytes that came from other nodes' },
                'From peers',
              ),
              h('th', { class: 'num' }, 'Delivered'),
              h('th', {}, 'Last deployment'),
            ),
          ),
          h('tbody', {}, rows),
        ),
  )
}

/**
 * The servers serving these images (a primary and its mirrors, issue 21), when there is
 * more than this one: nodes announce to every one and report to each, so every server's
 * page shows the whole swarm.
 */
function renderServers(main, servers) {
  const card = main.querySelector('section.servers')
  if (servers.length < 2) {
    card?.remove()
    return
  }
  const next = h(
    'section',
    { class: 'card servers' },
    h(
      'div',
      { class: 'card-head' },
      h('h1', {}, 'Servers'),
      h('span', { class: 'muted' }, `${servers.length} serve these images; nodes use them all`),
    ),
    h(
      'table',
      { class: 'grid' },
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          h('th', {}, 'Server'),
          h('th', {}, 'Role'),
          h('th', { class: 'num' }, 'Images'),
        ),
      ),
      h(
        'tbody',
        {},
        servers.map((server) =>
          h(
            'tr',
            { 'data-server': server.url },
            h('td', { class: 'mono' }, server.url),
            h('td', {}, server.role),
            h('td', { class: 'num' }, String(server.images.length)),
          ),
        ),
      ),
    ),
  )
  if (card) card.replaceWith(next)
  else main.append(next)
}

/**
 * Updates the rows in place when the same images are listed in the same order; false
 * when the table must be built anew. Each image's name cell (its link) stays the same
 * element: a table rebuilt every second would otherwise, now and then, swallow a click
 * whose press and release straddle a redraw.
 */
function updateRows(main, summaries) {
  const body = main.querySelector('table.images tbody')
  if (body === null || body.rows.length !== summaries.length) return false
  const rows = [...body.rows]
  if (rows.some((row, i) => row.dataset.image !== summaries[i].image)) return false
  for (const [i, row] of rows.entries()) {
    const summary = summaries[i]
    const [nameCell] = row.cells
    // Republished under the same name, an image has a new infohash.
    setText(nameCell.querySelector('.mono'), shortHash(summary.infoHash))
    row.replaceChildren(nameCell, ...[...imageRow(summary).cells].slice(1))
  }
  return true
}

function imageRow(s) {
  const href = `#/images/${encodeURIComponent(s.image)}`
  const installed = s.states.seeding + s.states.done
  return h(
    'tr',
    { 'data-image': s.image },
    h(
      'td',
      {},
      h('a', { class: 'image-name', href }, s.image),
      h('div', { class: 'muted mono' }, shortHash(s.infoHash)),
    ),
    h('td', { class: 'num' }, s.size === null ? '–' : formatBytes(s.size)),
    h(
      'td',
      { class: 'wide' },
      stateBar(s.states, s.nodes),
      h(
        'div',
        { class: 'legend-line' },
        STATES.filter((state) => s.states[state] > 0).map((state) =>
          h('span', { class: `key s-${state}` }, `${s.states[state]} ${state}`),
        ),
        s.stale > 0 ? h('span', { class: 'key stale-key' }, `${s.stale} stale`) : null,
        s.nodes === 0 ? h('span', { class: 'muted' }, 'no nodes yet') : null,
      ),
    ),
    h('td', { class: 'num' }, `${installed} / ${s.nodes}`),
    h('td', { class: 'num' }, `${s.seeders} / ${s.leechers}`),
    h('td', { class: 'num' }, formatRate(s.downloadRate)),
    h('td', { class: 'num' }, formatPercent(s.offload)),
    h('td', { class: 'num' }, formatBytes(s.delivered)),
    h(
      'td',
      { class: 'deployment-cell' },
      s.deployment ? `#${s.deployment.id} ${s.deployment.state}: ${s.deployment.text}` : '–',
    ),
  )
}
