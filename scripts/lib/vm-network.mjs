// @ts-check
// A private test network: a network namespace holding a bridge, the VMs' taps and every
// process that serves them (dnsmasq, the image server, the clients), torn down as one.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { processExists, run, startProcess } from './vm-process.mjs'

let networksMade = 0

/**
 * Something the network stops at teardown: a process, a VM, a mount.
 * @typedef {{ describe: string, stop: () => Promise<void> }} Resource
 */

/**
 * @typedef {object} TestNetwork
 * @property {string} namespace network namespace name, `imageswarm-PID-N`
 * @property {string} bridge the bridge inside it
 * @property {string} hostAddress the bridge's IPv4 address (the servers' address), e.g. 10.77.0.1
 * @property {string} prefix the /24's first three octets, e.g. 10.77.0
 * @property {string} dir work directory (dnsmasq files, VM disks and consoles), removed at teardown
 * @property {(command: string, args?: string[], options?: { timeoutMs?: number, allowFailure?: boolean, input?: string }) => Promise<import('./vm-process.mjs').RunResult>} exec
 *   runs a command inside the namespace to completion
 * @property {(name: string, command: string, args?: string[], options?: { onLine?: (line: string, stream: 'stdout' | 'stderr') => void, env?: NodeJS.ProcessEnv, cwd?: string }) => Promise<import('./vm-process.mjs').ManagedProcess>} spawn
 *   starts a long-running command inside the namespace (`ip netns exec`), stopped at teardown
 * @property {(name: string) => Promise<string>} addTap
 *   creates a persistent tap on the bridge (it outlives a QEMU restart); returns its name
 * @property {(resource: Resource) => Resource} track stops `resource` at teardown
 * @property {(resource: Resource) => void} untrack
 * @property {() => Promise<void>} teardown
 *   stops what was started (last first), deletes the namespace and the work directory;
 *   collects every failure and throws them together once everything was tried
 */

/**
 * Creates the namespace with loopback up and a bridge holding `PREFIX.1/24` (and an IPv6 ULA
 * for router advertisements: see startDnsmasq). Every name carries this process's PID and a
 * counter, so two test runs never collide. The /24 needs no uniqueness: nothing links the
 * namespace to the host or to another namespace, so two runs using 10.77.0.0/24 at once
 * never see each other.
 * @example
 *   const net = await createTestNetwork()
 *   try { await net.exec('ip', ['-br', 'addr']) } finally { await net.teardown() }
 * @param {{ prefix?: string, keepDir?: boolean }} [options]
 *   keepDir leaves the work directory for a post-mortem (also IMAGESWARM_VM_KEEP=1)
 * @returns {Promise<TestNetwork>}
 */
export async function createTestNetwork(options = {}) {
  networksMade += 1
  const namespace = `imageswarm-${process.pid}-${networksMade}`
  // Interface names hold at most 15 bytes: "br" + a PID of up to 7 digits.
  const bridge = `br${process.pid}`
  const prefix = options.prefix ?? '10.77.0'
  const hostAddress = `${prefix}.1`
  const keepDir = options.keepDir ?? process.env.IMAGESWARM_VM_KEEP === '1'
  const dir = await mkdtemp(join(tmpdir(), `imageswarm-vm-${process.pid}-`))
  /** @type {Resource[]} */
  const resources = []
  let tornDown = false
  let taps = 0

  const ip = (/** @type {string[]} */ ...args) => run('ip', args, { timeoutMs: 20_000 })

  /** @type {TestNetwork} */
  const network = {
    namespace,
    bridge,
    hostAddress,
    prefix,
    dir,
    exec: (command, args = [], execOptions = {}) =>
      run('ip', ['netns', 'exec', namespace, command, ...args], execOptions),
    async spawn(name, command, args = [], spawnOptions = {}) {
      if (tornDown) throw new Error(`${name}: test network ${namespace} was torn down`)
      const managed = await startProcess(
        name,
        'ip',
        ['netns', 'exec', namespace, command, ...args],
        spawnOptions,
      )
      const resource = network.track({
        describe: `${name} (PID ${managed.pid})`,
        stop: () => managed.stop(),
      })
      managed.exited.then(() => network.untrack(resource))
      return managed
    },
    async addTap(name) {
      if (tornDown) throw new Error(`${name}: test network ${namespace} was torn down`)
      taps += 1
      // Interface names hold at most 15 bytes: "t" + PID (up to 7 digits) + "-" + counter.
      const tap = `t${process.pid}-${taps}`
      if (tap.length > 15) throw new Error(`tap name ${tap} for ${name} is over 15 bytes`)
      await ip('-n', namespace, 'tuntap', 'add', 'dev', tap, 'mode', 'tap')
      await ip('-n', namespace, 'link', 'set', tap, 'master', bridge, 'up')
      return tap
    },
    track(resource) {
      resources.push(resource)
      return resource
    },
    untrack(resource) {
      const at = resources.indexOf(resource)
      if (at >= 0) resources.splice(at, 1)
    },
    async teardown() {
      if (tornDown) return
      tornDown = true
      /** @type {string[]} */
      const failures = []
      while (resources.length > 0) {
        const resource = /** @type {Resource} */ (resources.pop())
        try {
          await resource.stop()
        } catch (error) {
          failures.push(`${resource.describe}: ${/** @type {Error} */ (error).message}`)
        }
      }
      // Whatever is still inside the namespace escaped its process group: a child of a
      // process this network started (no one else enters a namespace named for this run).
      // It is stopped, and reported, since something leaked it.
      for (const pid of await namespacePids(namespace)) {
        failures.push(`PID ${pid} was still in ${namespace} after its processes stopped`)
        try {
          process.kill(pid, 'SIGKILL')
        } catch {}
      }
      try {
        await run('ip', ['netns', 'del', namespace], { timeoutMs: 20_000 })
      } catch (error) {
        failures.push(/** @type {Error} */ (error).message)
      }
      if (!keepDir) await rm(dir, { recursive: true, force: true })
      if (failures.length > 0) {
        throw new Error(`test network ${namespace} teardown:\n  ${failures.join('\n  ')}`)
      }
    },
  }
  try {
    await run('ip', ['netns', 'add', namespace], { timeoutMs: 20_000 })
  } catch (error) {
    await rm(dir, { recursive: true, force: true })
    throw new Error(
      `cannot create network namespace ${namespace}: ${/** @type {Error} */ (error).message} (the VM tests need root and iproute2)`,
      { cause: error },
    )
  }
  try {
    await ip('-n', namespace, 'link', 'set', 'lo', 'up')
    // forward_delay 0: a tap forwards as soon as QEMU opens it, so iPXE's first DHCPDISCOVER
    // is not lost in the bridge's learning state.
    await ip('-n', namespace, 'link', 'add', bridge, 'type', 'bridge', 'forward_delay', '0')
    await ip('-n', namespace, 'addr', 'add', `${hostAddress}/24`, 'dev', bridge)
    await ip('-n', namespace, 'addr', 'add', 'fd77::1/64', 'dev', bridge, 'nodad')
    await ip('-n', namespace, 'link', 'set', bridge, 'up')
  } catch (error) {
    await network.teardown().catch(() => {})
    throw error
  }
  return network
}

/**
 * The PIDs inside a namespace.
 * @param {string} namespace
 * @returns {Promise<number[]>}
 */
export async function namespacePids(namespace) {
  const { stdout } = await run('ip', ['netns', 'pids', namespace], {
    allowFailure: true,
    timeoutMs: 20_000,
  })
  return stdout
    .split('\n')
    .filter((line) => /^\d+$/.test(line.trim()))
    .map(Number)
    .filter(processExists)
}

/**
 * The network namespaces that exist now.
 * @returns {Promise<string[]>}
 */
export async function listNamespaces() {
  const { stdout } = await run('ip', ['netns', 'list'], { timeoutMs: 20_000 })
  return stdout
    .split('\n')
    .map((line) => line.split(' ')[0] ?? '')
    .filter(Boolean)
}
