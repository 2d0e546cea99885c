// @ts-check
// The VM cluster harness: a private network (namespace + bridge), the site's DHCP server
// (dnsmasq), QEMU VMs that network-boot from it, and what the end-to-end tests and the
// benchmark read afterwards (consoles, DHCP leases, boot stages, the VMs' disks).
//
//   const net = await createTestNetwork()
//   try {
//     const nodes = planNodes(net, 2)
//     await startDnsmasq(net, { hosts: nodes, bootUrl: `http://${net.hostAddress}:6969/boot/ipxe` })
//     const vms = await Promise.all(nodes.map((node) => startVm(net, { name: node.hostname, mac: node.mac })))
//     await vms[0].waitForConsole(/multi-user/, { timeoutMs: 600_000 })
//   } finally {
//     await net.teardown()   // VMs, dnsmasq, servers, mounts, namespace, files
//   }
import { constants } from 'node:fs'
import { access } from 'node:fs/promises'
import { findStaticBusybox } from './vm-initramfs.mjs'
import { OVMF_CODE, OVMF_VARS } from './vm-machine.mjs'
import { run } from './vm-process.mjs'

export { chooseAccelerator } from './vm-accel.mjs'
export { BOOT_STAGES, parseBootStages, stageOffsets } from './vm-boot-stages.mjs'
export { FileTail, stripTerminalControls } from './vm-console.mjs'
export {
  createDisk,
  loopDevicesOf,
  mountPartitionReadOnly,
  readPartitionTable,
} from './vm-disk.mjs'
export { dnsmasqArgs, parseDhcpAcks, startDnsmasq } from './vm-dnsmasq.mjs'
export { buildInitramfs, findStaticBusybox, resolveModules } from './vm-initramfs.mjs'
export { OVMF_CODE, OVMF_VARS, qemuArgs, startVm, VirtualMachine } from './vm-machine.mjs'
export { createTestNetwork, listNamespaces, namespacePids } from './vm-network.mjs'
export { processExists, run } from './vm-process.mjs'

/** Debian packages the harness runs (scripts/setup.sh --test installs them). */
export const VM_COMMANDS = /** @type {const} */ ([
  ['qemu-system-x86_64', 'qemu-system-x86'],
  ['qemu-img', 'qemu-utils'],
  ['dnsmasq', 'dnsmasq-base'],
  ['cpio', 'cpio'],
  ['sfdisk', 'fdisk'],
  ['losetup', 'mount'],
  ['ip', 'iproute2'],
])

/**
 * Why VMs cannot run here, or undefined when they can: root (namespaces, taps, loop
 * mounts), /dev/net/tun, the commands above, Debian's iPXE ROMs for QEMU's NICs, a static
 * busybox, and a namespace actually created and deleted.
 * @returns {Promise<string | undefined>}
 */
export async function missingVmSupport() {
  if (process.getuid?.() !== 0) return 'not root (network namespaces, taps and loop mounts need it)'
  try {
    await access('/dev/net/tun', constants.R_OK | constants.W_OK)
  } catch {
    return 'no /dev/net/tun (taps for the VMs)'
  }
  for (const [command, pkg] of VM_COMMANDS) {
    const found = await run('sh', ['-c', `command -v ${command}`], { allowFailure: true })
    if (found.code !== 0) return `no ${command} (install ${pkg})`
  }
  try {
    await access('/usr/lib/ipxe/qemu/efi-virtio.rom', constants.R_OK)
  } catch {
    return 'no iPXE ROM for virtio-net (install ipxe-qemu)'
  }
  for (const firmware of [OVMF_CODE, OVMF_VARS]) {
    try {
      await access(firmware, constants.R_OK)
    } catch {
      return `no ${firmware} (install ovmf)`
    }
  }
  const busybox = await findStaticBusybox()
  if ('missing' in busybox) return busybox.missing
  const probe = `imageswarm-probe-${process.pid}`
  const added = await run('ip', ['netns', 'add', probe], { allowFailure: true })
  if (added.code !== 0) return `cannot create a network namespace: ${added.stderr.trim()}`
  await run('ip', ['netns', 'del', probe], { allowFailure: true })
  return undefined
}

/**
 * Names, MACs and fixed addresses for `count` nodes: node1 → 52:54:00:77:00:01, PREFIX.11.
 * @param {{ prefix: string }} network
 * @param {number} count at most 89 (addresses .11 to .99; dnsmasq's pool is .100 to .199)
 * @returns {{ hostname: string, mac: string, ip: string }[]}
 */
export function planNodes(network, count) {
  if (count < 1 || count > 89) throw new Error(`planNodes: ${count} nodes (1 to 89)`)
  return Array.from({ length: count }, (_, index) => {
    const n = index + 1
    return {
      hostname: `node${n}`,
      mac: `52:54:00:77:00:${n.toString(16).padStart(2, '0')}`,
      ip: `${network.prefix}.${10 + n}`,
    }
  })
}
