import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { ImageSwarmError } from '@imageswarm/core'

/** Modules the installer needs, in groups that say why. Paths are globs relative to the modules directory, without the `.ko` suffix. */
export interface ModuleGroup {
  why: string
  patterns: readonly string[]
}

/**
 * What a node needs to reach its disks and the network and to make the layout's
 * filesystems. Drivers built into a kernel match nothing here and need nothing.
 * Debian's cloud kernel, for example, has ext4, NVMe and AF_PACKET built in (see
 * /tmp/issue15/notes.md) and no e1000 at all; a generic kernel has all of these as modules.
 */
export const INSTALLER_MODULE_GROUPS: readonly ModuleGroup[] = [
  {
    why: 'virtio disks, NICs and entropy (QEMU, KVM, most clouds)',
    patterns: [
      'kernel/drivers/virtio/*',
      'kernel/drivers/block/virtio_blk',
      'kernel/drivers/net/virtio_net',
      'kernel/drivers/scsi/virtio_scsi',
      'kernel/drivers/char/hw_random/virtio-rng',
    ],
  },
  {
    why: 'NVMe disks (also behind Intel VMD)',
    patterns: [
      'kernel/drivers/nvme/host/nvme',
      'kernel/drivers/nvme/host/nvme-core',
      'kernel/drivers/pci/controller/vmd',
    ],
  },
  {
    why: 'SATA, SAS and SCSI disks, and the common RAID controllers',
    patterns: [
      'kernel/drivers/ata/*',
      'kernel/drivers/scsi/*',
      'kernel/drivers/scsi/megaraid/**',
      'kernel/drivers/scsi/mpt3sas/**',
      'kernel/drivers/scsi/smartpqi/**',
      'kernel/drivers/scsi/aacraid/**',
    ],
  },
  {
    why: 'disks and NICs of Xen, Hyper-V and VMware guests',
    patterns: [
      'kernel/drivers/block/xen-blkfront',
      'kernel/drivers/net/xen-netfront',
      'kernel/drivers/scsi/xen-scsifront',
      'kernel/drivers/net/hyperv/*',
      'kernel/drivers/net/vmxnet3/*',
    ],
  },
  {
    why: 'common wired Ethernet NICs and their PHYs',
    patterns: [
      'kernel/drivers/net/ethernet/amazon/**',
      'kernel/drivers/net/ethernet/amd/**',
      'kernel/drivers/net/ethernet/aquantia/**',
      'kernel/drivers/net/ethernet/broadcom/**',
      'kernel/drivers/net/ethernet/cisco/**',
      'kernel/drivers/net/ethernet/emulex/**',
      'kernel/drivers/net/ethernet/google/**',
      'kernel/drivers/net/ethernet/intel/**',
      'kernel/drivers/net/ethernet/marvell/**',
      'kernel/drivers/net/ethernet/mellanox/**',
      'kernel/drivers/net/ethernet/microsoft/**',
      'kernel/drivers/net/ethernet/qlogic/**',
      'kernel/drivers/net/ethernet/realtek/**',
      'kernel/drivers/net/ethernet/sfc/**',
      'kernel/drivers/net/ethernet/8390/**',
      'kernel/drivers/net/phy/**',
      'kernel/drivers/net/mdio/**',
    ],
  },
  {
    why: 'filesystems the disk layouts make and the cache may use',
    patterns: [
      'kernel/fs/ext4/*',
      'kernel/fs/xfs/*',
      'kernel/fs/fat/*',
      'kernel/fs/nls/nls_cp437',
      'kernel/fs/nls/nls_iso8859-1',
      'kernel/fs/nls/nls_ascii',
      'kernel/fs/nls/nls_utf8',
      'kernel/fs/overlayfs/*',
      'kernel/fs/squashfs/*',
      'kernel/fs/efivarfs/*',
      'kernel/drivers/block/loop',
    ],
  },
  {
    why: 'checksums ext4, XFS and disks with integrity data load by name (soft dependencies)',
    patterns: [
      'kernel/lib/crc*',
      'kernel/lib/libcrc32c',
      'kernel/crypto/crc*',
      'kernel/crypto/crct10dif*',
      'kernel/arch/x86/crypto/crc*',
      'kernel/arch/x86/crypto/crct10dif*',
    ],
  },
  {
    why: 'raw packet sockets for DHCP',
    patterns: ['kernel/net/packet/af_packet'],
  },
]

/** Modules never taken even when a pattern matches them. */
export const EXCLUDED_MODULES: readonly string[] = [
  // Loading it makes a fake disk, which the installer could partition.
  'scsi_debug',
]

/** What depmod wrote for a kernel's modules, parsed. */
export interface ModuleIndex {
  /** Every module path (relative, with its `.ko…` suffix) → the modules it needs. */
  dependencies: ReadonlyMap<string, readonly string[]>
  /** Module name → the names it asks to be loaded around it (modules.softdep). */
  softDependencies: ReadonlyMap<string, readonly string[]>
  /** An alias without wildcards (`crypto-crc32c`) → module names that carry it. */
  aliases: ReadonlyMap<string, readonly string[]>
}

export interface ModuleSelection {
  /** Module paths relative to the modules directory, sorted: the groups' matches and everything they need. */
  modules: string[]
  /** Patterns that matched no module (built into this kernel, or not built at all). */
  unmatched: string[]
}

/** A module's name as modprobe sees it: the file name without `.ko…`, `-` read as `_`. */
export function moduleName(path: string): string {
  const base = path.slice(path.lastIndexOf('/') + 1)
  return stripModuleSuffix(base).replaceAll('-', '_')
}

function stripModuleSuffix(path: string): string {
  return path.replace(/\.ko(\.xz|\.zst|\.gz)?$/, '')
}

/** `kernel/fs/xfs/xfs.ko: kernel/lib/libcrc32c.ko` lines → path → dependencies. */
export function parseModulesDep(text: string): Map<string, string[]> {
  const dependencies = new Map<string, string[]>()
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':')
    if (colon <= 0) continue
    const needs = line
      .slice(colon + 1)
      .trim()
      .split(/\s+/)
      .filter((path) => path !== '')
    dependencies.set(line.slice(0, colon).trim(), needs)
  }
  return dependencies
}

/** `softdep xfs pre: crc32c post: x` lines → module name → the names before and after it. */
export function parseSoftDependencies(text: string): Map<string, string[]> {
  const soft = new Map<string, string[]>()
  for (const line of text.split('\n')) {
    const words = line.trim().split(/\s+/)
    if (words[0] !== 'softdep' || words[1] === undefined) continue
    const names = words.slice(2).filter((word) => word !== 'pre:' && word !== 'post:')
    const module = words[1].replaceAll('-', '_')
    soft.set(module, [...(soft.get(module) ?? []), ...names])
  }
  return soft
}

/** `alias crypto-crc32c crc32c_intel` lines → alias → module names; wildcard aliases (devices) are left out. */
export function parseAliases(text: string): Map<string, string[]> {
  const aliases = new Map<string, string[]>()
  for (const line of text.split('\n')) {
    const words = line.trim().split(/\s+/)
    if (words[0] !== 'alias' || words[1] === undefined || words[2] === undefined) continue
    if (/[*?[]/.test(words[1])) continue
    aliases.set(words[1], [...(aliases.get(words[1]) ?? []), words[2].replaceAll('-', '_')])
  }
  return aliases
}

/** A glob over module paths: `*` within one directory, `**` across directories. */
export function modulePatternToRegExp(pattern: string): RegExp {
  let source = ''
  for (let i = 0; i < pattern.length; i++) {
    const char = pattern[i]!
    if (char === '*' && pattern[i + 1] === '*') {
      source += '.*'
      i++
    } else if (char === '*') {
      source += '[^/]*'
    } else {
      source += char.replace(/[.+?^${}()|[\]\\]/g, '\\$&')
    }
  }
  return new RegExp(`^${source}$`)
}

/**
 * The modules matching `groups` and, transitively, every module they depend on (modules.dep)
 * or ask for by name (modules.softdep, through modules.alias), minus EXCLUDED_MODULES.
 *
 * @example selectModules(index, INSTALLER_MODULE_GROUPS).modules
 *   // ['kernel/drivers/block/virtio_blk.ko', 'kernel/drivers/virtio/virtio.ko', …]
 */
export function selectModules(
  index: ModuleIndex,
  groups: readonly ModuleGroup[] = INSTALLER_MODULE_GROUPS,
  excluded: readonly string[] = EXCLUDED_MODULES,
): ModuleSelection {
  const all = [...index.dependencies.keys()]
  const byName = new Map<string, string[]>()
  for (const path of all) {
    const name = moduleName(path)
    byName.set(name, [...(byName.get(name) ?? []), path])
  }
  const skip = new Set(excluded.map((name) => name.replaceAll('-', '_')))
  const selected = new Set<string>()
  const unmatched: string[] = []
  const queue: string[] = []
  const take = (path: string) => {
    if (selected.has(path) || skip.has(moduleName(path))) return
    selected.add(path)
    queue.push(path)
  }
  for (const group of groups) {
    for (const pattern of group.patterns) {
      const regexp = modulePatternToRegExp(pattern)
      const matches = all.filter((path) => regexp.test(stripModuleSuffix(path)))
      if (matches.length === 0) unmatched.push(pattern)
      matches.forEach(take)
    }
  }
  // Soft dependencies name modules or aliases (`crypto-crc32c`); a name nothing in this
  // tree provides is built in, or optional.
  const resolveName = (name: string): string[] => {
    const direct = byName.get(name.replaceAll('-', '_'))
    if (direct !== undefined) return direct
    return (index.aliases.get(name) ?? []).flatMap((module) => byName.get(module) ?? [])
  }
  while (queue.length > 0) {
    const path = queue.pop()!
    for (const needed of index.dependencies.get(path) ?? []) take(needed)
    for (const name of index.softDependencies.get(moduleName(path)) ?? []) {
      resolveName(name).forEach(take)
    }
  }
  return { modules: [...selected].sort(), unmatched }
}

/**
 * Reads modules.dep, modules.softdep and modules.alias of a modules directory
 * (`/lib/modules/6.1.0-57-cloud-amd64`). modules.dep is required: depmod writes it, and
 * a kernel package's files alone do not have it (Debian runs depmod when installing).
 */
export async function readModuleIndex(modulesDir: string): Promise<ModuleIndex> {
  let dep: string
  try {
    dep = await readFile(join(modulesDir, 'modules.dep'), 'utf8')
  } catch (err) {
    throw new ImageSwarmError('E_USAGE', `${modulesDir} has no modules.dep`, {
      operation: 'read kernel modules',
      path: join(modulesDir, 'modules.dep'),
      hint: `pass the kernel's modules directory (/lib/modules/VERSION); if it is the right one, run depmod for it first (depmod -b ROOT VERSION)`,
      cause: err,
    })
  }
  const optional = async (name: string) =>
    readFile(join(modulesDir, name), 'utf8').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return ''
      throw err
    })
  return {
    dependencies: parseModulesDep(dep),
    softDependencies: parseSoftDependencies(await optional('modules.softdep')),
    aliases: parseAliases(await optional('modules.alias')),
  }
}
