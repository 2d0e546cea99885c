import {
  type Disk,
  type Filesystem,
  ImageSwarmError,
  type Partition,
  partitionBytes,
  partitionDevice,
} from '@imageswarm/core'

/**
 * Every partition starts on a 1 MiB boundary and fixed sizes are whole MiB: what parted,
 * fdisk and SystemImager 5 (at least 2048 sectors) do; it suits 4 KiB-sector disks, SSD
 * erase blocks and RAID stripes, and leaves GRUB its gap after a msdos label.
 */
export const ALIGNMENT_BYTES = 1024 * 1024

/** GPT partition type GUIDs (the UEFI spec's, and systemd's Discoverable Partitions). */
export const GPT_TYPES = {
  biosBoot: '21686148-6449-6E6F-744E-656564454649',
  efiSystem: 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B',
  linuxSwap: '0657FD6D-A4AB-43C4-84E5-0933C84B4F4F',
  linuxFilesystem: '0FC63DAF-8483-4772-8E79-3D69D8477DE4',
  linuxLvm: 'E6D6D379-F507-44C2-A23C-238F2A3DF928',
  linuxRaid: 'A19D880F-05FC-4D3B-A006-743F0F84911E',
  microsoftBasicData: 'EBD0A0A2-B9E5-4433-87C0-68B6B72699C7',
} as const

/** msdos partition ids, as SystemImager 5 sets them. */
export const MSDOS_TYPES = {
  linux: '83',
  linuxSwap: '82',
  efiSystem: 'ef',
  linuxLvm: '8e',
  linuxRaid: 'fd',
  fat32: 'c',
  extended: '5',
} as const

/** A msdos label addresses 2^32 sectors: 2 TiB with 512-byte sectors. */
const MSDOS_SECTOR_LIMIT = 2 ** 32

/** GPT keeps 128 entries of 128 bytes at each end of the disk, plus a header sector. */
const GPT_ENTRIES_BYTES = 128 * 128

export interface PlannedPartition {
  num: number
  /** `/dev/vda2`, `/dev/nvme0n1p2`. */
  device: string
  kind: Partition['type']
  /** First sector. */
  start: number
  sectors: number
  /** GPT type GUID or msdos id. */
  type: string
  /** msdos: the active (boot) flag. */
  bootable: boolean
  /** GPT attribute bits by name (`LegacyBIOSBootable`). */
  attributes: string[]
  /** GPT partition name. */
  name?: string
}

export interface PartitionPlan {
  disk: string
  label: Disk['label']
  sectorSize: number
  totalSectors: number
  /** In the layout's order. */
  partitions: PlannedPartition[]
  /** Flags the label has no use for, said once each (`hidden on gpt: ignored`). */
  notes: string[]
}

interface Span {
  start: number
  /** One past the last usable sector. */
  end: number
}

/**
 * Where each partition of `disk` goes on a disk of `diskBytes`, as SystemImager 5 lays them
 * out: in the layout's order, the partitions before the one of size `*` from the start of
 * the free space, those after it ending at its end, and the `*` one taking what is left
 * between; logical partitions the same way inside their extended partition, each after a
 * 1 MiB gap for its extended boot record. Starts are aligned to 1 MiB; a fixed size is
 * rounded up to whole MiB (at least what was asked), a percentage (of the whole disk, as in
 * SystemImager) down (so that 50 % + 50 % fits).
 *
 * Throws E_DISK_TOO_SMALL (with the numbers) when the fixed sizes do not fit or leave the
 * `*` partition nothing, and E_LAYOUT_INVALID for what the label cannot hold.
 *
 * @example
 *   planPartitions({ dev: '/dev/vda', label: 'gpt', partitions: [
 *     { num: 1, size: { value: 1, unit: 'MiB' }, type: 'primary', flags: ['bios_grub'] },
 *     { num: 2, size: '*', type: 'primary', flags: [] }] }, 4 * 2 ** 30, 512, [])
 *   // partitions: vda1 2048 + 2048 sectors (BIOS boot), vda2 4096 + 8382464 (Linux filesystem)
 */
export function planPartitions(
  disk: Disk,
  diskBytes: number,
  sectorSize: number,
  filesystems: readonly Filesystem[],
): PartitionPlan {
  const align = Math.max(1, ALIGNMENT_BYTES / sectorSize)
  const totalSectors = Math.floor(diskBytes / sectorSize)
  const notes: string[] = []
  checkNumbers(disk)
  // The backup GPT (its entries, then its header) takes the last sectors of the disk.
  const usableEnd =
    disk.label === 'gpt'
      ? totalSectors - Math.ceil(GPT_ENTRIES_BYTES / sectorSize) - 1
      : Math.min(totalSectors, MSDOS_SECTOR_LIMIT)
  const usable: Span = { start: align, end: alignDown(usableEnd, align) }
  const sectorsOf = (part: Partition): number | undefined => {
    const bytes = partitionBytes(part.size, diskBytes)
    if (bytes === undefined) return undefined
    const sectors = Math.ceil(bytes / sectorSize)
    return part.size !== '*' && part.size.unit === '%'
      ? alignDown(sectors, align)
      : alignUp(sectors, align)
  }

  const outer = disk.partitions.filter((part) => part.type !== 'logical')
  const logical = disk.partitions.filter((part) => part.type === 'logical')
  const spans = new Map<number, Span>()
  const outerSpans = place(outer, usable, 0, sectorsOf, align)
  if (!outerSpans) throw tooSmall(disk, diskBytes, sectorSize, outer, sectorsOf, align)
  for (const [num, span] of outerSpans) spans.set(num, span)

  if (logical.length > 0) {
    const extended = outer.find((part) => part.type === 'extended')
    const extendedSpan = extended && spans.get(extended.num)
    if (!extended || !extendedSpan) {
      throw invalid(disk, 'has logical partitions but no extended partition to hold them')
    }
    const inside = place(logical, extendedSpan, align, sectorsOf, align)
    if (!inside) {
      const needed = logical.reduce((sum, part) => sum + align + (sectorsOf(part) ?? align), 0)
      throw invalid(
        disk,
        `extended partition ${extended.num} holds ${mib(extendedSpan.end - extendedSpan.start, sectorSize)}, its logical partitions need ${mib(needed, sectorSize)} (1 MiB before each for its boot record)`,
      )
    }
    for (const [num, span] of inside) spans.set(num, span)
  }

  const partitions = disk.partitions.map((part): PlannedPartition => {
    const span = spans.get(part.num) as Span
    const device = partitionDevice(disk.dev, part.num)
    const filesystem = filesystems.find((fs) => fs.device === device)
    const typed = partitionType(disk, part, filesystem, notes)
    return {
      num: part.num,
      device,
      kind: part.type,
      start: span.start,
      sectors: span.end - span.start,
      ...typed,
      ...(part.name === undefined ? {} : { name: part.name }),
    }
  })
  return { disk: disk.dev, label: disk.label, sectorSize, totalSectors, partitions, notes }
}

/**
 * Places `parts` in `span` (each after a gap of `gap` sectors: logical partitions' boot
 * records): the ones before the `*` from the start, the ones after it ending at the end.
 * Undefined when they do not fit or leave the `*` one less than one alignment unit.
 */
function place(
  parts: readonly Partition[],
  span: Span,
  gap: number,
  sectorsOf: (part: Partition) => number | undefined,
  align: number,
): Map<number, Span> | undefined {
  const placed = new Map<number, Span>()
  const grow = parts.findIndex((part) => part.size === '*')
  const before = grow === -1 ? parts : parts.slice(0, grow)
  const after = grow === -1 ? [] : parts.slice(grow + 1)
  let cursor = span.start
  for (const part of before) {
    const start = alignUp(cursor + gap, align)
    const end = start + (sectorsOf(part) as number)
    placed.set(part.num, { start, end })
    cursor = end
  }
  let tail = span.end
  for (const part of [...after].reverse()) {
    const end = tail
    const start = end - (sectorsOf(part) as number)
    placed.set(part.num, { start, end })
    tail = alignDown(start - gap, align)
  }
  const growing = grow === -1 ? undefined : parts[grow]
  if (growing) {
    const start = alignUp(cursor + gap, align)
    placed.set(growing.num, { start, end: tail })
    if (tail - start < align) return undefined
  } else if (cursor > tail) {
    return undefined
  }
  for (const { start, end } of placed.values()) {
    if (start < span.start || end > span.end || end <= start) return undefined
  }
  return placed
}

/** The partition's type and flags as the label says them. */
function partitionType(
  disk: Disk,
  part: Partition,
  filesystem: Filesystem | undefined,
  notes: string[],
): Pick<PlannedPartition, 'type' | 'bootable' | 'attributes'> {
  const has = (flag: Partition['flags'][number]) => part.flags.includes(flag)
  const note = (flag: string, why: string) => {
    const text = `flag ${flag} on ${disk.label}: ${why}`
    if (!notes.includes(text)) notes.push(text)
  }
  const swap = has('swap') || filesystem?.type === 'swap'
  const vfat = filesystem?.type === 'vfat'
  if (disk.label === 'gpt') {
    for (const flag of ['hidden', 'lba', 'root'] as const) {
      if (has(flag)) note(flag, 'no meaning on a gpt disk, ignored')
    }
    const type = has('bios_grub')
      ? GPT_TYPES.biosBoot
      : has('esp') || has('boot')
        ? GPT_TYPES.efiSystem
        : swap
          ? GPT_TYPES.linuxSwap
          : has('lvm')
            ? GPT_TYPES.linuxLvm
            : has('raid')
              ? GPT_TYPES.linuxRaid
              : vfat
                ? GPT_TYPES.microsoftBasicData
                : GPT_TYPES.linuxFilesystem
    return { type, bootable: false, attributes: has('legacy_boot') ? ['LegacyBIOSBootable'] : [] }
  }
  if (has('bios_grub')) {
    throw invalid(
      disk,
      `partition ${part.num} has flag bios_grub, which only a gpt disk has (GRUB uses the gap after a msdos label)`,
    )
  }
  for (const flag of ['hidden', 'lba', 'root'] as const) {
    if (has(flag)) note(flag, 'not set by the installer, ignored')
  }
  const type =
    part.type === 'extended'
      ? MSDOS_TYPES.extended
      : has('esp')
        ? MSDOS_TYPES.efiSystem
        : swap
          ? MSDOS_TYPES.linuxSwap
          : has('lvm')
            ? MSDOS_TYPES.linuxLvm
            : has('raid')
              ? MSDOS_TYPES.linuxRaid
              : vfat
                ? MSDOS_TYPES.fat32
                : MSDOS_TYPES.linux
  return { type, bootable: has('boot') || has('legacy_boot'), attributes: [] }
}

/** Numbers a msdos label can hold: 1–4 for primary and extended, 5 on for logical. */
function checkNumbers(disk: Disk): void {
  for (const part of disk.partitions) {
    if (part.name !== undefined && /["\\\n]/.test(part.name)) {
      throw invalid(disk, `partition ${part.num}'s name ${JSON.stringify(part.name)} holds " or \\`)
    }
    if (disk.label !== 'msdos') continue
    if (part.type === 'logical' ? part.num < 5 : part.num > 4) {
      throw invalid(
        disk,
        `${part.type} partition ${part.num}: on a msdos disk primary and extended partitions are 1 to 4, logical ones 5 and up`,
      )
    }
    if (part.type === 'extended' && part.flags.length > 0) {
      throw invalid(disk, `extended partition ${part.num} takes no flags (${part.flags.join(',')})`)
    }
  }
  if (disk.partitions.filter((part) => part.type === 'extended').length > 1) {
    throw invalid(disk, 'has more than one extended partition')
  }
}

function tooSmall(
  disk: Disk,
  diskBytes: number,
  sectorSize: number,
  outer: readonly Partition[],
  sectorsOf: (part: Partition) => number | undefined,
  align: number,
): ImageSwarmError {
  const fixed = outer.filter((part) => part.size !== '*')
  const fixedSectors = fixed.reduce((sum, part) => sum + (sectorsOf(part) as number), 0)
  const grows = outer.find((part) => part.size === '*')
  // The label's own space: 1 MiB at the start (the label, GRUB's gap), the backup GPT at the end.
  const overhead = align + (disk.label === 'gpt' ? align : 0)
  const needed = fixedSectors + overhead + (grows ? align : 0)
  const parts = fixed.map((part) => `${part.num}: ${mib(sectorsOf(part) as number, sectorSize)}`)
  return new ImageSwarmError(
    'E_DISK_TOO_SMALL',
    `disk ${disk.dev} has ${mib(Math.floor(diskBytes / sectorSize), sectorSize)} (${diskBytes} bytes); its layout needs at least ${mib(needed, sectorSize)}: partitions ${parts.join(', ')}${grows ? `, at least 1 MiB for partition ${grows.num} (size *)` : ''} and 1 MiB${disk.label === 'gpt' ? ' at each end' : ''} for the ${disk.label} label`,
    {
      operation: 'plan partitions',
      path: disk.dev,
      hint: 'give the node a larger disk, or make the layout fit (smaller sizes, % of the disk, or * for the rest)',
    },
  )
}

function invalid(disk: Disk, what: string): ImageSwarmError {
  return new ImageSwarmError('E_LAYOUT_INVALID', `disk ${disk.dev} in the layout ${what}`, {
    operation: 'plan partitions',
    path: disk.dev,
    hint: 'fix the disk layout on the image server (scripts/disks-layouts/NAME.xml)',
  })
}

/**
 * The input `sfdisk` takes to write this table: the label, then one line per partition
 * named by its device (sfdisk takes the number from the name, so gaps in the numbering
 * stay gaps), with start and size in sectors.
 *
 * @example
 *   label: gpt
 *   unit: sectors
 *   first-lba: 2048
 *
 *   /dev/vda1 : start=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649
 *   /dev/vda2 : start=4096, size=8382464, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4
 */
export function sfdiskScript(plan: PartitionPlan): string {
  const align = Math.max(1, ALIGNMENT_BYTES / plan.sectorSize)
  const header = [
    `label: ${plan.label === 'msdos' ? 'dos' : 'gpt'}`,
    'unit: sectors',
    ...(plan.label === 'gpt' ? [`first-lba: ${align}`] : []),
  ]
  const lines = [...plan.partitions]
    .sort((a, b) => a.num - b.num)
    .map((part) => {
      const fields = [`start=${part.start}`, `size=${part.sectors}`, `type=${part.type}`]
      if (part.bootable) fields.push('bootable')
      if (part.attributes.length > 0) fields.push(`attrs="${part.attributes.join(' ')}"`)
      if (part.name !== undefined) fields.push(`name="${part.name}"`)
      return `${part.device} : ${fields.join(', ')}`
    })
  return `${header.join('\n')}\n\n${lines.join('\n')}\n`
}

function alignUp(sectors: number, align: number): number {
  return Math.ceil(sectors / align) * align
}

function alignDown(sectors: number, align: number): number {
  return Math.floor(sectors / align) * align
}

/** Sectors as MiB for a message: `2048 MiB`, `0.5 MiB`. */
export function mib(sectors: number, sectorSize: number): string {
  const value = (sectors * sectorSize) / ALIGNMENT_BYTES
  return `${Number.isInteger(value) ? value : value.toFixed(1)} MiB`
}
