// @ts-check
// VM disks: sparse raw files, and reading what the guest wrote into them from the host.
//
// Raw rather than qcow2: under TCG the guest's emulated CPU, not the image format, bounds
// disk speed (300 MB written with dd in the guest: raw 7.5 s and 5.0 s, qcow2 3.4 s and
// 6.5 s, on two loaded cores), and a raw file is mounted as it is, with no conversion.
//
// This host's kernel has no partition-table support (no loopNpM devices), so a partition is
// mounted through a loop device over its byte range: `sfdisk -J` gives the start and size.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { run } from './vm-process.mjs'

/**
 * A sparse raw disk of `sizeGiB` (no block is allocated until the guest writes it).
 * @param {string} path
 * @param {number} sizeGiB
 */
export async function createDisk(path, sizeGiB) {
  await run('qemu-img', ['create', '-q', '-f', 'raw', path, `${sizeGiB}G`])
  return path
}

/**
 * @typedef {object} Partition
 * @property {number} number 1 for the first entry of the table
 * @property {string} node sfdisk's name for it (DISK1, DISK2, ...)
 * @property {number} start first sector
 * @property {number} sectors length in sectors
 * @property {number} offset first byte
 * @property {number} bytes length in bytes
 * @property {string} type GPT type GUID or MBR type
 * @property {string | undefined} uuid
 * @property {string | undefined} name GPT partition name
 */

/**
 * @typedef {{ label: 'gpt' | 'dos', id: string, sectorSize: number, partitions: Partition[] }} PartitionTable
 */

/**
 * The disk's partition table, read by `sfdisk -J` from the file.
 * @param {string} diskPath
 * @returns {Promise<PartitionTable>}
 */
export async function readPartitionTable(diskPath) {
  const { stdout, code, stderr } = await run('sfdisk', ['-J', diskPath], { allowFailure: true })
  if (code !== 0) {
    throw new Error(`${diskPath} has no partition table sfdisk can read: ${stderr.trim()}`)
  }
  const table = JSON.parse(stdout).partitiontable
  const sectorSize = table.sectorsize ?? 512
  return {
    label: table.label,
    id: table.id,
    sectorSize,
    partitions: (table.partitions ?? []).map(
      /** @param {any} entry @param {number} index */ (entry, index) => ({
        number: index + 1,
        node: entry.node,
        start: entry.start,
        sectors: entry.size,
        offset: entry.start * sectorSize,
        bytes: entry.size * sectorSize,
        type: entry.type,
        uuid: entry.uuid,
        name: entry.name,
      }),
    ),
  }
}

/**
 * @typedef {object} MountedPartition
 * @property {string} path where it is mounted
 * @property {Partition} partition
 * @property {() => Promise<void>} unmount unmounts, frees the loop device, removes the mount point
 */

/**
 * Mounts partition `number` of a raw disk read-only through a loop device over its byte
 * range. The guest must have unmounted it (or powered off cleanly): ext4 with a journal to
 * replay does not mount on a read-only loop device, and mount's message says so.
 * @example
 *   const root = await mountPartitionReadOnly(vm.diskPath, 2)
 *   try { await readFile(join(root.path, 'etc/hostname'), 'utf8') } finally { await root.unmount() }
 * @param {string} diskPath
 * @param {number} number
 * @param {{ type?: string, track?: (resource: { describe: string, stop: () => Promise<void> }) => unknown }} [options]
 *   type: filesystem type (default: mount's probe); track: registers the unmount with a
 *   test network's teardown
 * @returns {Promise<MountedPartition>}
 */
export async function mountPartitionReadOnly(diskPath, number, options = {}) {
  const table = await readPartitionTable(diskPath)
  const partition = table.partitions.find((entry) => entry.number === number)
  if (!partition) {
    throw new Error(
      `${diskPath} has no partition ${number} (it has ${table.partitions.map((entry) => entry.number).join(', ') || 'none'})`,
    )
  }
  const path = await mkdtemp(join(tmpdir(), 'imageswarm-vm-mount-'))
  try {
    await run('mount', [
      ...(options.type ? ['-t', options.type] : []),
      '-o',
      `ro,loop,offset=${partition.offset},sizelimit=${partition.bytes}`,
      diskPath,
      path,
    ])
  } catch (error) {
    await rm(path, { recursive: true, force: true })
    throw new Error(
      `cannot mount partition ${number} of ${diskPath} read-only: ${/** @type {Error} */ (error).message} (a filesystem the guest left mounted needs a clean shutdown first)`,
      { cause: error },
    )
  }
  let mounted = true
  const resource = {
    describe: `mount of ${diskPath} partition ${number} on ${path}`,
    async stop() {
      if (!mounted) return
      // `mount -o loop` sets autoclear: the loop device goes with the unmount.
      await run('umount', [path], { timeoutMs: 60_000 })
      mounted = false
      await rm(path, { recursive: true, force: true })
    },
  }
  options.track?.(resource)
  return { path, partition, unmount: () => resource.stop() }
}

/**
 * The loop devices backed by this file (none once every mount is undone).
 * @param {string} diskPath
 * @returns {Promise<string[]>}
 */
export async function loopDevicesOf(diskPath) {
  const { stdout } = await run('losetup', ['-j', diskPath, '-O', 'NAME', '-n'], {
    allowFailure: true,
  })
  return stdout
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean)
}
