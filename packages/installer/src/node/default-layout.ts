import { type DiskLayout, DiskLayoutSchema, partitionDevice } from '@imageswarm/core'

/** A whole disk as the kernel shows it in /sys/block. */
export interface BlockDisk {
  /** `vda`, `sda`, `nvme0n1`. */
  name: string
  /** `/dev/vda`. */
  device: string
  bytes: number
  /** Logical sector size (`queue/logical_block_size`). */
  sectorSize: number
  removable: boolean
  readOnly: boolean
}

/** How the firmware booted the node: GRUB goes in for the same. */
export type Firmware = 'bios' | 'uefi'

/** Size of the EFI system partition of the default layout (what Debian's installer makes). */
export const DEFAULT_ESP_MIB = 256

/**
 * Disk families in the order the first disk is picked from: virtio, SCSI/SATA/USB, NVMe,
 * Xen, IDE, MMC/SD. A disk of another kind (a RAID volume, a loop device) is never chosen
 * by default; a layout can still name it.
 */
const DISK_FAMILIES: readonly { pattern: RegExp; index: (match: RegExpExecArray) => number[] }[] = [
  { pattern: /^vd([a-z]+)$/, index: (m) => [letters(m[1] as string)] },
  { pattern: /^sd([a-z]+)$/, index: (m) => [letters(m[1] as string)] },
  { pattern: /^nvme(\d+)n(\d+)$/, index: (m) => [Number(m[1]), Number(m[2])] },
  { pattern: /^xvd([a-z]+)$/, index: (m) => [letters(m[1] as string)] },
  { pattern: /^hd([a-z]+)$/, index: (m) => [letters(m[1] as string)] },
  { pattern: /^mmcblk(\d+)$/, index: (m) => [Number(m[1])] },
]

/** `a` → 0, `z` → 25, `aa` → 26: the kernel's order of sd/vd names. */
function letters(text: string): number {
  let value = 0
  for (const char of text) value = value * 26 + (char.charCodeAt(0) - 96)
  return value - 1
}

/**
 * The disk an install with no layout goes onto: the first fixed, writable, non-empty disk
 * (`vda` before `vdb`, virtio before SCSI before NVMe …). Undefined when there is none.
 *
 * @example chooseInstallDisk(disks)?.device // '/dev/vda'
 */
export function chooseInstallDisk(disks: readonly BlockDisk[]): BlockDisk | undefined {
  const ranked = disks.flatMap((disk) => {
    if (disk.removable || disk.readOnly || disk.bytes <= 0) return []
    for (const [family, { pattern, index }] of DISK_FAMILIES.entries()) {
      const match = pattern.exec(disk.name)
      if (match) return [{ disk, key: [family, ...index(match)] }]
    }
    return []
  })
  ranked.sort((a, b) => {
    for (let i = 0; i < Math.max(a.key.length, b.key.length); i++) {
      const difference = (a.key[i] ?? 0) - (b.key[i] ?? 0)
      if (difference !== 0) return difference
    }
    return 0
  })
  return ranked[0]?.disk
}

/**
 * The layout of a node whose server names none (the "sensible default"): the whole
 * disk, gpt, a 1 MiB BIOS boot partition for GRUB (harmless under UEFI), a 256 MiB EFI
 * system partition at /boot/efi when the node booted by UEFI, and ext4 `/` on the rest.
 *
 * @example defaultLayout('/dev/vda', 'bios').filesystems
 *   // [{ device: '/dev/vda2', mountPoint: '/', type: 'ext4', pass: 1, … }]
 */
export function defaultLayout(disk: string, firmware: Firmware): DiskLayout {
  const uefi = firmware === 'uefi'
  const root = uefi ? 3 : 2
  return DiskLayoutSchema.parse({
    disks: [
      {
        dev: disk,
        label: 'gpt',
        partitions: [
          { num: 1, size: { value: 1, unit: 'MiB' }, flags: ['bios_grub'] },
          ...(uefi
            ? [{ num: 2, size: { value: DEFAULT_ESP_MIB, unit: 'MiB' }, flags: ['esp'] }]
            : []),
          { num: root, size: '*' },
        ],
      },
    ],
    filesystems: [
      { device: partitionDevice(disk, root), mountPoint: '/', type: 'ext4', pass: 1 },
      ...(uefi
        ? [
            {
              device: partitionDevice(disk, 2),
              mountPoint: '/boot/efi',
              type: 'vfat',
              // Debian's installer mounts its ESP so; only root reads the boot files.
              mountOptions: 'umask=0077',
              pass: 2,
            },
          ]
        : []),
    ],
  })
}
