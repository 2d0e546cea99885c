import { isIP } from 'node:net'

/**
 * The host name `/etc/hosts`-format text gives an address: the first name on the first
 * line for exactly that address, cut at the first dot (SystemImager's
 * `get_hostname_by_hosts_file`, reading `scripts/hosts`, a copy of the server's
 * /etc/hosts). Comments (`#` to the end of the line) are ignored. IPv6 addresses are
 * compared in their canonical form; an IPv4-mapped one (`::ffff:10.0.0.5`) as IPv4.
 *
 * @example hostnameFromHosts('10.0.0.5  node5.cluster node5\n', '10.0.0.5') // 'node5'
 */
export function hostnameFromHosts(text: string, address: string): string | undefined {
  const wanted = canonicalAddress(address)
  if (wanted === undefined) return undefined
  for (const raw of text.split('\n')) {
    const [fields = ''] = raw.split('#')
    const [ip, name] = fields.trim().split(/\s+/)
    if (ip === undefined || name === undefined) continue
    if (canonicalAddress(ip) === wanted) return shortHostname(name)
  }
  return undefined
}

/** A host name without its domain: `node5.cluster` → `node5`. */
export function shortHostname(name: string): string {
  return name.split('.')[0] ?? name
}

function canonicalAddress(address: string): string | undefined {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)
  if (mapped) return mapped[1]
  const family = isIP(address)
  if (family === 4) return address
  if (family !== 6) return undefined
  try {
    // new URL() writes an IPv6 host in its one canonical form (RFC 5952).
    return new URL(`http://[${address}]/`).hostname.toLowerCase()
  } catch {
    // A scoped address (fe80::1%eth0) is no URL host: compared as written.
    return address.toLowerCase()
  }
}
