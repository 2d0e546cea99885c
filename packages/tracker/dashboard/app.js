// The dashboard's entry: routes between the image list (#/) and an image (#/images/NAME),
// follows the server's live events, and redraws at most once an animation frame.
import { h, setAttr, setText } from './dom.js'
import { renderImageList } from './image-list.js'
import { ImageView } from './image-view.js'
import { LiveStore } from './live.js'

const main = document.getElementById('main')
const crumbs = document.getElementById('crumbs')
const live = document.getElementById('live')

let view = null
let pending = false
/** The servers serving these images (`/api/servers`), asked every 10 s. */
let servers = []

async function fetchServers() {
  try {
    const answer = await fetch('/api/servers', { cache: 'no-store' })
    if (!answer.ok) return
    servers = (await answer.json()).servers ?? []
    schedule()
  } catch {
    // The live indicator already says when the server is unreachable.
  }
}

const store = new LiveStore({
  onData: () => schedule(),
  onStatus: (status) => {
    setAttr(live, 'data-state', status)
    setText(live.querySelector('.live-text'), status)
  },
})

function imageOfHash() {
  const match = /^#\/images\/([^/]+)/.exec(location.hash)
  if (!match) return null
  try {
    return decodeURIComponent(match[1])
  } catch {
    return null
  }
}

function route() {
  const image = imageOfHash()
  view?.destroy?.()
  view = image === null ? null : new ImageView(main, image, () => store.serverNow())
  document.title = image === null ? 'imageswarm' : `${image} · imageswarm`
  // replaceChildren takes nodes and strings only: a null would become the text "null".
  crumbs.replaceChildren(
    h('a', { href: '#/' }, 'Images'),
    ...(image === null ? [] : [h('span', { class: 'sep' }, '/'), h('span', {}, image)]),
  )
  if (image === null) main.replaceChildren(h('p', { class: 'empty' }, 'Loading…'))
  store.follow(image)
}

// However often updates come, the page draws once per frame at most.
function schedule() {
  if (pending) return
  pending = true
  requestAnimationFrame(() => {
    pending = false
    if (view === null) renderImageList(main, store.summaries, servers)
    else view.update(store)
  })
}

window.addEventListener('hashchange', route)
// Durations such as "in state" and "last seen" age between updates too.
setInterval(() => view?.table?.refresh(), 1000)
setInterval(fetchServers, 10_000)
route()
fetchServers()
