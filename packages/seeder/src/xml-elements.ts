import { SaxesParser } from 'saxes'

/** One element of an XML document, with where it starts (for error messages). */
export interface XmlElement {
  name: string
  attributes: Record<string, string>
  children: XmlElement[]
  /** Non-blank text directly inside the element, if any. */
  text: string
  /** 1-based line of the element's `<`. */
  line: number
}

/** Why a document is not well-formed XML: `file:line:column: what`. */
export class XmlSyntaxError extends Error {
  override readonly name = 'XmlSyntaxError'
}

/**
 * Reads a small XML document (a configuration file) into its element tree. The parser is
 * strict XML 1.0, as xmllint and xmlstarlet (libxml2, which SystemImager validates its
 * files with) are: an unclosed tag, a repeated attribute or a stray `&` is an error
 * naming the line and column. No entity is expanded beyond XML's five predefined ones, so
 * a document cannot make the server expand itself (`<!ENTITY a "&b;&b;…">`).
 *
 * @example readXmlElements('<config><disk dev="/dev/sda"/></config>', 'x.xml')
 *   // { name: 'config', attributes: {}, children: [{ name: 'disk', attributes: { dev: '/dev/sda' }, … }], … }
 */
export function readXmlElements(xml: string, fileName: string): XmlElement {
  const parser = new SaxesParser({ fileName, position: true, xmlns: false })
  const open: XmlElement[] = []
  let root: XmlElement | undefined
  let startLine = 1
  parser.on('error', (err) => {
    throw new XmlSyntaxError(err.message)
  })
  parser.on('opentagstart', () => {
    startLine = parser.line
  })
  parser.on('opentag', (tag) => {
    const element: XmlElement = {
      name: tag.name,
      attributes: { ...tag.attributes },
      children: [],
      text: '',
      line: startLine,
    }
    const parent = open.at(-1)
    if (parent) parent.children.push(element)
    else root = element
    open.push(element)
  })
  parser.on('closetag', () => {
    open.pop()
  })
  parser.on('text', (text) => {
    const parent = open.at(-1)
    if (parent && text.trim() !== '') parent.text += text.trim()
  })
  parser.on('cdata', (text) => {
    const parent = open.at(-1)
    if (parent && text.trim() !== '') parent.text += text.trim()
  })
  parser.write(xml).close()
  if (!root) throw new XmlSyntaxError(`${fileName}: no root element`)
  return root
}
