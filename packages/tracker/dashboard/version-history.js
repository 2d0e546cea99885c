// An image's version history (issue 16): the versions the server keeps, newest first, and
// the size of the delta a node at each one downloads to reach the newest. Read from the
// seeder's /images/NAME/versions; an image with none (encrypted, or a delta's own swarm)
// shows nothing.
import { h } from './dom.js'
import { formatBytes, shortHash } from './format.js'

export class VersionHistory {
  constructor(slot, image) {
    this.slot = slot
    this.image = image
    this.shownFor = undefined
  }

  /** Fetches the list again when the image's archive (its infohash) changed. */
  refresh(infoHash) {
    if (infoHash === this.shownFor) return
    this.shownFor = infoHash
    fetch(`/images/${encodeURIComponent(this.image)}/versions`, { cache: 'no-store' })
      .then((response) => (response.ok ? response.json() : undefined))
      .then((list) => this.#render(list))
      .catch(() => this.#render(undefined))
  }

  #render(list) {
    if (list === undefined || !Array.isArray(list.versions)) {
      this.slot.replaceChildren()
      return
    }
    const deltas = new Map(list.deltas.map((delta) => [delta.from, delta]))
    const rows = [...list.versions].reverse().map((version) => {
      const delta = deltas.get(version.version)
      return h(
        'tr',
        { 'data-version': version.version },
        h('td', { class: 'num' }, String(version.version)),
        h('td', {}, new Date(version.created).toLocaleString()),
        h('td', { class: 'num' }, formatBytes(version.size)),
        h('td', { class: 'num' }, String(version.entries)),
        h('td', { class: 'mono' }, shortHash(version.infoHash)),
        h(
          'td',
          { class: 'num' },
          version.version === list.newest
            ? 'newest'
            : delta
              ? `${formatBytes(delta.size)} (${delta.members} changed, ${delta.removals} removed)`
              : '–',
        ),
      )
    })
    this.slot.replaceChildren(
      h(
        'section',
        { class: 'card', id: 'versions' },
        h('h2', {}, `Versions (keeping ${list.keep})`),
        h(
          'table',
          { class: 'grid versions' },
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              ...['Version', 'Published', 'Archive', 'Entries', 'Infohash', 'Update to newest'].map(
                (title) => h('th', {}, title),
              ),
            ),
          ),
          h('tbody', {}, ...rows),
        ),
      ),
    )
  }
}
