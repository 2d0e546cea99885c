// The emulated cluster: one network namespace per host, each host's eth0 a veth into
// one bridge (in its own namespace, so the machine's own network is never touched),
// every link capped with htb in both directions. This kernel has no fq, fq_codel or
// netem, so fairness between flows on a capped link comes from one htb class per
// other host: a host's uplink has a class per destination, its downlink (the bridge
// port's egress) a class per source, each guaranteed rate/(hosts-1) and allowed to
// borrow up to the full rate.
import { execFileSync } from 'node:child_process'
import { existsSync, statSync } from 'node:fs'

const PREFIX = 'isb'
const SUBNET = '10.77'

function run(args, options = {}) {
  return execFileSync(args[0], args.slice(1), {
    stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    timeout: 20_000,
    ...options,
  }).toString()
}

/** `tc` commands in batch mode: one process per interface instead of one per class. */
function tcBatch(ns, lines) {
  run(['ip', 'netns', 'exec', ns, 'tc', '-force', '-batch', '-'], {
    input: `${lines.join('\n')}\n`,
  })
}

/** Whether this process may create network namespaces; `undefined` if it may, else why not. */
export function whyNoNamespaces() {
  if (process.platform !== 'linux') return 'network namespaces need Linux'
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    return 'network namespaces need root'
  }
  for (const tool of ['ip', 'tc']) {
    try {
      run([tool, '-V'])
    } catch {
      return `the ${tool} command (iproute2) is missing`
    }
  }
  const probe = `${PREFIX}-probe-${process.pid}`
  try {
    run(['ip', 'netns', 'add', probe])
    run(['ip', '-n', probe, 'link', 'add', 'p0', 'type', 'veth', 'peer', 'name', 'p1'])
    tcBatch(probe, ['qdisc add dev p0 root handle 1: htb default 1'])
    return undefined
  } catch (err) {
    return `cannot create a namespace with veth and htb: ${String(err.stderr ?? err.message).trim()}`
  } finally {
    try {
      run(['ip', 'netns', 'del', probe])
    } catch {}
  }
}

/** Parses a tc rate (`25mbit`, `1gbit`, `500kbit`) into bits per second. */
export function parseRate(rate) {
  const match = /^(\d+(?:\.\d+)?)(k|m|g)?bit$/i.exec(rate)
  if (!match) throw new Error(`bad rate ${JSON.stringify(rate)}: expected e.g. 25mbit`)
  const scale = { k: 1e3, m: 1e6, g: 1e9 }[match[2]?.toLowerCase()] ?? 1
  return Number(match[1]) * scale
}

/**
 * Brings up a cluster of `servers` server hosts (`server` at 10.77.0.1, `server2` at
 * 10.77.0.2, …) and `clients` client hosts (10.77.1.N). Returns the hosts (name, namespace,
 * address), `servers` (the server hosts), `server` (the first of them), `clients`, and
 * `destroy()`, which is safe to call more than once.
 */
export function createCluster({ clients, rate, servers = 1, tag = String(process.pid) }) {
  if (!Number.isInteger(servers) || servers < 1 || servers > 250) {
    throw new Error(`bad servers ${JSON.stringify(servers)}: expected 1 to 250`)
  }
  const bridgeNs = `${PREFIX}${tag}-br`
  const hosts = [
    ...Array.from({ length: servers }, (_, i) => ({
      name: i === 0 ? 'server' : `server${i + 1}`,
      ns: i === 0 ? `${PREFIX}${tag}-s` : `${PREFIX}${tag}-s${i + 1}`,
      ip: `${SUBNET}.0.${i + 1}`,
      port: i === 0 ? 'vs' : `vs${i + 1}`,
    })),
    ...Array.from({ length: clients }, (_, i) => ({
      name: `c${i + 1}`,
      ns: `${PREFIX}${tag}-c${i + 1}`,
      ip: `${SUBNET}.1.${i + 1}`,
      port: `vc${i + 1}`,
    })),
  ]
  const cluster = {
    hosts,
    servers: hosts.slice(0, servers),
    server: hosts[0],
    clients: hosts.slice(servers),
    bridgeNs,
    rate,
    destroy: () => destroyNamespaces([bridgeNs, ...hosts.map((h) => h.ns)]),
  }
  try {
    run(['ip', 'netns', 'add', bridgeNs])
    run(['ip', '-n', bridgeNs, 'link', 'add', 'br0', 'type', 'bridge'])
    run(['ip', '-n', bridgeNs, 'link', 'set', 'br0', 'up'])
    run(['ip', '-n', bridgeNs, 'link', 'set', 'lo', 'up'])
    for (const host of hosts) {
      run(['ip', 'netns', 'add', host.ns])
      run(['ip', '-n', host.ns, 'link', 'set', 'lo', 'up'])
      run([
        'ip',
        'link',
        'add',
        host.port,
        'netns',
        bridgeNs,
        'type',
        'veth',
        'peer',
        'name',
        'eth0',
        'netns',
        host.ns,
      ])
      run(['ip', '-n', host.ns, 'addr', 'add', `${host.ip}/16`, 'dev', 'eth0'])
      run(['ip', '-n', host.ns, 'link', 'set', 'eth0', 'up'])
      run(['ip', '-n', bridgeNs, 'link', 'set', host.port, 'master', 'br0', 'up'])
      // Segmentation offloads would hand htb 64 KiB super-packets and make the cap bursty.
      for (const [ns, dev] of [
        [host.ns, 'eth0'],
        [bridgeNs, host.port],
      ]) {
        try {
          run([
            'ip',
            'netns',
            'exec',
            ns,
            'ethtool',
            '-K',
            dev,
            'tso',
            'off',
            'gso',
            'off',
            'gro',
            'off',
          ])
        } catch {}
      }
    }
    for (const host of hosts) {
      const others = hosts.filter((h) => h !== host)
      tcBatch(host.ns, shapeCommands('eth0', rate, others, 'dst'))
      tcBatch(bridgeNs, shapeCommands(host.port, rate, others, 'src'))
    }
  } catch (err) {
    cluster.destroy()
    throw new Error(`cannot build the cluster: ${String(err.stderr ?? err.message).trim()}`)
  }
  return cluster
}

const SHAPE_PRIO = 2
const BLACK_HOLE_PRIO = 1
const BLACK_HOLE_CLASS = '1:dead'

/** htb on one interface's egress: the whole link at `rate`, one class per peer host. */
function shapeCommands(dev, rate, peers, match) {
  const bps = parseRate(rate)
  const share = Math.max(Math.floor(bps / peers.length), 8000)
  const lines = [
    `qdisc add dev ${dev} root handle 1: htb default ffff r2q 10`,
    `class add dev ${dev} parent 1: classid 1:1 htb rate ${bps}bit ceil ${bps}bit burst 15k cburst 15k quantum 1514`,
    `class add dev ${dev} parent 1:1 classid 1:ffff htb rate ${share}bit ceil ${bps}bit quantum 1514`,
  ]
  peers.forEach((peer, i) => {
    const id = (i + 2).toString(16)
    lines.push(
      `class add dev ${dev} parent 1:1 classid 1:${id} htb rate ${share}bit ceil ${bps}bit quantum 1514`,
      `qdisc add dev ${dev} parent 1:${id} handle ${id}: pfifo limit 300`,
      // Priority 1 is left to blackHolePort, whose filter must be matched first.
      `filter add dev ${dev} parent 1: protocol ip prio ${SHAPE_PRIO} u32 match ip ${match} ${peer.ip}/32 flowid 1:${id}`,
    )
  })
  return lines
}

/**
 * Black-holes one TCP port of one host: every packet the host sends from that port is
 * dropped on its eth0, so connections to it time out as if the service hung, while the
 * host's other ports keep working (`blackHolePort(cluster, cluster.server, 6969)` loses the
 * server's tracker, manifests and web seed; its BitTorrent seeder keeps serving). This
 * kernel has no tc actions (act_gact) and no netfilter, so the filter sends the packets to an
 * htb class whose queue holds none. Returns `restore()`, which removes the black hole and is
 * safe to call more than once. One black hole per host at a time.
 */
export function blackHolePort(cluster, host, port) {
  if (!cluster.hosts.includes(host)) throw new Error(`${host?.name} is not a host of this cluster`)
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new Error(`bad port ${JSON.stringify(port)}: expected 1 to 65535`)
  }
  const existing = run(['ip', 'netns', 'exec', host.ns, 'tc', 'class', 'show', 'dev', 'eth0'])
  const lines = []
  if (!existing.includes(`class htb ${BLACK_HOLE_CLASS} `)) {
    lines.push(
      `class add dev eth0 parent 1:1 classid ${BLACK_HOLE_CLASS} htb rate 8kbit ceil 8kbit quantum 1514`,
      `qdisc add dev eth0 parent ${BLACK_HOLE_CLASS} handle dead: pfifo limit 0`,
    )
  }
  lines.push(
    `filter add dev eth0 parent 1: protocol ip prio ${BLACK_HOLE_PRIO} u32 match ip protocol 6 0xff match ip sport ${port} 0xffff flowid ${BLACK_HOLE_CLASS}`,
  )
  tcBatch(host.ns, lines)
  let restored = false
  return () => {
    if (restored || !existsSync(`/run/netns/${host.ns}`)) return
    restored = true
    run([
      'ip',
      'netns',
      'exec',
      host.ns,
      'tc',
      'filter',
      'del',
      'dev',
      'eth0',
      'parent',
      '1:',
      'protocol',
      'ip',
      'prio',
      String(BLACK_HOLE_PRIO),
    ])
  }
}

/** Deletes namespaces (and with them their veths); ignores the ones already gone. */
export function destroyNamespaces(names) {
  for (const name of names) {
    if (!existsSync(`/run/netns/${name}`)) continue
    try {
      run(['ip', 'netns', 'del', name])
    } catch {}
  }
}

/** Removes namespaces left by an earlier run that was killed too hard to clean up. */
export function destroyStaleNamespaces() {
  let list = ''
  try {
    list = run(['ip', 'netns', 'list'])
  } catch {
    return
  }
  const stale = list
    .split('\n')
    .map((line) => line.split(' ')[0])
    .filter((name) => /^isb\d+-/.test(name ?? ''))
    .filter((name) => {
      const pid = Number(/^isb(\d+)-/.exec(name)[1])
      return !existsSync(`/proc/${pid}`)
    })
  destroyNamespaces(stale)
}

/** Bytes each host has sent and received, read from the bridge ports (host-side view). */
export function readCounters(cluster) {
  const links = JSON.parse(run(['ip', '-n', cluster.bridgeNs, '-s', '-j', 'link', 'show']))
  const byPort = new Map(links.map((link) => [link.ifname, link.stats64 ?? link.stats]))
  const counters = {}
  for (const host of cluster.hosts) {
    const stats = byPort.get(host.port)
    // What the bridge port receives, the host sent; what it transmits, the host received.
    counters[host.name] = { sent: stats?.rx?.bytes ?? 0, received: stats?.tx?.bytes ?? 0 }
  }
  return counters
}

/** The inode that identifies a namespace, to find the processes that run inside it. */
export function namespaceInode(ns) {
  return statSync(`/run/netns/${ns}`).ino
}
