// The install states as the page names and orders them (core's NODE_STATES).
import { h } from './dom.js'

export const STATES = [
  'waiting',
  'partitioning',
  'downloading',
  'verifying',
  'extracting',
  'configuring',
  'seeding',
  'done',
  'failed',
]

/** States of a node still on its way to installed (the completion chart's "active"). */
export const ACTIVE_STATES = [
  'waiting',
  'partitioning',
  'downloading',
  'verifying',
  'extracting',
  'configuring',
]

export const STATE_LABELS = {
  waiting: 'Waiting',
  partitioning: 'Partitioning',
  downloading: 'Downloading',
  verifying: 'Verifying',
  extracting: 'Extracting',
  configuring: 'Configuring',
  seeding: 'Seeding',
  done: 'Done',
  failed: 'Failed',
}

/** A horizontal bar with one segment per state, as wide as its share of the nodes. */
export function stateBar(states, total) {
  const bar = h('div', { class: 'state-bar', role: 'img' })
  const parts = []
  for (const state of STATES) {
    const count = states[state] ?? 0
    if (count === 0) continue
    parts.push(`${count} ${state}`)
    bar.append(
      h('span', {
        class: `seg s-${state}`,
        style: `width:${((count / Math.max(1, total)) * 100).toFixed(2)}%`,
        title: `${STATE_LABELS[state]}: ${count}`,
      }),
    )
  }
  bar.setAttribute('aria-label', parts.join(', ') || 'no nodes')
  return bar
}

/** A small coloured pill with the state's name. */
export function statePill(state, stale) {
  return h(
    'span',
    { class: `pill s-${state}${stale ? ' stale' : ''}` },
    STATE_LABELS[state] ?? state,
    stale ? ' · stale' : '',
  )
}
