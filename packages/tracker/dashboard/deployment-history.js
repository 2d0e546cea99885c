// An image's deployments: the newest (running or finished) with its summary and export
// links, and the earlier ones the server keeps, newest first. The newest comes with every
// live update (the image's summary); the list is fetched from
// /api/images/NAME/deployments when the newest one changes.
import { h, setAttr, setText } from './dom.js'
import { formatBytes, formatDuration } from './format.js'

function exportLinks(image, id) {
  const base = `/api/images/${encodeURIComponent(image)}/deployments/${id}`
  return h(
    'span',
    { class: 'exports' },
    h('a', { class: 'export-csv', href: `${base}.csv`, download: '' }, 'CSV'),
    ' · ',
    h('a', { class: 'export-json', href: `${base}.json`, download: '' }, 'JSON'),
  )
}

function when(epochMs) {
  return new Date(epochMs).toLocaleString()
}

export class DeploymentHistory {
  constructor(slot, image) {
    this.image = image
    this.shownFor = undefined
    this.title = h('h2', {}, 'Deployment')
    this.state = h('span', { class: 'pill' })
    this.text = h('div', { class: 'deployment-text' }, 'No node has started installing yet.')
    this.meta = h('div', { class: 'muted' })
    this.links = h('span', {})
    this.list = h('div', {})
    this.card = h(
      'section',
      { class: 'card', id: 'deployment' },
      h('div', { class: 'card-head' }, this.title, this.state, this.links),
      this.text,
      this.meta,
      this.list,
    )
    this.state.hidden = true
    slot.replaceChildren(this.card)
  }

  /** Takes the newest deployment from the image's summary (null before the first). */
  update(deployment) {
    if (deployment === null || deployment === undefined) return
    setAttr(this.card, 'data-deployment-id', deployment.id)
    setAttr(this.card, 'data-state', deployment.state)
    setText(this.title, `Deployment ${deployment.id}`)
    this.state.hidden = false
    setAttr(
      this.state,
      'class',
      `pill ${deployment.state === 'running' ? 's-downloading' : 's-done'}`,
    )
    setText(this.state, deployment.state)
    setText(this.text, deployment.text)
    setText(
      this.meta,
      `started ${when(deployment.startedAt)}${deployment.endedAt === null ? '' : ` · ended ${when(deployment.endedAt)}`} · ${formatBytes(deployment.serverBytes)} from the server`,
    )
    if (this.links.dataset.id !== String(deployment.id)) {
      this.links.dataset.id = String(deployment.id)
      this.links.replaceChildren(exportLinks(this.image, deployment.id))
    }
    const key = `${deployment.id}:${deployment.state}`
    if (key === this.shownFor) return
    this.shownFor = key
    fetch(`/api/images/${encodeURIComponent(this.image)}/deployments`, { cache: 'no-store' })
      .then((response) => (response.ok ? response.json() : undefined))
      .then((body) => this.#renderList(body?.deployments ?? []))
      .catch(() => this.#renderList([]))
  }

  #renderList(deployments) {
    const earlier = deployments.slice(1)
    if (earlier.length === 0) {
      this.list.replaceChildren()
      return
    }
    const rows = earlier.map((d) =>
      h(
        'tr',
        { 'data-deployment': d.id },
        h('td', { class: 'num' }, String(d.id)),
        h('td', {}, when(d.startedAt)),
        h('td', { class: 'num' }, String(d.nodes)),
        h('td', { class: 'num' }, formatDuration(d.seconds)),
        h('td', {}, d.text),
        h('td', {}, exportLinks(this.image, d.id)),
      ),
    )
    this.list.replaceChildren(
      h('h3', {}, 'Earlier deployments'),
      h(
        'table',
        { class: 'grid deployments', id: 'deployments' },
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            ...['#', 'Started', 'Nodes', 'Took', 'Summary', 'Export'].map((title) =>
              h('th', {}, title),
            ),
          ),
        ),
        h('tbody', {}, ...rows),
      ),
    )
  }
}
