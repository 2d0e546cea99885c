import { existsSync } from 'node:fs'
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import {
  buildInitramfs,
  chooseAccelerator,
  createDisk,
  createTestNetwork,
  findTestKernel,
  listNamespaces,
  loopDevicesOf,
  missingVmSupport,
  mountPartitionReadOnly,
  parseBootStages,
  parseDhcpAcks,
  planNodes,
  processExists,
  qemuArgs,
  readPartitionTable,
  run,
  skipReason,
  stageOffsets,
  startDnsmasq,
  startVm,
  stripTerminalControls,
  type TestKernel,
  type TestNetwork,
} from './helpers/vm-cluster.js'

const kernelFound = await findTestKernel()
const missing = skipReason(
  'VM harness tests',
  (await missingVmSupport()) ?? ('missing' in kernelFound ? kernelFound.missing : undefined),
)
const testKernel = kernelFound as TestKernel

// Bounds, not expectations: under TCG on two loaded cores a network boot of the small
// initramfs takes 10-30 s (measured: 9.4 s from QEMU's start to power-off when idle).
const BOOT_TIMEOUT_MS = 150_000
const HTTP_PORT = 8080

/** The harness's own marker lines (the installer's start with "imageswarm: "). */
const MARK = 'imageswarm-harness:'

describe.skipIf(Boolean(missing))('the VM cluster harness', () => {
  let net: TestNetwork | undefined
  let accel: 'tcg' | 'kvm' = 'tcg'

  beforeAll(async () => {
    const choice = await chooseAccelerator({ kernel: testKernel.kernel })
    accel = choice.accel
    console.log(`VM harness tests: ${choice.accel} (${choice.reason})`)
  }, 60_000)

  afterEach(async () => {
    await net?.teardown()
    net = undefined
  })

  it('brings up a namespace with a bridge and dnsmasq, and leaves nothing behind', async () => {
    net = await createTestNetwork()
    const network = net
    expect(await listNamespaces()).toContain(network.namespace)
    const addresses = await network.exec('ip', ['-br', 'addr', 'show', network.bridge])
    expect(addresses.stdout).toContain(`${network.hostAddress}/24`)
    const loopback = await network.exec('ip', ['-br', 'link', 'show', 'lo'])
    expect(loopback.stdout).toMatch(/\bUNKNOWN\b|\bUP\b/)

    const dnsmasq = await startDnsmasq(network, {
      hosts: planNodes(network, 2),
      bootUrl: `http://${network.hostAddress}:${HTTP_PORT}/boot.ipxe`,
    })
    expect(dnsmasq.process.running()).toBe(true)
    expect(dnsmasq.log.text()).toContain(
      `DHCP, IP range ${network.prefix}.100 -- ${network.prefix}.199`,
    )
    const listening = await network.exec('ss', ['-uanp'])
    expect(listening.stdout).toMatch(/:67\b.*dnsmasq/)

    const { dir, namespace } = network
    await network.teardown()
    net = undefined
    expect(processExists(dnsmasq.process.pid)).toBe(false)
    expect(await listNamespaces()).not.toContain(namespace)
    expect(existsSync(dir)).toBe(false)
    // A second teardown (a test's own, then afterEach's) does nothing.
    await network.teardown()
  })

  it('network-boots a VM through iPXE into an initramfs served over HTTP, which writes to its disk', async () => {
    net = await createTestNetwork()
    const network = net
    const [node] = planNodes(network, 1)
    if (!node) throw new Error('planNodes gave no node')

    const { url, requests } = await serveBootFiles(
      network,
      `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
echo "${MARK} init reached at uptime $(cut -d' ' -f1 /proc/uptime)"
for m in /modules/*.ko; do insmod "$m"; done
i=0; while [ ! -b /dev/vda1 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
mac=$(sed -n 's/.*BOOTIF=\\([^ ]*\\).*/\\1/p' /proc/cmdline)
if mount -t ext4 /dev/vda1 /mnt && echo "booted from $mac" > /mnt/written-by-guest && umount /mnt
then echo "${MARK} disk written"
else echo "${MARK} disk write failed"
fi
poweroff -f
`,
    )

    // A disk with a GPT label and an ext4 partition made on the host, for the guest to write.
    const diskPath = join(network.dir, 'node1-disk.img')
    await createDisk(diskPath, 4)
    await run('sfdisk', ['-q', diskPath], { input: 'label: gpt\n,64MiB,L\n' })
    await run('mkfs.ext4', ['-q', '-F', '-E', `offset=${1024 * 1024}`, diskPath, '64M'])

    const dnsmasq = await startDnsmasq(network, { hosts: [node], bootUrl: url })
    const vm = await startVm(network, {
      name: node.hostname,
      mac: node.mac,
      diskPath,
      bootOrder: 'network',
      accel,
    })
    const written = await vm.waitForConsole(new RegExp(`${MARK} disk (written|write failed)`), {
      timeoutMs: BOOT_TIMEOUT_MS,
    })
    expect(written.text).toBe(`${MARK} disk written`)
    expect(await vm.waitForPowerOff({ timeoutMs: 60_000 })).toBe('guest-shutdown')

    // DHCP: dnsmasq gave the node its fixed address and name, and recorded the lease.
    const ack = dnsmasq.acks().find((entry) => entry.mac === node.mac)
    expect(ack).toMatchObject({ ip: node.ip, hostname: node.hostname })
    const leases = await dnsmasq.leases()
    expect(leases).toContainEqual(expect.objectContaining({ mac: node.mac, ip: node.ip }))
    expect(
      requests.filter((line) => line.startsWith(`${node.ip}:`) && line.includes('url:')),
    ).toEqual([
      expect.stringContaining('url:/boot.ipxe'),
      expect.stringContaining('url:/vmlinuz'),
      expect.stringContaining('url:/initrd.cpio'),
    ])

    // The console: every stage of a network boot, in order, and iPXE's own lines.
    expect(vm.console.text()).toContain(`${MARK} iPXE script running`)
    const [boot] = parseBootStages(vm.console.lines, vm.boots)
    if (!boot) throw new Error('no boot in the console')
    const order = ['firmware', 'ipxe', 'dhcp', 'boot-script', 'kernel', 'init']
    const times = order.map((stage) => boot.stages[stage])
    expect(times.every((t) => typeof t === 'number')).toBe(true)
    expect([...(times as number[])].sort((a, b) => a - b)).toEqual(times)
    console.log(`network boot (${vm.accel}): ${describeStages(boot)}`)

    // The disk: the guest's file, read back through a read-only loop mount of its partition.
    const table = await readPartitionTable(diskPath)
    expect(table.label).toBe('gpt')
    expect(table.partitions).toHaveLength(1)
    expect(table.partitions[0]).toMatchObject({ start: 2048, bytes: 64 * 1024 * 1024 })
    const mounted = await mountPartitionReadOnly(diskPath, 1, { track: network.track })
    try {
      expect(await readFile(join(mounted.path, 'written-by-guest'), 'utf8')).toBe(
        `booted from ${node.mac}\n`,
      )
      await expect(writeFile(join(mounted.path, 'x'), 'x')).rejects.toThrow(/EROFS/)
    } finally {
      await mounted.unmount()
    }
    expect(existsSync(mounted.path)).toBe(false)
    expect(await loopDevicesOf(diskPath)).toEqual([])
  })

  it('network-boots a UEFI VM (OVMF) through the same iPXE script', async () => {
    net = await createTestNetwork()
    const network = net
    const [node] = planNodes(network, 1)
    if (!node) throw new Error('planNodes gave no node')
    const { url } = await serveBootFiles(
      network,
      `#!/bin/busybox sh
/bin/busybox mount -t sysfs sys /sys
if [ -d /sys/firmware/efi ]; then echo "${MARK} booted by UEFI"; else echo "${MARK} booted by BIOS"; fi
/bin/busybox poweroff -f
`,
    )
    await startDnsmasq(network, { hosts: [node], bootUrl: url })
    const vm = await startVm(network, {
      name: node.hostname,
      mac: node.mac,
      firmware: 'uefi',
      accel,
    })
    const booted = await vm.waitForConsole(new RegExp(`${MARK} booted by`), {
      timeoutMs: BOOT_TIMEOUT_MS,
    })
    expect(booted.text).toBe(`${MARK} booted by UEFI`)
    expect(await vm.waitForPowerOff({ timeoutMs: 60_000 })).toBe('guest-shutdown')
    const [boot] = parseBootStages(vm.console.lines, vm.boots)
    if (!boot) throw new Error('no boot in the console')
    expect(Object.keys(boot.stages)).toEqual(
      expect.arrayContaining(['ipxe', 'dhcp', 'boot-script', 'kernel']),
    )
    console.log(`UEFI network boot (${vm.accel}): ${describeStages(boot)}`)
  })

  it('resets a VM through QMP to the same boot device, and boots the disk after the guest reboots itself', async () => {
    net = await createTestNetwork()
    const network = net
    const [node] = planNodes(network, 1)
    if (!node) throw new Error('planNodes gave no node')
    const initrd = join(network.dir, 'reboot.cpio')
    // Each boot reads a note from the disk's first bytes: none → leave one and wait;
    // the note → reboot itself (so the second boot, after the harness's reset, reboots).
    await buildInitramfs({
      output: initrd,
      modulesDir: testKernel.modulesDir,
      modules: ['virtio_pci', 'virtio_blk'],
      init: `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in /modules/*.ko; do insmod "$m"; done
i=0; while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
boot=$(cat /proc/sys/kernel/random/boot_id)
if [ "$(head -c 9 /dev/vda)" = "rebootnow" ]; then
  echo "${MARK} second start $boot: rebooting myself"
  reboot -f
fi
printf rebootnow | dd of=/dev/vda conv=notrunc,fsync 2>/dev/null
echo "${MARK} first start $boot: waiting"
while true; do sleep 10; done
`,
    })
    const vm = await startVm(network, {
      name: node.hostname,
      mac: node.mac,
      bootOrder: 'network-then-disk',
      kernel: testKernel.kernel,
      initrd,
      append: 'console=ttyS0 panic=-1',
      accel,
    })
    const first = await vm.waitForConsole(new RegExp(`${MARK} first start`), {
      timeoutMs: BOOT_TIMEOUT_MS,
    })
    expect(vm.state).toBe('running')
    expect(await vm.powerState()).toBe('running')
    expect(await vm.residentBytes()).toBeGreaterThan(16 * 1024 * 1024)

    const second = await vm.reset()
    expect(second).toMatchObject({ number: 2, device: 'network' })
    expect(vm.boots[0]?.endReason).toBe('host-qmp-system-reset')
    const rebooting = await vm.waitForConsole(new RegExp(`${MARK} second start`), {
      timeoutMs: BOOT_TIMEOUT_MS,
      from: second.firstLine,
    })
    // A fresh kernel, not the first boot's output read twice.
    expect(rebooting.text.split(' ')[3]).not.toBe(first.text.split(' ')[3])

    // The guest's own reboot: the harness boots the disk, which has no boot loader, so the
    // firmware (strict boot order) stops instead of falling back to the network.
    const third = await vm.waitForBoot(3, { timeoutMs: 60_000 })
    expect(vm.boots[1]?.endReason).toBe('guest-reset')
    expect(third.device).toBe('disk')
    await vm.waitForConsole(/No bootable device/, { timeoutMs: 60_000, from: third.firstLine })
    expect(vm.console.text()).toContain('Booting from Hard Disk')

    await vm.stop()
    expect(vm.state).toBe('off (host-qmp-quit)')
    expect(await vm.powerState()).toBe('off')
    expect(vm.boots).toHaveLength(3)
  })

  it('says what the console showed when a wait fails, and tears down after failures', async () => {
    net = await createTestNetwork()
    const network = net
    const [node, other] = planNodes(network, 2)
    if (!node || !other) throw new Error('planNodes gave no node')
    // dnsmasq hands out a boot URL nothing serves: iPXE gets its address, fails the fetch,
    // and the firmware stops.
    const dnsmasq = await startDnsmasq(network, {
      hosts: [node, other],
      bootUrl: `http://${network.hostAddress}:${HTTP_PORT}/boot.ipxe`,
    })
    const vm = await startVm(network, { name: node.hostname, mac: node.mac, accel })
    const qemuPid = vm.pid
    await vm.waitForConsole(/No bootable device/, { timeoutMs: BOOT_TIMEOUT_MS })
    await dnsmasq.waitForAck(node.mac, { timeoutMs: 10_000 })
    const failed = await vm.waitForConsole(/Run \/init as init process/, { timeoutMs: 2_000 }).then(
      () => undefined,
      (error: Error) => error,
    )
    expect(failed?.message).toMatch(/VM node1 \(\w+, running\): waiting for .*Run/)
    expect(failed?.message).toContain('No bootable device')
    expect(failed?.message).toContain(`${network.hostAddress}:${HTTP_PORT}`)

    // QEMU refusing to start is an error naming the VM, with QEMU's own message.
    await expect(
      startVm(network, {
        name: other.hostname,
        mac: other.mac,
        kernel: join(network.dir, 'no-such-kernel'),
        accel,
      }),
    ).rejects.toThrow(/VM node2: QEMU did not start[\s\S]*could not (open|load) kernel/)

    const { dir, namespace } = network
    await network.teardown()
    net = undefined
    for (const pid of [qemuPid, dnsmasq.process.pid]) {
      expect(pid && processExists(pid)).toBe(false)
    }
    expect(vm.state).toMatch(/^off/)
    expect(await listNamespaces()).not.toContain(namespace)
    expect(existsSync(dir)).toBe(false)
  })
})

describe('reading consoles and logs', () => {
  it('strips terminal control codes the way a terminal would show the line', () => {
    expect(stripTerminalControls('\x1bc\x1b[?7l\x1b[2JSeaBIOS (version 1.16.2)\r')).toBe(
      'SeaBIOS (version 1.16.2)',
    )
    expect(stripTerminalControls('http://x/vmlinuz... 78%\b\b\b\b    \b\b\b\b ok\r')).toBe(
      'http://x/vmlinuz... ok',
    )
    expect(stripTerminalControls('\x1b[0;1miPXE 1.0.0\x1b[0m -- Open Source')).toBe(
      'iPXE 1.0.0 -- Open Source',
    )
  })

  it('dates each boot stage from the first line that marks it, boot by boot', () => {
    // Lines as this machine's VMs printed them (SeaBIOS, iPXE, the cloud kernel).
    const text = [
      'SeaBIOS (version 1.16.2-debian-1.16.2-1)',
      'iPXE (PCI 00:01.0) starting execution...ok',
      'Configuring (net0 52:54:00:12:34:01)... ok',
      'net0: 10.78.0.11/255.255.255.0 gw 10.78.0.1',
      'boot.ipxe : 145 bytes [script]',
      'Probing EDD (edd=off to disable)... o[    0.000000] Linux version 6.1.0-50-cloud-amd64',
      '[    4.389421] Run /init as init process',
      'imageswarm: partitioning /dev/vda',
      'imageswarm: installed, rebooting',
      '[   90.000000] reboot: Restarting system',
      'SeaBIOS (version 1.16.2-debian-1.16.2-1)',
      'Booting from Hard Disk...',
      '[    0.000000] Linux version 6.1.0-50-cloud-amd64',
      '[  OK  ] Reached target multi-user.target - Multi-User System.',
    ]
    const lines = text.map((line, index) => ({ index, t: 1000 * (index + 1), text: line }))
    const [install, deployed] = parseBootStages(lines)
    expect(install?.stages).toEqual({
      firmware: 1000,
      ipxe: 2000,
      dhcp: 4000,
      'boot-script': 5000,
      kernel: 6000,
      init: 7000,
      installer: 8000,
      'kernel-reboot': 10_000,
    })
    expect(install?.installer.map((line) => line.text)).toEqual([
      'imageswarm: partitioning /dev/vda',
      'imageswarm: installed, rebooting',
    ])
    expect(deployed?.stages).toEqual({
      firmware: 11_000,
      'disk-boot': 12_000,
      kernel: 13_000,
      'multi-user': 14_000,
    })
    expect(stageOffsets(deployed!).map((entry) => entry.stage)).toEqual([
      'firmware',
      'disk-boot',
      'kernel',
      'multi-user',
    ])
  })

  it("reads dnsmasq's DHCPACK lines", () => {
    const log = [
      'Dec  3 12:31:09 dnsmasq-dhcp[21364]: 1945006451 DHCPREQUEST(br0) 10.78.0.11 52:54:00:12:34:01 ',
      'Dec  3 12:31:09 dnsmasq-dhcp[21364]: 1945006451 DHCPACK(br0) 10.78.0.11 52:54:00:12:34:01 node1',
      'Dec  3 12:31:10 dnsmasq-dhcp[21364]: 22 DHCPACK(br0) 10.78.0.150 52:54:00:AA:00:02 ',
    ].map((text, index) => ({ t: index, text }))
    expect(parseDhcpAcks(log)).toEqual([
      { t: 1, iface: 'br0', ip: '10.78.0.11', mac: '52:54:00:12:34:01', hostname: 'node1' },
      { t: 2, iface: 'br0', ip: '10.78.0.150', mac: '52:54:00:aa:00:02', hostname: undefined },
    ])
  })

  it('gives QEMU the boot device the harness chose, and nothing else to boot', () => {
    const base = {
      name: 'node1',
      mac: '52:54:00:77:00:01',
      tap: 't1-1',
      diskPath: '/d.img',
      consolePath: '/c.log',
      qmpPath: '/q.sock',
      memoryMiB: 768,
      accel: 'tcg',
    }
    const network = qemuArgs({ ...base, device: 'network' }).join(' ')
    expect(network).toContain('virtio-net-pci,netdev=net0,mac=52:54:00:77:00:01,bootindex=1')
    expect(network).toContain('virtio-blk-pci,drive=disk0 ')
    expect(network).toContain('-boot strict=on -no-reboot')
    const disk = qemuArgs({ ...base, device: 'disk' }).join(' ')
    expect(disk).toContain('virtio-blk-pci,drive=disk0,bootindex=1')
    expect(disk).not.toContain('net0,mac=52:54:00:77:00:01,bootindex')
    const direct = qemuArgs({ ...base, device: 'network', kernel: '/k', append: 'quiet' })
    expect(direct.join(' ')).toContain('-kernel /k -append quiet')
    expect(direct.join(' ')).not.toContain('bootindex')
  })
})

/**
 * The test kernel, an initramfs with `init` (and the virtio disk modules in /modules) and an
 * iPXE script, served by busybox's httpd from inside the namespace. The kernel line names
 * the initrd (`initrd=`): OVMF boots the kernel's EFI stub, which loads it by that name.
 */
async function serveBootFiles(network: TestNetwork, init: string) {
  const www = join(network.dir, 'www')
  await mkdir(www)
  await copyFile(testKernel.kernel, join(www, 'vmlinuz'))
  await buildInitramfs({
    output: join(www, 'initrd.cpio'),
    modulesDir: testKernel.modulesDir,
    modules: ['virtio_pci', 'virtio_blk'],
    init,
  })
  const server = `http://${network.hostAddress}:${HTTP_PORT}`
  await writeFile(
    join(www, 'boot.ipxe'),
    [
      '#!ipxe',
      `echo ${MARK} iPXE script running`,
      `kernel ${server}/vmlinuz initrd=initrd.cpio console=ttyS0 panic=-1 BOOTIF=\${net0/mac}`,
      `initrd ${server}/initrd.cpio`,
      'boot',
      '',
    ].join('\n'),
  )
  const requests: string[] = []
  await network.spawn(
    'httpd',
    'busybox',
    ['httpd', '-f', '-vv', '-p', `${network.hostAddress}:${HTTP_PORT}`, '-h', www],
    { onLine: (line) => requests.push(line) },
  )
  await waitForHttp(network, `${server}/boot.ipxe`)
  return { url: `${server}/boot.ipxe`, requests }
}

/** "firmware 0.1s, ipxe 0.3s, ...; guest-shutdown after 7.2s" for the test's output. */
function describeStages(boot: ReturnType<typeof parseBootStages>[number]) {
  const stages = stageOffsets(boot).map(({ stage, seconds }) => `${stage} ${seconds}s`)
  const seconds = ((boot.endedAt ?? Date.now()) - boot.startedAt) / 1000
  return `${stages.join(', ')}; ${boot.endReason} after ${seconds.toFixed(1)}s`
}

/** Polls until the HTTP server inside the namespace answers (bounded). */
async function waitForHttp(network: TestNetwork, url: string) {
  for (let attempt = 0; attempt < 100; attempt += 1) {
    const fetched = await network.exec('busybox', ['wget', '-q', '-O', '/dev/null', url], {
      allowFailure: true,
    })
    if (fetched.code === 0) return
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`${url} did not answer inside ${network.namespace}`)
}
