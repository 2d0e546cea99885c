import { readFile } from 'node:fs/promises'

/** Where the ramdisk's udhcpc script (and imageswarm-lib.sh's record_network) writes the lease. */
export const DHCP_LEASE_FILE = '/run/imageswarm/dhcp.env'

/** What the node's DHCP lease said, as far as the installer uses it. */
export interface DhcpLease {
  interface?: string
  mac?: string
  ip?: string
  prefix?: number
  router?: string
  hostname?: string
  domain?: string
}

/**
 * Parses `KEY=value` lines (DHCP_INTERFACE, DHCP_MAC, DHCP_IP, DHCP_PREFIX, DHCP_ROUTER,
 * DHCP_HOSTNAME, DHCP_DOMAIN, …); empty values are absent.
 *
 * @example parseDhcpLease('DHCP_MAC=52:54:00:77:00:01\nDHCP_HOSTNAME=node1\n')
 *   // { mac: '52:54:00:77:00:01', hostname: 'node1' }
 */
export function parseDhcpLease(text: string): DhcpLease {
  const values = new Map<string, string>()
  for (const line of text.split('\n')) {
    const match = /^(DHCP_[A-Z_]+)=(.*)$/.exec(line.trim())
    if (match?.[2]) values.set(match[1] as string, match[2])
  }
  const prefix = Number(values.get('DHCP_PREFIX'))
  const lease: DhcpLease = {}
  const set = (key: keyof DhcpLease, name: string) => {
    const value = values.get(name)
    if (value !== undefined) (lease as Record<string, string>)[key] = value
  }
  set('interface', 'DHCP_INTERFACE')
  set('mac', 'DHCP_MAC')
  set('ip', 'DHCP_IP')
  set('router', 'DHCP_ROUTER')
  set('hostname', 'DHCP_HOSTNAME')
  set('domain', 'DHCP_DOMAIN')
  if (Number.isInteger(prefix) && prefix >= 0 && prefix <= 32) lease.prefix = prefix
  return lease
}

/** The lease /init recorded; empty when there is none (an initramfs that records nothing). */
export async function readDhcpLease(path = DHCP_LEASE_FILE): Promise<DhcpLease> {
  return parseDhcpLease(await readFile(path, 'utf8').catch(() => ''))
}
