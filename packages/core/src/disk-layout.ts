import { z } from 'zod'

/**
 * How a node's disks are partitioned, formatted and mounted: the JSON form of
 * SystemImager 5's disks-layout XML (`/var/lib/systemimager/scripts/disks-layouts/NAME.xml`,
 * `man systemimager.disks-layout`). The server reads the XML and checks it when it starts,
 * so a bad layout is one error on the server, not one on every node; the installer takes
 * this form. Names follow the XML's: `disk dev label_type`, `part num size p_type p_name
 * flags`, `fsinfo real_dev mount_dev mp fs mkfs_opts options dump pass format`,
 * `bootloader flavor install_type timeout target`.
 *
 * @example
 *   { disks: [{ dev: '/dev/vda', label: 'gpt', partitions: [
 *       { num: 1, size: { value: 1, unit: 'MiB' }, type: 'primary', flags: ['bios_grub'] },
 *       { num: 2, size: '*', type: 'primary', flags: [] }] }],
 *     filesystems: [{ device: '/dev/vda2', mountPoint: '/', type: 'ext4', format: true,
 *       mountOptions: 'defaults', dump: 0, pass: 1 }] }
 */

/** Units SystemImager 5 accepts for a partition size (`%` of the whole disk). */
export const SIZE_UNITS = [
  'B',
  's',
  'kB',
  'KiB',
  'MB',
  'MiB',
  'GB',
  'GiB',
  'TB',
  'TiB',
  '%',
] as const
export type SizeUnit = (typeof SIZE_UNITS)[number]

const UNIT_BYTES: Record<Exclude<SizeUnit, '%'>, number> = {
  B: 1,
  s: 512,
  kB: 1000,
  KiB: 1024,
  MB: 1000 ** 2,
  MiB: 1024 ** 2,
  GB: 1000 ** 3,
  GiB: 1024 ** 3,
  TB: 1000 ** 4,
  TiB: 1024 ** 4,
}

/**
 * Partition flags, SystemImager's (`boot`, `esp`, `swap`, `lvm`, `raid`, `hidden`, `lba`,
 * `legacy_boot`, `root`) and `bios_grub` (parted's name), which marks GRUB's BIOS boot
 * partition on a GPT disk.
 */
export const PARTITION_FLAGS = [
  'boot',
  'esp',
  'bios_grub',
  'swap',
  'lvm',
  'raid',
  'hidden',
  'lba',
  'legacy_boot',
  'root',
] as const
export type PartitionFlag = (typeof PARTITION_FLAGS)[number]

/** Filesystems the installer makes (SystemImager 5's list has more; those are refused). */
export const FILESYSTEM_TYPES = ['ext2', 'ext3', 'ext4', 'xfs', 'vfat', 'swap'] as const
export type FilesystemType = (typeof FILESYSTEM_TYPES)[number]

/**
 * Longest label each filesystem takes (e2label 16, xfs_admin 12, mkfs.vfat 11, mkswap 16):
 * mkfs refuses or cuts a longer one. The server checks layouts against it when it reads
 * them, the installer again before it runs mkfs.
 */
export const FILESYSTEM_LABEL_MAX: Readonly<Record<FilesystemType, number>> = {
  ext2: 16,
  ext3: 16,
  ext4: 16,
  xfs: 12,
  vfat: 11,
  swap: 16,
}

const DevicePath = z.string().regex(/^\/dev\/[A-Za-z0-9._/-]+$/, 'a device such as /dev/sda')

export const PartitionSizeSchema = z.union([
  z.literal('*'),
  z.strictObject({ value: z.number().positive(), unit: z.enum(SIZE_UNITS) }),
])
export type PartitionSize = z.output<typeof PartitionSizeSchema>

export const PartitionSchema = z.strictObject({
  num: z.number().int().min(1).max(128),
  /**
   * `*`: what is left of the disk (one primary or extended partition per disk), or, for a
   * logical partition, of the extended one (one logical per disk): SystemImager's own
   * msdos example has both. As SystemImager 5 lays them out, partitions listed before
   * the `*` one start at the beginning of the free space, in order; those after it end at
   * its end.
   */
  size: PartitionSizeSchema,
  type: z.enum(['primary', 'extended', 'logical']).default('primary'),
  /** The GPT partition name (SystemImager's `p_name`). */
  name: z.string().max(36).optional(),
  flags: z.array(z.enum(PARTITION_FLAGS)).default([]),
})
export type Partition = z.output<typeof PartitionSchema>

export const DiskSchema = z.strictObject({
  dev: DevicePath,
  label: z.enum(['gpt', 'msdos']),
  partitions: z.array(PartitionSchema).min(1),
})
export type Disk = z.output<typeof DiskSchema>

export const FilesystemSchema = z.strictObject({
  /** The partition (SystemImager's `real_dev`): `/dev/sda2`, `/dev/nvme0n1p2`. */
  device: DevicePath,
  /** What fstab names it by (`mount_dev`): `UUID=…` or `LABEL=…`; default: its new UUID. */
  mountDevice: z
    .string()
    .regex(/^(UUID|LABEL)=\S+$/)
    .optional(),
  /** `/`, `/boot/efi`, … or `swap`. */
  mountPoint: z.string().regex(/^(\/[^\s]*|swap)$/, 'an absolute path or swap'),
  type: z.enum(FILESYSTEM_TYPES),
  label: z.string().max(16).optional(),
  /** Extra options for mkfs (`mkfs_opts`), split on spaces. */
  mkfsOptions: z.string().max(512).optional(),
  /** fstab's options (`options`). */
  mountOptions: z.string().min(1).default('defaults'),
  dump: z.number().int().min(0).max(1).default(0),
  pass: z.number().int().min(0).max(2).default(0),
  /** False: the filesystem is kept as it is and only mounted (`format="no"`). */
  format: z.boolean().default(true),
})
export type Filesystem = z.output<typeof FilesystemSchema>

export const BootloaderSchema = z.strictObject({
  flavor: z.literal('grub2'),
  /** `legacy`: BIOS (GRUB into the disk's boot area); `efi`: UEFI (GRUB on the ESP). */
  installType: z.enum(['legacy', 'efi']),
  /** Disks GRUB goes onto for `legacy`; default: the disk holding `/`. */
  targets: z.array(DevicePath).default([]),
  timeout: z.number().int().min(0).max(600).optional(),
})
export type Bootloader = z.output<typeof BootloaderSchema>

export const DiskLayoutSchema = z
  .strictObject({
    disks: z.array(DiskSchema).min(1),
    filesystems: z.array(FilesystemSchema).min(1),
    /** Absent: GRUB for the firmware the node booted with. */
    bootloader: BootloaderSchema.optional(),
  })
  .superRefine((layout, ctx) => {
    for (const [d, disk] of layout.disks.entries()) {
      const nums = new Set<number>()
      const grows = { outer: 0, logical: 0 }
      for (const [p, part] of disk.partitions.entries()) {
        if (nums.has(part.num)) {
          ctx.addIssue({
            code: 'custom',
            path: ['disks', d, 'partitions', p, 'num'],
            message: `partition ${part.num} appears twice on ${disk.dev}`,
          })
        }
        nums.add(part.num)
        if (part.size === '*') grows[part.type === 'logical' ? 'logical' : 'outer']++
        if (disk.label === 'gpt' && part.type !== 'primary') {
          ctx.addIssue({
            code: 'custom',
            path: ['disks', d, 'partitions', p, 'type'],
            message: 'a gpt disk has only primary partitions',
          })
        }
      }
      if (grows.outer > 1 || grows.logical > 1) {
        ctx.addIssue({
          code: 'custom',
          path: ['disks', d, 'partitions'],
          message:
            grows.logical > 1
              ? `only one logical partition of ${disk.dev} can take the rest of the extended one (size *)`
              : `only one partition of ${disk.dev} can take the rest of the disk (size *)`,
        })
      }
    }
    const mountPoints = new Set<string>()
    for (const [f, fs] of layout.filesystems.entries()) {
      if (fs.mountPoint !== 'swap' && mountPoints.has(fs.mountPoint)) {
        ctx.addIssue({
          code: 'custom',
          path: ['filesystems', f, 'mountPoint'],
          message: `${fs.mountPoint} is mounted twice`,
        })
      }
      mountPoints.add(fs.mountPoint)
      if ((fs.type === 'swap') !== (fs.mountPoint === 'swap')) {
        ctx.addIssue({
          code: 'custom',
          path: ['filesystems', f],
          message: 'swap is mounted as swap, and only swap is',
        })
      }
    }
    if (!mountPoints.has('/')) {
      ctx.addIssue({
        code: 'custom',
        path: ['filesystems'],
        message: 'no filesystem is mounted at /',
      })
    }
  })
export type DiskLayout = z.output<typeof DiskLayoutSchema>

/**
 * The device of partition `num` of `disk`, as the kernel names it: `/dev/sda` → `/dev/sda2`,
 * but `/dev/nvme0n1` and `/dev/mmcblk0` (names ending in a digit) → `/dev/nvme0n1p2`.
 */
export function partitionDevice(disk: string, num: number): string {
  return /\d$/.test(disk) ? `${disk}p${num}` : `${disk}${num}`
}

/**
 * A partition's size in bytes on a disk of `diskBytes`; undefined for `*` (the rest).
 *
 * @example partitionBytes({ value: 50, unit: '%' }, 8 * 1024 ** 3) // 4 GiB
 */
export function partitionBytes(size: PartitionSize, diskBytes: number): number | undefined {
  if (size === '*') return undefined
  if (size.unit === '%') return Math.floor((diskBytes * size.value) / 100)
  return Math.round(size.value * UNIT_BYTES[size.unit])
}
