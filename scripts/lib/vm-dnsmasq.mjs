// @ts-check
// The site's DHCP server in the test network: Debian's dnsmasq-base binary, DHCP only, on the
// bridge, handing iPXE the URL of its boot script. docs/network-boot.md has the same
// settings as a dnsmasq.conf and as ISC dhcpd's syntax.
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { FileTail } from './vm-console.mjs'

/**
 * A node with a fixed address and name (dnsmasq's `dhcp-host=MAC,IP,NAME`).
 * @typedef {{ mac: string, ip: string, hostname: string }} FixedHost
 */

/**
 * A DHCPACK dnsmasq logged: the address is the node's.
 * @typedef {{ t: number, iface: string, ip: string, mac: string, hostname: string | undefined }} DhcpAck
 */

/**
 * @typedef {object} DnsmasqOptions
 * @property {string} bridge
 * @property {string} prefix the /24's first three octets
 * @property {string} dir where the lease file, log and PID file go
 * @property {FixedHost[]} [hosts]
 * @property {string} [bootUrl] the boot file name given to iPXE (only to iPXE: user class "iPXE")
 * @property {boolean} [routerAdvertisements] announce the bridge's IPv6 prefix (default true):
 *   Debian's iPXE (1.0.0+git-20190125) waits about 15 s for IPv6 autoconfiguration before it
 *   fetches the boot file on a network without router advertisements (measured here: DHCPACK
 *   at 12:32:01, boot script fetched at 12:32:18; with them, both in the same second)
 * @property {boolean} [skipProxyDhcpWait] send iPXE's no-pxedhcp option (default true): without
 *   it iPXE waits for ProxyDHCP offers that no server here sends (measured: DHCPDISCOVER at
 *   12:31:05, DHCPREQUEST at 12:31:09; with it, the same second)
 * @property {string[]} [extraArgs] more dnsmasq options (a TFTP root, more tags)
 */

/**
 * dnsmasq's command line for the test network.
 * @param {DnsmasqOptions} options
 */
export function dnsmasqArgs(options) {
  const { bridge, prefix, dir } = options
  return [
    // Nothing from /etc/dnsmasq.conf or /etc/dnsmasq.d: this instance is the test's alone.
    '--conf-file=/dev/null',
    '--keep-in-foreground',
    // DHCP only: no DNS server, so nothing else on the host is disturbed.
    '--port=0',
    '--bind-interfaces',
    `--interface=${bridge}`,
    '--dhcp-authoritative',
    `--dhcp-range=${prefix}.100,${prefix}.199,255.255.255.0,1h`,
    `--dhcp-leasefile=${join(dir, 'leases')}`,
    `--log-facility=${join(dir, 'dnsmasq.log')}`,
    '--log-dhcp',
    `--pid-file=${join(dir, 'dnsmasq.pid')}`,
    ...(options.hosts ?? []).map((host) => `--dhcp-host=${host.mac},${host.ip},${host.hostname}`),
    // iPXE says who it is in its DHCP user class (option 77); firmware without iPXE would get
    // an iPXE binary over TFTP instead (docs/network-boot.md).
    '--dhcp-userclass=set:ipxe,iPXE',
    ...(options.bootUrl ? [`--dhcp-boot=tag:ipxe,${options.bootUrl}`] : []),
    ...(options.skipProxyDhcpWait === false ? [] : ['--dhcp-option=tag:ipxe,encap:175,176,1b']),
    ...(options.routerAdvertisements === false
      ? []
      : ['--enable-ra', `--dhcp-range=::,constructor:${bridge},ra-only`]),
    ...(options.extraArgs ?? []),
  ]
}

/**
 * Reads DHCPACK lines from dnsmasq's log.
 * @example parseDhcpAcks([{ t: 0, text: 'Dec  3 12:31:09 dnsmasq-dhcp[21364]: 1945006451 DHCPACK(br0) 10.78.0.11 52:54:00:12:34:01 node1' }])
 *   // → [{ t: 0, iface: 'br0', ip: '10.78.0.11', mac: '52:54:00:12:34:01', hostname: 'node1' }]
 * @param {{ t: number, text: string }[]} lines
 * @returns {DhcpAck[]}
 */
export function parseDhcpAcks(lines) {
  /** @type {DhcpAck[]} */
  const acks = []
  for (const line of lines) {
    const match = /DHCPACK\(([^)]+)\) (\d+\.\d+\.\d+\.\d+) ([0-9a-f:]{17})(?: (\S+))?/i.exec(
      line.text,
    )
    if (!match) continue
    acks.push({
      t: line.t,
      iface: /** @type {string} */ (match[1]),
      ip: /** @type {string} */ (match[2]),
      mac: /** @type {string} */ (match[3]).toLowerCase(),
      hostname: match[4],
    })
  }
  return acks
}

/**
 * @typedef {object} Dnsmasq
 * @property {import('./vm-process.mjs').ManagedProcess} process
 * @property {string[]} args
 * @property {FileTail} log dnsmasq's log, followed
 * @property {string} leasesPath
 * @property {() => DhcpAck[]} acks every DHCPACK so far
 * @property {(mac: string, options: { timeoutMs: number, from?: number }) => Promise<DhcpAck>} waitForAck
 * @property {() => Promise<{ expires: number, mac: string, ip: string, hostname: string }[]>} leases
 *   dnsmasq's lease file
 * @property {() => Promise<void>} stop
 */

/**
 * Starts dnsmasq inside the network's namespace and resolves once it has bound its DHCP
 * socket to the bridge. It is stopped at the network's teardown, or by `stop()`.
 * @param {import('./vm-network.mjs').TestNetwork} network
 * @param {Omit<DnsmasqOptions, 'bridge' | 'prefix' | 'dir'>} options
 * @returns {Promise<Dnsmasq>}
 */
export async function startDnsmasq(network, options) {
  const dir = network.dir
  const args = dnsmasqArgs({ ...options, bridge: network.bridge, prefix: network.prefix, dir })
  const log = new FileTail(join(dir, 'dnsmasq.log'))
  const dnsmasq = await network.spawn('dnsmasq', 'dnsmasq', args)
  dnsmasq.exited.then(() => log.stop())
  const exited = dnsmasq.exited.then(
    ({ code, signal }) => `dnsmasq exited (${signal ?? code}): ${dnsmasq.recentOutput()}`,
  )
  try {
    await log.waitFor(
      new RegExp(`DHCP, sockets bound exclusively to interface ${network.bridge}`),
      {
        timeoutMs: 30_000,
        describe: 'dnsmasq',
        abandon: exited,
      },
    )
  } catch (error) {
    await log.stop()
    await dnsmasq.stop()
    throw error
  }
  return {
    process: dnsmasq,
    args,
    log,
    leasesPath: join(dir, 'leases'),
    acks: () => parseDhcpAcks(log.lines),
    async waitForAck(mac, { timeoutMs, from = 0 }) {
      const line = await log.waitFor(
        new RegExp(`DHCPACK\\(${network.bridge}\\) \\S+ ${mac.toLowerCase()}`, 'i'),
        { timeoutMs, from, describe: `DHCPACK for ${mac}`, abandon: exited },
      )
      return /** @type {DhcpAck} */ (parseDhcpAcks([line])[0])
    },
    async leases() {
      const text = await readFile(join(dir, 'leases'), 'utf8').catch(() => '')
      return text
        .split('\n')
        .filter(Boolean)
        .map((line) => {
          const [expires, mac, ip, hostname] = line.split(' ')
          return {
            expires: Number(expires),
            mac: mac ?? '',
            ip: ip ?? '',
            hostname: hostname ?? '*',
          }
        })
    },
    async stop() {
      await dnsmasq.stop()
      await log.stop()
    },
  }
}
