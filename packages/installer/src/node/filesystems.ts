import {
  type DiskLayout,
  FILESYSTEM_LABEL_MAX,
  type Filesystem,
  ImageSwarmError,
} from '@imageswarm/core'

/** A command line: the program and its arguments. */
export interface ToolCommand {
  command: string
  args: string[]
}

/**
 * The filesystems to mount, parents first: `/`, then `/boot`, then `/boot/efi`, … (fewest
 * path components first, then by name). Swap is not mounted.
 *
 * @example mountOrder(layout.filesystems).map((fs) => fs.mountPoint) // ['/', '/boot', '/boot/efi', '/home']
 */
export function mountOrder(filesystems: readonly Filesystem[]): Filesystem[] {
  const depth = (path: string) => (path === '/' ? 0 : path.split('/').length - 1)
  return filesystems
    .filter((fs) => fs.type !== 'swap')
    .sort(
      (a, b) =>
        depth(a.mountPoint) - depth(b.mountPoint) ||
        (a.mountPoint < b.mountPoint ? -1 : a.mountPoint > b.mountPoint ? 1 : 0),
    )
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
/** A FAT volume id as blkid shows it: `ABCD-1234`. */
const FAT_VOLUME_ID = /^[0-9a-f]{4}-[0-9a-f]{4}$/i

/** The label a filesystem gets: its own, else the one its fstab name (`LABEL=x`) gives. */
export function filesystemLabel(fs: Filesystem): string | undefined {
  if (fs.label !== undefined) return fs.label
  return fs.mountDevice?.startsWith('LABEL=') ? fs.mountDevice.slice('LABEL='.length) : undefined
}

/**
 * The UUID a filesystem is made with: the one its fstab name (`UUID=x`) gives, so that an
 * image whose fstab, GRUB config or initramfs names its filesystems by UUID keeps working
 * (SystemImager re-stamps them the same way); else none, and mkfs picks one.
 */
export function filesystemUuid(fs: Filesystem): string | undefined {
  return fs.mountDevice?.startsWith('UUID=') ? fs.mountDevice.slice('UUID='.length) : undefined
}

/**
 * The command that makes `fs` on its device, with its label and UUID. It always overwrites
 * what was there (`-F`, `-f`): a disk that held a previous install, half-written or not,
 * is made again from scratch.
 *
 * @example mkfsCommand({ device: '/dev/vda2', type: 'ext4', label: 'root', … })
 *   // { command: 'mke2fs', args: ['-t', 'ext4', '-F', '-q', '-L', 'root', '/dev/vda2'] }
 */
export function mkfsCommand(fs: Filesystem): ToolCommand {
  const label = filesystemLabel(fs)
  const uuid = filesystemUuid(fs)
  const bad = (what: string) =>
    new ImageSwarmError(
      'E_LAYOUT_INVALID',
      `filesystem on ${fs.device} (${fs.mountPoint}): ${what}`,
      {
        operation: 'make filesystem',
        path: fs.device,
        hint: 'fix the disk layout on the image server (scripts/disks-layouts/NAME.xml)',
      },
    )
  if (label !== undefined && label.length > FILESYSTEM_LABEL_MAX[fs.type]) {
    throw bad(
      `label ${JSON.stringify(label)} is longer than ${fs.type}'s ${FILESYSTEM_LABEL_MAX[fs.type]} characters`,
    )
  }
  if (uuid !== undefined && !(fs.type === 'vfat' ? FAT_VOLUME_ID : UUID).test(uuid)) {
    throw bad(
      `UUID=${uuid} is not a ${fs.type === 'vfat' ? 'FAT volume id (ABCD-1234)' : 'UUID (8-4-4-4-12 hex digits)'}`,
    )
  }
  const extra = fs.mkfsOptions?.trim() ? fs.mkfsOptions.trim().split(/\s+/) : []
  const labelled = (flag: string) => (label === undefined ? [] : [flag, label])
  switch (fs.type) {
    case 'ext2':
    case 'ext3':
    case 'ext4':
      return {
        command: 'mke2fs',
        args: [
          '-t',
          fs.type,
          '-F',
          '-q',
          ...labelled('-L'),
          ...(uuid ? ['-U', uuid] : []),
          ...extra,
          fs.device,
        ],
      }
    case 'xfs':
      return {
        command: 'mkfs.xfs',
        args: [
          '-f',
          '-q',
          ...labelled('-L'),
          ...(uuid ? ['-m', `uuid=${uuid}`] : []),
          ...extra,
          fs.device,
        ],
      }
    case 'vfat':
      return {
        command: 'mkfs.vfat',
        args: [
          ...labelled('-n'),
          ...(uuid ? ['-i', uuid.replace('-', '')] : []),
          ...extra,
          fs.device,
        ],
      }
    case 'swap':
      return {
        command: 'mkswap',
        args: ['-f', ...labelled('-L'), ...(uuid ? ['-U', uuid] : []), ...extra, fs.device],
      }
  }
}

/**
 * Options of fstab that are not for mounting the filesystem while installing: `ro`,
 * `noexec` (the installer writes and runs post-install scripts there), and those only
 * mount(8) or systemd read at boot.
 */
const BOOT_ONLY_OPTIONS = new Set([
  'defaults',
  'ro',
  'rw',
  'noexec',
  'noauto',
  'auto',
  'nofail',
  'user',
  'users',
  'nouser',
  'owner',
  'group',
  '_netdev',
])

/**
 * The options the installer mounts a filesystem with: fstab's (`umask=0077` of an ESP,
 * `compress=…`), read-write and executable whatever fstab says.
 *
 * @example installMountOptions('defaults,noatime,ro') // 'rw,noatime'
 */
export function installMountOptions(options: string): string {
  const kept = options
    .split(',')
    .map((option) => option.trim())
    .filter(
      (option) =>
        option !== '' &&
        !BOOT_ONLY_OPTIONS.has(option) &&
        !option.startsWith('x-') &&
        !option.startsWith('comment='),
    )
  return ['rw', ...kept].join(',')
}

/**
 * /etc/fstab for the installed system: one line per filesystem of the layout, in its
 * order, naming each by its fstab name (`mount_dev`: `LABEL=` or `UUID=`) or else by the
 * UUID blkid read after mkfs, so it holds whatever the disk is called at boot.
 *
 * @example
 *   fstabText(layout, new Map([['/dev/vda2', 'a1b2…']]), 'default')
 *   // # /etc/fstab, written by the imageswarm installer from disk layout default
 *   // UUID=a1b2…  /  ext4  defaults  0  1
 */
export function fstabText(
  layout: DiskLayout,
  uuids: ReadonlyMap<string, string>,
  layoutName: string,
): string {
  const rows = layout.filesystems.map((fs) => {
    const uuid = uuids.get(fs.device)
    const source = fs.mountDevice ?? (uuid ? `UUID=${uuid}` : fs.device)
    const mountPoint = fs.type === 'swap' ? 'none' : fs.mountPoint
    const options = fs.type === 'swap' && fs.mountOptions === 'defaults' ? 'sw' : fs.mountOptions
    return [source, mountPoint, fs.type, options, String(fs.dump), String(fs.pass)]
  })
  const widths = [0, 1, 2, 3].map((column) =>
    Math.max(...rows.map((row) => (row[column] as string).length)),
  )
  const lines = rows.map((row) =>
    row
      .map((field, column) => (column < 4 ? field.padEnd(widths[column] as number) : field))
      .join('  '),
  )
  return [
    `# /etc/fstab, written by the imageswarm installer from disk layout ${layoutName}`,
    '# <file system>  <mount point>  <type>  <options>  <dump>  <pass>',
    ...lines,
    '',
  ].join('\n')
}
