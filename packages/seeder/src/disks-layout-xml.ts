import {
  type DiskLayout,
  DiskLayoutSchema,
  FILESYSTEM_LABEL_MAX,
  type FilesystemType,
  ImageSwarmError,
  PARTITION_FLAGS,
  type PartitionFlag,
  partitionDevice,
  type SizeUnit,
} from '@imageswarm/core'
import { readXmlElements, type XmlElement, XmlSyntaxError } from './xml-elements.js'

/**
 * A disks layout read from SystemImager 5's XML, in core's JSON form, with what the
 * installer will not apply from it (attributes it reads but ignores), for the log.
 */
export interface ParsedDisksLayout {
  layout: DiskLayout
  warnings: string[]
}

/** Layouts are a few hundred bytes; anything past this is not one. */
const MAX_LAYOUT_BYTES = 1024 * 1024

/**
 * SystemImager's schema fixes the order of `<config>`'s children (`disks-layout.xsd`:
 * `disk+, raid?, lvm?, bootloader*, fsinfo+, boel?`); xmlstarlet refuses any other on the
 * node, so this does too, on the server.
 */
const CONFIG_ORDER = ['disk', 'raid', 'lvm', 'bootloader', 'fsinfo', 'boel'] as const

const ATTRIBUTES: Record<string, readonly string[]> = {
  config: [],
  disk: ['dev', 'label_type', 'unit_of_measurement'],
  part: ['num', 'size', 'p_type', 'id', 'p_name', 'flags', 'raid_dev', 'lvm_group'],
  bootloader: ['flavor', 'install_type', 'default_entry', 'timeout'],
  target: ['dev', 'path'],
  fsinfo: [
    'line',
    'real_dev',
    'mount_dev',
    'mp',
    'fs',
    'mkfs_opts',
    'options',
    'dump',
    'pass',
    'format',
    'comment',
  ],
  boel: ['devstyle'],
}

/** `disks-layout.xsd`'s pattern for a disk: `/dev/sda`, `/dev/nvme0n1`, `/dev/cciss/c0d0`. */
const DISK_DEV = /^\/dev\/([a-z][a-z0-9]*\/)?[a-z][a-z0-9]*$/

const UNITS: Record<string, SizeUnit> = {
  TB: 'TB',
  TiB: 'TiB',
  GB: 'GB',
  GiB: 'GiB',
  MB: 'MB',
  MiB: 'MiB',
  kB: 'kB',
  KiB: 'KiB',
  B: 'B',
  s: 's',
  percent: '%',
  percentage: '%',
  '%': '%',
}

/** SystemImager's `fs` values the installer makes, and the mkfs options they imply. */
const FILESYSTEMS: Record<string, { type: FilesystemType; mkfs?: string }> = {
  ext2: { type: 'ext2' },
  ext3: { type: 'ext3' },
  ext4: { type: 'ext4' },
  xfs: { type: 'xfs' },
  swap: { type: 'swap' },
  vfat: { type: 'vfat' },
  msdos: { type: 'vfat' },
  fat: { type: 'vfat' },
  // SystemImager 5 runs `mkfs -t msdos -F 16|32` for these.
  fat16: { type: 'vfat', mkfs: '-F 16' },
  fat32: { type: 'vfat', mkfs: '-F 32' },
}

const RAID_HINT =
  'the imageswarm installer does not build software RAID: lay the disks out with plain partitions (one <disk> per disk, one filesystem per partition), or install this node with SystemImager itself'
const LVM_HINT =
  'the imageswarm installer does not build LVM volumes: give each filesystem its own partition, or install this node with SystemImager itself'
const SCHEMA_HINT =
  'see man systemimager.disks-layout (SystemImager 5) and the layouts section of the seeder README'

/** A problem with one element of one layout file. */
class LayoutProblem extends Error {
  constructor(
    readonly element: XmlElement | undefined,
    message: string,
    readonly hint: string = SCHEMA_HINT,
  ) {
    super(message)
  }
}

/**
 * Reads a SystemImager 5 disks-layout file (`/var/lib/systemimager/scripts/disks-layouts/
 * NAME.xml`) into core's DiskLayout, or refuses it with `E_LAYOUT_INVALID` naming the file,
 * the line and element, and what to do. Refused, because the installer cannot do it: RAID
 * (`<raid>`, `raid_dev`, flag `raid`), LVM (`<lvm>`, `lvm_group`, flag `lvm`), disks
 * labelled `none` or `convert`, filesystems other than ext2/3/4, xfs, vfat (also `msdos`,
 * `fat`, `fat16`, `fat32`) and swap, bootloaders other than GRUB 2.
 *
 * Mapping: `size` in the disk's `unit_of_measurement` (`percent` → `%`, of the whole disk),
 * `*` kept; `flags` as they are (`-` → none; `bios_grub` accepted besides SystemImager's);
 * `p_name` (gpt only; `-` → none); `fsinfo` sorted by `line`: `real_dev` → device,
 * `mount_dev="UUID=…|LABEL=…"` → mountDevice (a LABEL also becomes the filesystem's label,
 * as SystemImager does), `mp` (`none` for swap → `swap`), `options`, `dump`, `pass`,
 * `format="no"` → format: false, `mkfs_opts`; `<bootloader flavor="grub2" install_type
 * timeout>` with its `<target dev>` disks (legacy; for efi GRUB goes onto /boot/efi).
 *
 * @example parseDisksLayoutXml(readFileSync(file, 'utf8'), file).layout.disks[0].label // 'gpt'
 */
export function parseDisksLayoutXml(xml: string, file: string): ParsedDisksLayout {
  if (Buffer.byteLength(xml) > MAX_LAYOUT_BYTES) {
    throw layoutInvalid(file, new LayoutProblem(undefined, 'the file is larger than 1 MiB'))
  }
  let root: XmlElement
  try {
    root = readXmlElements(xml, file)
  } catch (err) {
    if (!(err instanceof XmlSyntaxError)) throw err
    // saxes writes `FILE:LINE:COLUMN: what`.
    const where = /^(.*:\d+:\d+): (.*)$/s.exec(err.message)
    const message = where
      ? `disks layout ${where[1]}: not well-formed XML: ${where[2]}`
      : `disks layout ${file}: not well-formed XML: ${err.message}`
    throw new ImageSwarmError('E_LAYOUT_INVALID', message, {
      operation: 'read disks layout',
      path: file,
      hint: 'fix the XML at that line (xmllint --noout FILE shows the same error)',
    })
  }
  try {
    return mapLayout(root)
  } catch (err) {
    if (err instanceof LayoutProblem) throw layoutInvalid(file, err)
    throw err
  }
}

function layoutInvalid(file: string, problem: LayoutProblem): ImageSwarmError {
  const where = problem.element ? `:${problem.element.line}: ${describe(problem.element)}` : ''
  return new ImageSwarmError(
    'E_LAYOUT_INVALID',
    `disks layout ${file}${where}: ${problem.message}`,
    {
      operation: 'read disks layout',
      path: file,
      hint: problem.hint,
    },
  )
}

/** `<part num="3">`: the element with the attribute that tells it apart from its siblings. */
function describe(element: XmlElement): string {
  const key = { disk: 'dev', part: 'num', fsinfo: 'line', target: 'dev', bootloader: 'flavor' }[
    element.name
  ]
  const value = key === undefined ? undefined : element.attributes[key]
  return value === undefined ? `<${element.name}>` : `<${element.name} ${key}="${value}">`
}

interface Mapped {
  layout: unknown
  warnings: string[]
  /** Which element each part of the JSON form came from, to place schema errors. */
  sources: Map<string, XmlElement>
}

function mapLayout(root: XmlElement): ParsedDisksLayout {
  if (root.name !== 'config') {
    throw new LayoutProblem(root, 'the root element must be <config>')
  }
  checkElement(root)
  const mapped: Mapped = { layout: undefined, warnings: [], sources: new Map() }
  checkOrder(root)
  const diskElements = root.children.filter((child) => child.name === 'disk')
  const disks = diskElements.map((element, d) => mapDisk(element, d, mapped))
  const partitions = partitionDevices(disks)
  const bootloaders = root.children.filter((child) => child.name === 'bootloader')
  if (bootloaders.length > 1) {
    throw new LayoutProblem(bootloaders[1], 'only one <bootloader> is allowed (as in SystemImager)')
  }
  const filesystems = mapFilesystems(root, partitions, mapped)
  const bootloader = bootloaders[0] && mapBootloader(bootloaders[0], disks, filesystems, mapped)
  mapped.layout = { disks, filesystems, ...(bootloader ? { bootloader } : {}) }
  const parsed = DiskLayoutSchema.safeParse(mapped.layout)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    const path = issue?.path ?? []
    let element: XmlElement | undefined
    for (let n = path.length; n >= 0 && element === undefined; n--) {
      element = mapped.sources.get(path.slice(0, n).join('.'))
    }
    throw new LayoutProblem(element ?? root, issue?.message ?? 'not a valid layout')
  }
  return { layout: parsed.data, warnings: mapped.warnings }
}

/** Only the attributes and children SystemImager's schema allows; no text. */
function checkElement(element: XmlElement): void {
  const allowed = ATTRIBUTES[element.name] ?? []
  for (const name of Object.keys(element.attributes)) {
    if (name === 'raid_dev')
      throw new LayoutProblem(element, `${name}=: software RAID is not supported`, RAID_HINT)
    if (name === 'lvm_group')
      throw new LayoutProblem(element, `${name}=: LVM is not supported`, LVM_HINT)
    if (!allowed.includes(name)) {
      throw new LayoutProblem(
        element,
        `unknown attribute ${name}= (allowed: ${allowed.join(', ') || 'none'})`,
      )
    }
  }
  if (element.text !== '') {
    throw new LayoutProblem(element, `unexpected text ${JSON.stringify(element.text.slice(0, 40))}`)
  }
}

function checkOrder(root: XmlElement): void {
  let position = 0
  for (const child of root.children) {
    if (child.name === 'raid')
      throw new LayoutProblem(child, 'software RAID is not supported', RAID_HINT)
    if (child.name === 'lvm') throw new LayoutProblem(child, 'LVM is not supported', LVM_HINT)
    const index = CONFIG_ORDER.indexOf(child.name as (typeof CONFIG_ORDER)[number])
    if (index === -1) {
      throw new LayoutProblem(
        child,
        `unknown element (<config> holds ${CONFIG_ORDER.map((name) => `<${name}>`).join(', ')})`,
      )
    }
    if (index < position) {
      throw new LayoutProblem(
        child,
        `out of order: <config> holds <disk>s, then <bootloader>, then <fsinfo>s, then <boel> (SystemImager's schema refuses any other order)`,
      )
    }
    position = index
    checkElement(child)
  }
  if (!root.children.some((child) => child.name === 'disk')) {
    throw new LayoutProblem(root, 'no <disk>: a layout partitions at least one disk')
  }
  if (!root.children.some((child) => child.name === 'fsinfo')) {
    throw new LayoutProblem(root, 'no <fsinfo>: a layout makes at least the / filesystem')
  }
}

interface MappedDisk {
  dev: string
  label: 'gpt' | 'msdos'
  partitions: {
    num: number
    size: '*' | { value: number; unit: SizeUnit }
    type: 'primary' | 'extended' | 'logical'
    name?: string
    flags: PartitionFlag[]
  }[]
}

function mapDisk(element: XmlElement, d: number, mapped: Mapped): MappedDisk {
  const dev = required(element, 'dev')
  if (!DISK_DEV.test(dev)) {
    throw new LayoutProblem(
      element,
      `dev="${dev}" is not a local disk (/dev/sda, /dev/vda, /dev/nvme0n1, /dev/cciss/c0d0)`,
      'name the whole disk as the kernel does; network filesystems belong in the image’s /etc/fstab or an override',
    )
  }
  const labelType = required(element, 'label_type')
  if (labelType === 'none' || labelType === 'convert') {
    throw new LayoutProblem(
      element,
      labelType === 'none'
        ? 'label_type="none" (leave the disk as it is) is not supported: the installer writes a new partition table on every disk of the layout'
        : 'label_type="convert" (turn an msdos table into gpt, keeping the partitions) is not supported: the installer writes a new partition table',
      'use label_type="gpt" or "msdos" (the disk is then partitioned anew), or leave this disk out of the layout',
    )
  }
  if (labelType !== 'gpt' && labelType !== 'msdos') {
    throw new LayoutProblem(element, `label_type="${labelType}": use gpt or msdos`)
  }
  const unitName = required(element, 'unit_of_measurement')
  const unit = UNITS[unitName]
  if (unit === undefined) {
    throw new LayoutProblem(
      element,
      `unit_of_measurement="${unitName}": use one of ${Object.keys(UNITS).join(', ')}`,
    )
  }
  mapped.sources.set(`disks.${d}`, element)
  const parts = element.children
  if (parts.length === 0) throw new LayoutProblem(element, 'a <disk> holds at least one <part>')
  const partitions = parts.map((part, p) => {
    if (part.name !== 'part') {
      throw new LayoutProblem(part, 'unknown element: a <disk> holds only <part>s')
    }
    checkElement(part)
    mapped.sources.set(`disks.${d}.partitions.${p}`, part)
    return mapPartition(part, labelType, unit, mapped)
  })
  checkMsdosNumbers(labelType, partitions, parts)
  return { dev, label: labelType, partitions }
}

function mapPartition(
  element: XmlElement,
  label: 'gpt' | 'msdos',
  unit: SizeUnit,
  mapped: Mapped,
): MappedDisk['partitions'][number] {
  const numText = required(element, 'num')
  const num = Number(numText)
  if (!/^\d+$/.test(numText) || num < 1 || num > 128) {
    throw new LayoutProblem(element, `num="${numText}": a partition number from 1 to 128`)
  }
  const sizeText = required(element, 'size')
  let size: MappedDisk['partitions'][number]['size']
  if (sizeText === '*') {
    size = '*'
  } else {
    const value = Number(sizeText)
    if (!/^\d+(\.\d+)?$/.test(sizeText) || value <= 0) {
      throw new LayoutProblem(
        element,
        `size="${sizeText}": a positive number (in the disk's unit_of_measurement) or * (the rest)`,
      )
    }
    size = { value, unit }
  }
  const type = required(element, 'p_type')
  if (type !== 'primary' && type !== 'extended' && type !== 'logical') {
    throw new LayoutProblem(element, `p_type="${type}": use primary, extended or logical`)
  }
  if (label === 'gpt' && type !== 'primary') {
    throw new LayoutProblem(element, `p_type="${type}": a gpt disk has only primary partitions`)
  }
  const id = element.attributes.id
  if (id !== undefined) {
    if (!/^[0-9a-fA-F]{1,2}$/.test(id)) {
      throw new LayoutProblem(element, `id="${id}": one or two hex digits (83, 82, ef)`)
    }
    mapped.warnings.push(
      `partition ${num} id="${id}" is not applied: the installer sets each partition's type from its flags and filesystem (as SystemImager 5 does after the id)`,
    )
  }
  const flags = mapFlags(element)
  if (flags.includes('bios_grub') && label !== 'gpt') {
    throw new LayoutProblem(
      element,
      'flags="bios_grub" marks GRUB\'s BIOS boot partition on a gpt disk; an msdos disk needs none',
    )
  }
  const pName = element.attributes.p_name?.replace(/\s+/g, ' ').trim()
  const named = pName !== undefined && pName !== '' && pName !== '-'
  if (named && label === 'msdos') {
    mapped.warnings.push(
      `partition ${num} p_name="${pName}" is ignored: only gpt partitions have names`,
    )
  }
  return {
    num,
    size,
    type,
    ...(named && label === 'gpt' ? { name: pName } : {}),
    flags,
  }
}

function mapFlags(element: XmlElement): PartitionFlag[] {
  const text = element.attributes.flags
  if (text === undefined || text.trim() === '-' || text.trim() === '') return []
  const flags: PartitionFlag[] = []
  for (const flag of text.split(',').map((word) => word.trim())) {
    if (flag === 'raid')
      throw new LayoutProblem(element, 'flags="raid": software RAID is not supported', RAID_HINT)
    if (flag === 'lvm')
      throw new LayoutProblem(element, 'flags="lvm": LVM is not supported', LVM_HINT)
    if (!(PARTITION_FLAGS as readonly string[]).includes(flag)) {
      throw new LayoutProblem(
        element,
        `unknown flag "${flag}" (flags: ${PARTITION_FLAGS.filter((f) => f !== 'raid' && f !== 'lvm').join(', ')}, comma-separated, or -)`,
      )
    }
    if (!flags.includes(flag as PartitionFlag)) flags.push(flag as PartitionFlag)
  }
  return flags
}

/**
 * An msdos table has 4 primary slots (primary and extended partitions take 1–4) and
 * numbers logical partitions from 5, inside the one extended partition: SystemImager 5
 * checks the same before partitioning.
 */
function checkMsdosNumbers(
  label: 'gpt' | 'msdos',
  partitions: MappedDisk['partitions'],
  elements: XmlElement[],
): void {
  if (label !== 'msdos') return
  const extended = partitions.filter((part) => part.type === 'extended')
  if (extended.length > 1) {
    throw new LayoutProblem(
      elements[partitions.indexOf(extended[1]!)],
      'a disk has at most one extended partition',
    )
  }
  for (const [p, part] of partitions.entries()) {
    if (part.type === 'logical' && part.num < 5) {
      throw new LayoutProblem(elements[p], 'logical partitions are numbered from 5')
    }
    if (part.type !== 'logical' && part.num > 4) {
      throw new LayoutProblem(
        elements[p],
        `${part.type} partitions on an msdos disk are numbered 1 to 4`,
      )
    }
    if (part.type === 'logical' && extended.length === 0) {
      throw new LayoutProblem(
        elements[p],
        'a logical partition needs an extended partition on its disk',
      )
    }
  }
  if (extended.length === 1 && !partitions.some((part) => part.type === 'logical')) {
    throw new LayoutProblem(
      elements[partitions.indexOf(extended[0]!)],
      'an extended partition with no logical partition in it',
      'remove it, or add the logical partitions (numbered from 5) it is for',
    )
  }
}

/** The device of every partition that can hold a filesystem (extended ones cannot). */
function partitionDevices(disks: MappedDisk[]): Map<string, string> {
  const devices = new Map<string, string>()
  for (const disk of disks) {
    for (const part of disk.partitions) devices.set(partitionDevice(disk.dev, part.num), part.type)
  }
  return devices
}

interface MappedFilesystem {
  device: string
  mountDevice?: string
  mountPoint: string
  type: FilesystemType
  label?: string
  mkfsOptions?: string
  mountOptions: string
  dump: number
  pass: number
  format: boolean
}

function mapFilesystems(
  root: XmlElement,
  partitions: Map<string, string>,
  mapped: Mapped,
): MappedFilesystem[] {
  const lines = new Map<number, XmlElement>()
  const entries: { line: number; order: number; element: XmlElement }[] = []
  for (const [order, element] of root.children.entries()) {
    if (element.name !== 'fsinfo') continue
    const lineText = element.attributes.line
    let line = 0
    if (lineText !== undefined) {
      line = Number(lineText)
      if (!/^\d+$/.test(lineText) || line < 1) {
        throw new LayoutProblem(element, `line="${lineText}": a positive integer (the fstab order)`)
      }
      const before = lines.get(line)
      if (before) {
        throw new LayoutProblem(
          element,
          `line="${lineText}" is also the line of the <fsinfo> at line ${before.line}`,
        )
      }
      lines.set(line, element)
    }
    const { real_dev: realDev, mp, fs } = element.attributes
    if (realDev === undefined && mp === undefined && fs === undefined) {
      // A comment line of fstab (`comment=` alone): nothing to make or mount.
      mapped.warnings.push(
        `<fsinfo line="${lineText ?? ''}"> has no real_dev, mp or fs: skipped (fstab comment lines are not written)`,
      )
      continue
    }
    entries.push({ line, order, element })
  }
  // fstab order: SystemImager 5 sorts by line (`sort -n`: a missing line sorts first).
  entries.sort((a, b) => a.line - b.line || a.order - b.order)
  return entries.map(({ element }, f) => {
    mapped.sources.set(`filesystems.${f}`, element)
    return mapFilesystem(element, partitions)
  })
}

function mapFilesystem(element: XmlElement, partitions: Map<string, string>): MappedFilesystem {
  const fsName = required(element, 'fs')
  const fs = FILESYSTEMS[fsName]
  if (fs === undefined) {
    throw new LayoutProblem(
      element,
      fsName === 'nfs'
        ? 'fs="nfs": a network filesystem is not on the node’s disks'
        : `fs="${fsName}": the installer makes ext2, ext3, ext4, xfs, vfat (msdos, fat, fat16, fat32) and swap only`,
      fsName === 'nfs'
        ? 'put NFS mounts in the image’s /etc/fstab or in an override'
        : 'choose one of those filesystems for this partition',
    )
  }
  const device = required(element, 'real_dev')
  const partType = partitions.get(device)
  if (partType === undefined) {
    const raid = /^\/dev\/md\d*/.test(device)
    throw new LayoutProblem(
      element,
      raid
        ? `real_dev="${device}": software RAID is not supported`
        : `real_dev="${device}" is not a partition of a <disk> of this layout (${[...partitions.keys()].join(', ')})`,
      raid
        ? RAID_HINT
        : 'name a partition of the layout, as the kernel names it: /dev/sda2, /dev/nvme0n1p2',
    )
  }
  if (partType === 'extended') {
    throw new LayoutProblem(
      element,
      `real_dev="${device}" is the extended partition: it holds logical partitions, not a filesystem`,
    )
  }
  let mountPoint = required(element, 'mp')
  if (fs.type === 'swap' && (mountPoint === 'none' || mountPoint === 'swap')) mountPoint = 'swap'
  if (mountPoint !== 'swap' && !mountPoint.startsWith('/')) {
    throw new LayoutProblem(element, `mp="${mountPoint}": an absolute path, or swap`)
  }
  const mountDev = element.attributes.mount_dev
  let mountDevice: string | undefined
  let label: string | undefined
  if (mountDev !== undefined && mountDev !== '' && mountDev !== device) {
    const match = /^(UUID|LABEL)=(\S+)$/.exec(mountDev)
    if (!match) {
      throw new LayoutProblem(
        element,
        `mount_dev="${mountDev}": UUID=… or LABEL=… (what fstab names the filesystem by)`,
        'leave mount_dev out to have fstab name it by the UUID the installer gives it',
      )
    }
    mountDevice = mountDev
    if (match[1] === 'LABEL') {
      label = match[2]!
      if (label.length > FILESYSTEM_LABEL_MAX[fs.type]) {
        throw new LayoutProblem(
          element,
          `mount_dev="${mountDev}": a ${fs.type} label has at most ${FILESYSTEM_LABEL_MAX[fs.type]} characters`,
        )
      }
    }
  }
  const mkfsOptions = [fs.mkfs, element.attributes.mkfs_opts?.trim()]
    .filter((part) => part !== undefined && part !== '')
    .join(' ')
  const format = element.attributes.format
  if (format !== undefined && format !== 'yes' && format !== 'no') {
    throw new LayoutProblem(element, `format="${format}": yes or no`)
  }
  return {
    device,
    ...(mountDevice ? { mountDevice } : {}),
    mountPoint,
    type: fs.type,
    ...(label ? { label } : {}),
    ...(mkfsOptions ? { mkfsOptions } : {}),
    mountOptions: element.attributes.options?.trim() || 'defaults',
    dump: fieldNumber(element, 'dump', 1),
    pass: fieldNumber(element, 'pass', 2),
    format: format !== 'no',
  }
}

function fieldNumber(element: XmlElement, name: 'dump' | 'pass', max: number): number {
  const text = element.attributes[name]
  if (text === undefined || text === '') return 0
  const value = Number(text)
  if (!/^\d+$/.test(text) || value > max) {
    throw new LayoutProblem(element, `${name}="${text}": fstab takes 0 to ${max}`)
  }
  return value
}

function mapBootloader(
  element: XmlElement,
  disks: MappedDisk[],
  filesystems: MappedFilesystem[],
  mapped: Mapped,
): { flavor: 'grub2'; installType: 'legacy' | 'efi'; targets: string[]; timeout?: number } {
  mapped.sources.set('bootloader', element)
  const flavor = required(element, 'flavor')
  if (flavor !== 'grub2') {
    throw new LayoutProblem(
      element,
      flavor === 'grub'
        ? 'flavor="grub" is GRUB legacy (0.97): the installer installs GRUB 2'
        : `flavor="${flavor}": the installer installs GRUB 2 only (with the image's own grub-install)`,
      'use flavor="grub2" (the image must contain GRUB 2), or leave <bootloader> out to have GRUB installed for the firmware the node boots with',
    )
  }
  const installType = required(element, 'install_type')
  if (installType !== 'legacy' && installType !== 'efi') {
    throw new LayoutProblem(element, `install_type="${installType}": legacy (BIOS) or efi`)
  }
  if (element.attributes.default_entry !== undefined) {
    mapped.warnings.push(
      `<bootloader default_entry="${element.attributes.default_entry}"> is not applied: the image's /etc/default/grub decides the default entry`,
    )
  }
  const timeoutText = element.attributes.timeout
  let timeout: number | undefined
  if (timeoutText !== undefined) {
    timeout = Number(timeoutText)
    if (!/^\d+$/.test(timeoutText) || timeout > 600) {
      throw new LayoutProblem(element, `timeout="${timeoutText}": seconds, 0 to 600`)
    }
  }
  const targets: string[] = []
  if (element.children.length === 0) {
    throw new LayoutProblem(element, 'a <bootloader> holds at least one <target dev="…"/>')
  }
  for (const target of element.children) {
    if (target.name !== 'target') {
      throw new LayoutProblem(target, 'unknown element: a <bootloader> holds only <target>s')
    }
    checkElement(target)
    const dev = required(target, 'dev')
    if (target.attributes.path !== undefined) {
      mapped.warnings.push(
        `<target dev="${dev}" path="${target.attributes.path}">: path is not used`,
      )
    }
    if (installType === 'legacy') {
      if (!disks.some((disk) => disk.dev === dev)) {
        throw new LayoutProblem(
          target,
          `dev="${dev}" is not a <disk> of this layout: for BIOS boot GRUB goes onto a whole disk`,
          `name one of ${disks.map((disk) => disk.dev).join(', ')}`,
        )
      }
      targets.push(dev)
    }
  }
  if (installType === 'efi') {
    // As SystemImager 5 checks on the node: GRUB goes onto the EFI system partition.
    const esp = filesystems.find((fs) => fs.mountPoint === '/boot/efi')
    if (esp?.type !== 'vfat') {
      throw new LayoutProblem(
        element,
        'install_type="efi" needs the EFI system partition: a vfat filesystem mounted at /boot/efi',
        'add a partition with flags="esp" and an <fsinfo fs="vfat" mp="/boot/efi"> for it',
      )
    }
  } else {
    for (const dev of targets) {
      const disk = disks.find((candidate) => candidate.dev === dev)!
      if (
        disk.label === 'gpt' &&
        !disk.partitions.some((part) => part.flags.includes('bios_grub'))
      ) {
        throw new LayoutProblem(
          element,
          `GRUB for BIOS on the gpt disk ${dev} needs a BIOS boot partition, and ${dev} has none`,
          `add <part num="N" size="1" p_type="primary" flags="bios_grub"/> (1 MiB, no filesystem) to ${dev}, or use label_type="msdos"`,
        )
      }
    }
  }
  return { flavor: 'grub2', installType, targets, ...(timeout === undefined ? {} : { timeout }) }
}

function required(element: XmlElement, name: string): string {
  const value = element.attributes[name]
  if (value === undefined || value.trim() === '') {
    throw new LayoutProblem(element, `${name}= is required`)
  }
  return value.trim()
}
