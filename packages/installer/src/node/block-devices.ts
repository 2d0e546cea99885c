import { access, readdir, readFile } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { ImageSwarmError } from '@imageswarm/core'
import type { BlockDisk } from './default-layout.js'

/** Block devices that are never a node's disk: loop, RAM, optical, compressed swap in RAM, floppy. */
const NOT_DISKS = /^(loop|ram|sr|zram|fd)\d/

/**
 * The node's disks, from /sys/block (whole disks only; partitions live below them):
 * name, size (`size` counts 512-byte sectors whatever the disk's own sector size),
 * logical sector size, removable and read-only flags.
 */
export async function listDisks(sysBlock = '/sys/block', devDir = '/dev'): Promise<BlockDisk[]> {
  const names = (await readdir(sysBlock).catch(() => [] as string[])).sort()
  const disks: BlockDisk[] = []
  for (const name of names) {
    if (NOT_DISKS.test(name)) continue
    const read = async (file: string) =>
      (await readFile(join(sysBlock, name, file), 'utf8').catch(() => '')).trim()
    const sectors = Number(await read('size'))
    disks.push({
      name,
      device: join(devDir, name),
      bytes: Number.isFinite(sectors) ? sectors * 512 : 0,
      sectorSize: Number(await read('queue/logical_block_size')) || 512,
      removable: (await read('removable')) === '1',
      readOnly: (await read('ro')) === '1',
    })
  }
  return disks
}

/** `vda (4.0 GiB), sda (64.0 GiB, removable)`: what an error says is there. */
export function describeDisks(disks: readonly BlockDisk[]): string {
  if (disks.length === 0) return 'none'
  return disks
    .map((disk) => {
      const traits = [`${(disk.bytes / 1024 ** 3).toFixed(1)} GiB`]
      if (disk.removable) traits.push('removable')
      if (disk.readOnly) traits.push('read-only')
      return `${disk.name} (${traits.join(', ')})`
    })
    .join(', ')
}

/**
 * Waits until every device node exists, polling every 100 ms: the kernel adds partitions
 * when sfdisk has it re-read the table, and devtmpfs makes their nodes (no udev needed).
 * E_PARTITION_FAILED naming the missing ones after `timeoutMs`.
 */
export async function waitForDevices(devices: readonly string[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const missing: string[] = []
    for (const device of devices) {
      if (
        !(await access(device).then(
          () => true,
          () => false,
        ))
      )
        missing.push(device)
    }
    if (missing.length === 0) return
    if (Date.now() >= deadline) {
      throw new ImageSwarmError(
        'E_PARTITION_FAILED',
        `partition ${missing.join(', ')} did not appear within ${timeoutMs / 1000} s of writing the partition table`,
        {
          operation: 'wait for partitions',
          path: missing[0] as string,
          hint: 'the kernel did not re-read the table: is the disk in use (a mounted partition, a RAID or LVM member)? Reboot and install again',
        },
      )
    }
    await sleep(100)
  }
}

/** What is mounted or used as swap now, from /proc/mounts and /proc/swaps. */
export async function devicesInUse(proc = '/proc'): Promise<{ device: string; use: string }[]> {
  const inUse: { device: string; use: string }[] = []
  const mounts = await readFile(join(proc, 'mounts'), 'utf8').catch(() => '')
  for (const line of mounts.split('\n')) {
    const [device, mountPoint] = line.split(' ')
    if (device?.startsWith('/dev/') && mountPoint) {
      inUse.push({ device, use: `mounted on ${unescapeMount(mountPoint)}` })
    }
  }
  const swaps = await readFile(join(proc, 'swaps'), 'utf8').catch(() => '')
  for (const line of swaps.split('\n').slice(1)) {
    const [device] = line.split(/\s+/)
    if (device?.startsWith('/dev/')) inUse.push({ device, use: 'used as swap' })
  }
  return inUse
}

/** /proc/mounts escapes space, tab, newline and backslash as octal. */
function unescapeMount(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) =>
    String.fromCharCode(Number.parseInt(octal, 8)),
  )
}

/** The whole-disk name a device belongs to: `/dev/vda2` → `vda`, `/dev/nvme0n1p2` → `nvme0n1`. */
export function diskOf(device: string, disks: readonly BlockDisk[]): BlockDisk | undefined {
  const name = basename(device)
  return disks.find(
    (disk) =>
      name === disk.name ||
      (name.startsWith(disk.name) &&
        new RegExp(`^${disk.name}${/\d$/.test(disk.name) ? 'p' : ''}\\d+$`).test(name)),
  )
}
