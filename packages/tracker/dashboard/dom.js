// A small helper to build DOM nodes. Everything a node reports (its name, its error)
// goes in as text, never as markup, so a node cannot inject anything into the page.

/**
 * h('div', { class: 'tile' }, 'text', childNode) → <div class="tile">text…</div>
 * Attributes starting with "on" are event listeners.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag)
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue
    if (name.startsWith('on')) el.addEventListener(name.slice(2), value)
    else el.setAttribute(name, value === true ? '' : String(value))
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue
    el.append(child instanceof Node ? child : document.createTextNode(String(child)))
  }
  return el
}

/** Sets text only when it changed: with a thousand rows, untouched cells cost nothing. */
export function setText(el, text) {
  if (el.textContent !== text) el.textContent = text
}

export function setAttr(el, name, value) {
  const text = String(value)
  if (el.getAttribute(name) !== text) el.setAttribute(name, text)
}
