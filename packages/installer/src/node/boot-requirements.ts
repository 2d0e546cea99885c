import { type DiskLayout, ImageSwarmError } from '@imageswarm/core'
import type { Firmware } from './default-layout.js'
import { GPT_TYPES, type PartitionPlan } from './partition-plan.js'

/** Where the EFI system partition is mounted, as Debian's and RHEL's GRUB packages expect. */
export const ESP_MOUNT_POINT = '/boot/efi'

/** How GRUB goes onto the node. */
export interface BootloaderPlan {
  /** `legacy`: into the boot area of each target disk (BIOS); `efi`: onto the ESP (UEFI). */
  installType: 'legacy' | 'efi'
  /** legacy: the disks GRUB is installed on. */
  targets: string[]
}

/**
 * The bootloader a layout needs on a node booted by `firmware`, checked before any disk is
 * touched: GRUB for BIOS on a gpt disk needs a BIOS boot partition to embed itself in;
 * UEFI needs an EFI system partition (vfat) at /boot/efi. The layout's `bootloader`, when
 * it has one, says legacy or efi; else the firmware the node booted with does.
 *
 * @example planBootloader(defaultLayout('/dev/vda', 'bios'), plans, 'bios')
 *   // { installType: 'legacy', targets: ['/dev/vda'] }
 */
export function planBootloader(
  layout: DiskLayout,
  plans: readonly PartitionPlan[],
  firmware: Firmware,
): BootloaderPlan {
  const installType = layout.bootloader?.installType ?? (firmware === 'uefi' ? 'efi' : 'legacy')
  if (installType === 'efi') {
    if (firmware !== 'uefi') {
      throw invalid(
        'the disk layout installs GRUB for UEFI (install_type="efi"), but this node booted by BIOS',
        'boot the node by UEFI, or make the layout’s bootloader legacy',
      )
    }
    const esp = layout.filesystems.find((fs) => fs.mountPoint === ESP_MOUNT_POINT)
    if (esp?.type !== 'vfat') {
      throw invalid(
        `booting by UEFI needs an EFI system partition mounted at ${ESP_MOUNT_POINT} (vfat); the layout has ${esp ? `${esp.type} there` : 'none'}`,
        `add one to the layout (a partition with flags esp, 256 MiB, vfat at ${ESP_MOUNT_POINT})`,
      )
    }
    return { installType, targets: [] }
  }
  let targets = layout.bootloader?.targets ?? []
  if (targets.length === 0) {
    const root = layout.filesystems.find((fs) => fs.mountPoint === '/')
    const plan = plans.find((candidate) =>
      candidate.partitions.some((part) => part.device === root?.device),
    )
    if (!plan) {
      throw invalid(
        `/ is on ${root?.device ?? 'no device'}, on no disk the layout partitions: the installer cannot tell which disk GRUB goes on`,
        'name the disk in the layout’s bootloader (<target dev="/dev/sda"/>)',
      )
    }
    targets = [plan.disk]
  }
  for (const target of targets) {
    const plan = plans.find((candidate) => candidate.disk === target)
    if (
      plan?.label === 'gpt' &&
      !plan.partitions.some((part) => part.type === GPT_TYPES.biosBoot)
    ) {
      throw invalid(
        `GRUB for BIOS on gpt disk ${target} needs a BIOS boot partition to embed itself in; the layout has none`,
        'add a 1 MiB partition with flags bios_grub to the disk, or use a msdos label',
      )
    }
  }
  return { installType, targets }
}

function invalid(message: string, hint: string): ImageSwarmError {
  return new ImageSwarmError('E_LAYOUT_INVALID', message, {
    operation: 'check the bootloader',
    hint,
  })
}
