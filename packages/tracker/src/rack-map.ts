import { readFileSync } from 'node:fs'
import { BlockList, isIP } from 'node:net'
import { ImageSwarmError, RACK_PATTERN } from '@imageswarm/core'

interface RackRule {
  rack: string
  /** An address rule (`10.1.3.0/24`, `fd00:1:3::/64`, or one address). */
  subnet?: BlockList
  /** A node name rule (`n03*`, `rack3-node??`). */
  name?: RegExp
}

/**
 * The server's map of nodes to racks (`--rack-map FILE`), for nodes that do not say
 * their rack (`imageswarm.rack=`): one rule per line, `SUBNET RACK` or `NAME RACK`,
 * where NAME may use `*` and `?`; `#` starts a comment. The first rule that matches a
 * node's address or name wins.
 */
export class RackMap {
  readonly #rules: RackRule[]

  constructor(rules: RackRule[]) {
    this.#rules = rules
  }

  /** Parses a map's text; `E_CONFIG_INVALID` names the file and line of a bad rule. */
  static parse(text: string, file = 'rack map'): RackMap {
    const rules: RackRule[] = []
    for (const [at, raw] of text.split('\n').entries()) {
      const line = raw.replace(/#.*/, '').trim()
      if (line === '') continue
      const fields = line.split(/\s+/)
      const bad = (why: string) =>
        new ImageSwarmError('E_CONFIG_INVALID', `${file} line ${at + 1}: ${why}`, {
          operation: 'read rackMap',
          path: file,
          hint: 'one rule per line: SUBNET RACK (10.1.3.0/24 r3) or NODE-NAME RACK (n03* r3)',
        })
      if (fields.length !== 2) throw bad(`expected two fields, found ${fields.length}`)
      const [match, rack] = fields as [string, string]
      if (!RACK_PATTERN.test(rack))
        throw bad(`"${rack}" is not a rack name (letters, digits, ._:-)`)
      const subnet = subnetOf(match)
      if (subnet === null) throw bad(`"${match}" is not a subnet`)
      rules.push(subnet ? { rack, subnet } : { rack, name: globToRegExp(match) })
    }
    return new RackMap(rules)
  }

  /** Reads and parses the map file. */
  static read(file: string): RackMap {
    let text: string
    try {
      text = readFileSync(file, 'utf8')
    } catch (err) {
      throw new ImageSwarmError('E_CONFIG_INVALID', `cannot read the rack map ${file}`, {
        operation: 'read rackMap',
        path: file,
        hint: 'check --rack-map (rackMap)',
        cause: err,
      })
    }
    return RackMap.parse(text, file)
  }

  get size(): number {
    return this.#rules.length
  }

  /** The rack of a node at `address` (and called `name`, when known); undefined if no
   * rule matches. */
  rackOf(address: string, name?: string): string | undefined {
    const plain = address.startsWith('::ffff:') ? address.slice(7) : address
    const family = isIP(plain) === 6 ? 'ipv6' : 'ipv4'
    for (const rule of this.#rules) {
      if (rule.subnet && isIP(plain) && rule.subnet.check(plain, family)) return rule.rack
      if (rule.name && name !== undefined && rule.name.test(name)) return rule.rack
    }
    return undefined
  }
}

/** A BlockList for `a.b.c.d/n`, `x::/n` or one address; undefined when `text` is no
 * address at all (a name rule); null when it looks like a subnet but is not one. */
function subnetOf(text: string): BlockList | undefined | null {
  const [address = '', bits, ...rest] = text.split('/')
  const family = isIP(address)
  if (family === 0) return bits === undefined ? undefined : null
  const max = family === 4 ? 32 : 128
  // Decimal digits only: `Number('')` is 0, so `10.1.3.0/` would be a /0, every address.
  const prefix = bits === undefined ? max : /^\d+$/.test(bits) ? Number(bits) : Number.NaN
  if (rest.length > 0 || !Number.isInteger(prefix) || prefix < 0 || prefix > max) return null
  const list = new BlockList()
  list.addSubnet(address, prefix, family === 4 ? 'ipv4' : 'ipv6')
  return list
}

function globToRegExp(glob: string): RegExp {
  const body = glob
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.')
  return new RegExp(`^${body}$`)
}
