#!/usr/bin/env node
// @ts-check
// The VM cluster demo: a private network with DHCP (dnsmasq) and `imageswarm serve`, and a
// few QEMU VMs with empty disks that network-boot imageswarm's installer, partition their
// disks, install a Debian image over the swarm, make it bootable, reboot and boot it.
// Prints each node's milestones as they happen, each node's console tail, a summary, and
// cleans up (--keep leaves the consoles). scripts/vm-demo.sh sets up first.
//
//   node scripts/vm-demo.mjs [--nodes 3] [--keep] [--memory 768]
import { copyFile, mkdtemp, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import {
  chooseAccelerator,
  createTestNetwork,
  missingVmSupport,
  planNodes,
  startDnsmasq,
} from './lib/vm-cluster.mjs'
import {
  BOOTABLE_ROOT_DEFAULT,
  BOOTED_LINE,
  buildRamdisk,
  deployNodes,
  prepareBootableImage,
  serveImages,
} from './lib/vm-deploy.mjs'

const { values: flags } = parseArgs({
  options: {
    nodes: { type: 'string', default: '3' },
    memory: { type: 'string', default: '768' },
    keep: { type: 'boolean', default: false },
    timeout: { type: 'string', default: '2400' },
  },
})
const count = Number(flags.nodes)
const started = Date.now()
const say = (/** @type {string} */ text) => {
  const seconds = ((Date.now() - started) / 1000).toFixed(0).padStart(4)
  process.stdout.write(`[${seconds}s] ${text}\n`)
}

const missing = await missingVmSupport()
if (missing) {
  process.stderr.write(`vm-demo: cannot run VMs here: ${missing}\n`)
  process.exit(2)
}
if (!Number.isInteger(count) || count < 1 || count > 16) {
  process.stderr.write('vm-demo: --nodes takes 1 to 16\n')
  process.exit(2)
}

const work = await mkdtemp('/var/tmp/imageswarm-vm-demo-')
const net = await createTestNetwork()
let failed = false
try {
  say(
    `== imageswarm VM demo: ${count} VMs network-boot the installer and install Debian over the swarm`,
  )
  say(`building the installer ramdisk (imageswarm initrd --output ${work}/boot)`)
  const boot = await buildRamdisk(join(work, 'boot'))
  const { accel, reason } = await chooseAccelerator({ kernel: join(boot, 'vmlinuz') })
  say(`copying the bootable Debian root ${BOOTABLE_ROOT_DEFAULT} as image "bootable"`)
  await prepareBootableImage(BOOTABLE_ROOT_DEFAULT, join(work, 'server', 'images', 'bootable'))
  const nodes = planNodes(net, count)
  const bootUrl = `http://${net.hostAddress}:6969/boot/ipxe`
  await startDnsmasq(net, { hosts: nodes, bootUrl })
  say(
    `network ${net.namespace}: bridge ${net.bridge} ${net.hostAddress}/24; dnsmasq gives ${nodes.map((node) => `${node.hostname} ${node.ip}`).join(', ')} and iPXE the boot file ${bootUrl}`,
  )
  say('imageswarm serve: publishing the image (packing it into a zstd archive and a .torrent)')
  const server = await serveImages(net, {
    dir: join(work, 'server'),
    images: ['bootable'],
    bootDir: boot,
    bootAppend: 'imageswarm.on-failure=poweroff imageswarm.failure-delay=0',
    onLog: (record) => {
      if (record.msg === 'image packed and published') {
        say(
          `imageswarm serve: packed ${(record.size / 2 ** 20).toFixed(1)} MiB in ${record.seconds} s`,
        )
      }
    },
  })
  say(`imageswarm serve: serving at ${server.url}, inside the network namespace`)
  say(
    `powering on ${count} VMs (QEMU ${accel === 'tcg' ? 'TCG, software emulation' : accel}, ${flags.memory} MiB, empty 4 GiB disks; ${reason})`,
  )

  /**
   * Milestones worth a line, from each node's console.
   * @type {[RegExp, (match: RegExpExecArray) => string | undefined][]}
   */
  const milestones = [
    [/^net\d+: (\d+\.\d+\.\d+\.\d+)\//, (m) => `iPXE got ${m[1]} by DHCP`],
    [/ : \d+ bytes \[script\]/, () => 'iPXE fetched the boot script; loading kernel and ramdisk'],
    [/^imageswarm: \[[\d.]+\] (address .*)/, (m) => `installer ramdisk: ${m[1]}`],
    [/^imageswarm: \[[\d.]+\] (partitioning .*)/, (m) => m[1]],
    [/^imageswarm: \[[\d.]+\] (downloaded in .*)/, (m) => m[1]],
    [/^imageswarm: \[[\d.]+\] (extracted into .*)/, (m) => m[1]],
    [/^imageswarm: \[[\d.]+\] (GRUB installed.*)/, (m) => m[1]],
    [/^imageswarm: \[[\d.]+\] (installed image .*)/, (m) => m[1]],
    [/^imageswarm: \[[\d.]+\] (error .*|FAILED.*)/, (m) => m[1]],
    [/Booting from Hard Disk/, () => 'rebooted; the firmware boots its own disk'],
    [BOOTED_LINE, () => 'the installed system reached multi-user.target'],
  ]
  /** @type {Set<string>} */
  const said = new Set()
  const deployed = await deployNodes(net, {
    nodes,
    memoryMiB: Number(flags.memory),
    timeoutMs: Number(flags.timeout) * 1000,
    onLine: (node, line) => {
      for (const [pattern, describe] of milestones) {
        const match = pattern.exec(line.text)
        const key = `${node} ${pattern}`
        if (!match || said.has(key)) continue
        said.add(key)
        say(`${node}: ${describe(match)}`)
      }
    },
  })

  // The login prompt follows multi-user.target on the serial console.
  await Promise.all(
    deployed.vms.map((vm) =>
      vm
        .waitForConsole(/ login: ?$/, { timeoutMs: 120_000, from: vm.boots.at(-1)?.firstLine ?? 0 })
        .catch(() => undefined),
    ),
  )
  for (const vm of deployed.vms) {
    process.stdout.write(
      `\n--- ${vm.name}: last lines of its serial console ---\n${vm.console.tail(8)}\n`,
    )
  }

  const { stdout } = await net.exec('curl', ['-sf', `${server.url}/api/images/bootable/nodes`])
  const board = JSON.parse(stdout).nodes
  process.stdout.write('\n')
  let fromServer = 0
  let delivered = 0
  for (const timeline of deployed.timelines) {
    const outcome = deployed.outcomes.find((entry) => entry.vm.name === timeline.node)
    const entry = board.find(
      (/** @type {any} */ candidate) =>
        candidate.node === timeline.node && candidate.state === 'done',
    )
    if (entry) {
      fromServer += entry.downloadedFromServer
      delivered += entry.downloaded
    }
    const seconds = (/** @type {number | undefined} */ t) =>
      t === undefined ? '—' : `${((t - timeline.poweredOn) / 1000).toFixed(0)} s`
    const installEnd = timeline.stages.find((stage) => stage.stage === 'reboot')?.start
    if (!outcome?.ok) failed = true
    say(
      outcome?.ok
        ? `${timeline.node}: installed ${seconds(installEnd)} after power-on, booted the installed system at ${seconds(timeline.booted)}; ${timeline.installer.fromPeersMiB ?? '?'} MiB from peers, ${timeline.installer.fromServerMiB ?? '?'} MiB from the server, ${timeline.installer.uploadedMiB ?? '?'} MiB uploaded`
        : `${timeline.node}: FAILED: ${timeline.failure ?? outcome?.error?.split('\n')[0]}`,
    )
  }
  const used = deployed.usage
  say(
    `swarm: ${(delivered / 2 ** 20).toFixed(1)} MiB delivered to ${count} nodes; ${(fromServer / 2 ** 20).toFixed(1)} MiB (${delivered ? ((100 * fromServer) / delivered).toFixed(0) : 0} %) from the server, the rest between nodes`,
  )
  say(
    `machine: ${used.cores} cores ${(used.hostBusy * 100).toFixed(0)} % busy; each VM's QEMU held at most ${(Math.max(...Object.values(used.peakRss)) / 2 ** 20).toFixed(0)} MiB`,
  )
  if (flags.keep) {
    const kept = await mkdtemp('/var/tmp/imageswarm-vm-demo-consoles-')
    for (const vm of deployed.vms) await copyFile(vm.consolePath, join(kept, `${vm.name}.log`))
    say(`consoles kept in ${kept}`)
  }
  say(
    failed
      ? 'vm demo FAILED: see the consoles above'
      : `vm demo OK: ${count} nodes installed over the swarm and booted`,
  )
} catch (error) {
  failed = true
  process.stderr.write(`vm-demo: ${/** @type {Error} */ (error).stack ?? error}\n`)
} finally {
  await net.teardown().catch((error) => process.stderr.write(`vm-demo: ${error.message}\n`))
  await rm(work, { recursive: true, force: true })
}
process.exit(failed ? 1 : 0)
