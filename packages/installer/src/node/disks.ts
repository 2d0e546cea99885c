import { mkdir, readdir, realpath } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { type DiskLayout, ImageSwarmError, type Logger } from '@imageswarm/core'
import { describeDisks, devicesInUse, diskOf, listDisks, waitForDevices } from './block-devices.js'
import { type BootloaderPlan, planBootloader } from './boot-requirements.js'
import type { BlockDisk, Firmware } from './default-layout.js'
import { installMountOptions, mkfsCommand, mountOrder } from './filesystems.js'
import type { InstallerConsole } from './installer-console.js'
import type { MountStack } from './mount-stack.js'
import { mib, type PartitionPlan, planPartitions, sfdiskScript } from './partition-plan.js'
import { runTool } from './run-tool.js'

/**
 * How long the new partitions may take to appear. The kernel adds them while sfdisk
 * re-reads the table and devtmpfs makes the nodes at once: well under a second in the
 * VM tests; 10 s leaves room for a slow controller.
 */
export const PARTITION_WAIT_MS = 10_000

export interface DiskPreparationOptions {
  layout: DiskLayout
  /** For messages and fstab: the server's name of the layout, or `default`. */
  layoutName: string
  target: string
  firmware: Firmware
  console: InstallerConsole
  logger: Logger
  mounts: MountStack
  /** The node's disks (listDisks); tests pass their own. */
  disks?: readonly BlockDisk[]
}

export interface PreparedDisks {
  plans: PartitionPlan[]
  bootloader: BootloaderPlan
  /** Filesystem UUID by device, as blkid read them after mkfs. */
  uuids: Map<string, string>
}

/**
 * The `partitioning` step: checks the layout against the node's disks (E_DISK_MISSING,
 * E_DISK_TOO_SMALL, E_LAYOUT_INVALID before anything is written), then for each disk
 * wipes old signatures, writes the partition table with sfdisk and waits for the
 * partitions; makes the filesystems and mounts them under the target, parents first.
 * A disk that held anything (a previous install, finished or not) is made again.
 */
export async function prepareDisks(options: DiskPreparationOptions): Promise<PreparedDisks> {
  const { layout, console, logger } = options
  const disks = options.disks ?? (await listDisks())
  const byDevice = await matchDisks(layout, disks)
  const plans = layout.disks.map((disk) => {
    const found = byDevice.get(disk.dev) as BlockDisk
    return planPartitions(disk, found.bytes, found.sectorSize, layout.filesystems)
  })
  checkFilesystemDevices(layout, plans, disks)
  const bootloader = planBootloader(layout, plans, options.firmware)
  await refuseDisksInUse(plans, disks)

  for (const plan of plans) {
    const disk = byDevice.get(plan.disk) as BlockDisk
    for (const note of plan.notes) console.say(`${plan.disk}: ${note}`)
    console.say(
      `partitioning ${plan.disk} (${mib(plan.totalSectors, plan.sectorSize)}): ${plan.label}, ${plan.partitions
        .map((part) => `${basename(part.device)} ${mib(part.sectors, plan.sectorSize)}`)
        .join(', ')}`,
    )
    // Signatures inside the old partitions first (RAID and LVM metadata sit at their ends),
    // then the disk's own (both GPT headers, the protective MBR).
    for (const partition of await partitionsOf(disk)) {
      await runTool('wipefs', ['-a', partition], {
        what: `wipe old signatures on ${partition}`,
        code: 'E_PARTITION_FAILED',
        path: partition,
        hint: 'the old partition could not be cleared; see the message above',
        logger,
      })
    }
    await runTool('wipefs', ['-a', plan.disk], {
      what: `wipe old signatures on ${plan.disk}`,
      code: 'E_PARTITION_FAILED',
      path: plan.disk,
      hint: 'the disk could not be cleared; see the message above',
      logger,
    })
    // sfdisk has the kernel re-read the table when it is done, and fails if it cannot.
    await runTool('sfdisk', ['--wipe', 'always', '--wipe-partitions', 'always', plan.disk], {
      what: `write the partition table of ${plan.disk}`,
      code: 'E_PARTITION_FAILED',
      path: plan.disk,
      hint: 'see sfdisk’s message above; a disk in use (held by RAID or LVM) needs a reboot first',
      input: sfdiskScript(plan),
      logger,
    })
    await waitForDevices(
      plan.partitions.map((part) => part.device),
      PARTITION_WAIT_MS,
    )
  }

  for (const fs of layout.filesystems) {
    if (!fs.format) {
      console.say(`keeping ${fs.type} on ${fs.device} (${fs.mountPoint}) as it is`)
      continue
    }
    console.say(`making ${fs.type} on ${fs.device} (${fs.mountPoint})`)
    const { command, args } = mkfsCommand(fs)
    await runTool(command, args, {
      what: `make ${fs.type} on ${fs.device}`,
      code: 'E_PARTITION_FAILED',
      path: fs.device,
      hint: 'see the message above (mkfs options in the layout?)',
      logger,
    })
  }
  const uuids = new Map<string, string>()
  for (const fs of layout.filesystems) {
    const { output } = await runTool('blkid', ['-o', 'value', '-s', 'UUID', fs.device], {
      what: `read the UUID of ${fs.device}`,
      code: 'E_PARTITION_FAILED',
      path: fs.device,
      hint: 'blkid found no filesystem there: mkfs failed, or the layout keeps a partition that holds none (format="no")',
      logger,
    })
    const uuid = output.trim().split('\n')[0]
    if (uuid) uuids.set(fs.device, uuid)
  }

  for (const fs of mountOrder(layout.filesystems)) {
    const at = join(options.target, fs.mountPoint)
    await mkdir(at, { recursive: true })
    await options.mounts.mount(
      'filesystem',
      ['-t', fs.type, '-o', installMountOptions(fs.mountOptions), fs.device],
      at,
      `mount ${fs.device} on ${at}`,
    )
  }
  console.say(
    `mounted ${mountOrder(layout.filesystems)
      .map((fs) => `${fs.device} on ${fs.mountPoint}`)
      .join(', ')} under ${options.target}`,
  )
  return { plans, bootloader, uuids }
}

/** Each disk of the layout, found among the node's: E_DISK_MISSING listing what is there. */
async function matchDisks(
  layout: DiskLayout,
  disks: readonly BlockDisk[],
): Promise<Map<string, BlockDisk>> {
  const found = new Map<string, BlockDisk>()
  const missing: string[] = []
  for (const disk of layout.disks) {
    // A by-id or by-path name, where udev made one, is the disk it points at.
    const real = await realpath(disk.dev).catch(() => disk.dev)
    const match = disks.find(
      (candidate) => candidate.device === real || candidate.device === disk.dev,
    )
    if (match) found.set(disk.dev, match)
    else missing.push(disk.dev)
  }
  if (missing.length > 0) {
    throw new ImageSwarmError(
      'E_DISK_MISSING',
      `the disk layout names ${missing.join(', ')}, which this node does not have; its disks: ${describeDisks(disks)}`,
      {
        operation: 'check disks',
        path: missing[0] as string,
        hint: 'fix the disk names in the layout for this hardware, or give the node the disk (a driver missing from the ramdisk? imageswarm.modules=)',
      },
    )
  }
  return found
}

/** Each filesystem of the layout is on a partition the layout makes, or on a disk it leaves alone. */
function checkFilesystemDevices(
  layout: DiskLayout,
  plans: readonly PartitionPlan[],
  disks: readonly BlockDisk[],
): void {
  const planned = new Set(plans.flatMap((plan) => plan.partitions.map((part) => part.device)))
  for (const fs of layout.filesystems) {
    if (planned.has(fs.device)) continue
    const disk = diskOf(fs.device, disks)
    if (disk && plans.some((plan) => plan.disk === disk.device)) {
      throw new ImageSwarmError(
        'E_LAYOUT_INVALID',
        `the filesystem for ${fs.mountPoint} is on ${fs.device}, a partition the layout does not make on ${disk.device}`,
        {
          operation: 'check the disk layout',
          path: fs.device,
          hint: 'fix the filesystem’s device (real_dev) or the partitions in the layout',
        },
      )
    }
    if (fs.format) {
      throw new ImageSwarmError(
        'E_LAYOUT_INVALID',
        `the layout formats ${fs.device} (${fs.mountPoint}), on no disk it partitions`,
        {
          operation: 'check the disk layout',
          path: fs.device,
          hint: 'the installer formats only partitions it makes: add the disk to the layout, or keep the filesystem (format="no")',
        },
      )
    }
  }
}

/** A disk whose partitions are mounted or swapped on cannot be partitioned again. */
async function refuseDisksInUse(
  plans: readonly PartitionPlan[],
  disks: readonly BlockDisk[],
): Promise<void> {
  for (const { device, use } of await devicesInUse()) {
    const disk = diskOf(device, disks)
    if (disk && plans.some((plan) => plan.disk === disk.device)) {
      throw new ImageSwarmError(
        'E_PARTITION_FAILED',
        `${device} is ${use}; the layout partitions ${disk.device} again`,
        {
          operation: 'check disks',
          path: device,
          hint: `unmount it (umount ${device}, or swapoff) and run the installer again, or reboot the node`,
        },
      )
    }
  }
}

/** The partition device nodes the kernel knows on `disk` now (`/dev/vda1`, …). */
async function partitionsOf(disk: BlockDisk): Promise<string[]> {
  const entries = await readdir(join('/sys/block', disk.name)).catch(() => [] as string[])
  const devDir = disk.device.slice(0, -disk.name.length)
  return entries
    .filter((name) => name.startsWith(disk.name) && name !== disk.name)
    .sort()
    .map((name) => `${devDir}${name}`)
}
