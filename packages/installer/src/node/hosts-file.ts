/** What an /etc/hosts without one starts with (Debian's netcfg writes the same). */
const DEFAULT_HOSTS = [
  '127.0.0.1\tlocalhost',
  '',
  '# The following lines are desirable for IPv6 capable hosts',
  '::1     localhost ip6-localhost ip6-loopback',
  'ff02::1 ip6-allnodes',
  'ff02::2 ip6-allrouters',
]

/**
 * The image's /etc/hosts (or Debian's default one) with the node's name on `127.0.1.1`,
 * as Debian's installer writes it: the line follows `127.0.0.1`, and replaces any
 * `127.0.1.1` line the image had (the golden client's name).
 *
 * @example hostsWithName('127.0.0.1\tlocalhost\n127.0.1.1\tgolden\n', 'node1', 'lab')
 *   // '127.0.0.1\tlocalhost\n127.0.1.1\tnode1.lab\tnode1\n'
 */
export function hostsWithName(
  existing: string | undefined,
  hostname: string,
  domain?: string,
): string {
  const ours = `127.0.1.1\t${domain ? `${hostname}.${domain}\t` : ''}${hostname}`
  const lines = (existing ?? `${DEFAULT_HOSTS.join('\n')}\n`).split('\n')
  if (lines.at(-1) === '') lines.pop()
  const kept = lines.filter((line) => !/^\s*127\.0\.1\.1\s/.test(line))
  const loopback = kept.findIndex((line) => /^\s*127\.0\.0\.1\s/.test(line))
  kept.splice(loopback === -1 ? 0 : loopback + 1, 0, ours)
  return `${kept.join('\n')}\n`
}
