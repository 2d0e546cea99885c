import { execFileSync } from 'node:child_process'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'

export const FAKE_RELEASE = '6.1.0-99-test-amd64'

/**
 * A kernel tree as depmod leaves it, with made-up module files (their bytes are not
 * ELF; only their names and the index files matter to the builder's selection):
 * virtio drivers that need virtio/virtio_ring, e1000e compressed with zstd (as Debian 13
 * ships modules, with xz), xfs with a hard dependency on libcrc32c and
 * a soft one on crc32c (an alias of crc32c_generic), ext4 built in, scsi_debug (never
 * taken), and modules the installer has no use for (a sound driver, btrfs).
 */
export const FAKE_MODULES_DEP = `kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/scsi/scsi_common.ko:
kernel/drivers/scsi/scsi_mod.ko: kernel/drivers/scsi/scsi_common.ko
kernel/drivers/scsi/sd_mod.ko: kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko
kernel/drivers/scsi/scsi_debug.ko: kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko
kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko.zst: kernel/drivers/ptp/ptp.ko kernel/drivers/pps/pps_core.ko
kernel/drivers/ptp/ptp.ko: kernel/drivers/pps/pps_core.ko
kernel/drivers/pps/pps_core.ko:
kernel/lib/libcrc32c.ko:
kernel/crypto/crc32c_generic.ko:
kernel/fs/xfs/xfs.ko: kernel/lib/libcrc32c.ko
kernel/fs/btrfs/btrfs.ko: kernel/lib/libcrc32c.ko
kernel/sound/pci/snd-intel8x0.ko:
`

export const FAKE_SOFTDEP = `# Soft dependencies extracted from modules themselves.
softdep xfs pre: crc32c
softdep btrfs pre: xxhash64
`

export const FAKE_ALIAS = `# Aliases extracted from modules themselves.
alias crypto-crc32c crc32c_generic
alias crc32c crc32c_generic
alias pci:v00001AF4d00001000sv*sd*bc*sc*i* virtio_pci
alias virtio:d00000001v* virtio_net
`

/** zstd's frame of `text`, made by the zstd command (node 20 has no zstd). */
function zstdCompress(text: string): Buffer {
  return execFileSync('zstd', ['-q', '-c'], { input: text })
}

export interface FakeKernel {
  dir: string
  vmlinuz: string
  modulesDir: string
  remove(): Promise<void>
}

/**
 * A bzImage-shaped file: the boot header's "HdrS" magic and the pointer to a version
 * string, which is all the builder reads of a kernel. Nothing can boot it.
 */
export function fakeBzImage(release: string): Buffer {
  const image = Buffer.alloc(0x4000)
  image.write('HdrS', 0x202, 'latin1')
  const versionAt = 0x3000
  image.writeUInt16LE(versionAt - 0x200, 0x20e)
  image.write(`${release} (test@example.org) #1 SMP Debian\0`, versionAt, 'latin1')
  return image
}

export async function makeFakeKernel(release = FAKE_RELEASE): Promise<FakeKernel> {
  const dir = await mkdtemp(join(tmpdir(), 'imageswarm-fake-kernel-'))
  const modulesDir = join(dir, 'lib/modules', release)
  for (const line of FAKE_MODULES_DEP.trim().split('\n')) {
    const path = join(modulesDir, line.slice(0, line.indexOf(':')))
    await mkdir(dirname(path), { recursive: true })
    const content = `fake module ${line.slice(0, line.indexOf(':')).replace(/\.zst$/, '')}\n`
    await writeFile(path, path.endsWith('.zst') ? zstdCompress(content) : content)
  }
  await writeFile(join(modulesDir, 'modules.dep'), FAKE_MODULES_DEP)
  await writeFile(join(modulesDir, 'modules.softdep'), FAKE_SOFTDEP)
  await writeFile(join(modulesDir, 'modules.alias'), FAKE_ALIAS)
  await writeFile(join(modulesDir, 'modules.builtin'), 'kernel/fs/ext4/ext4.ko\n')
  await writeFile(join(modulesDir, 'modules.order'), '')
  const vmlinuz = join(dir, `vmlinuz-${release}`)
  await writeFile(vmlinuz, fakeBzImage(release))
  return { dir, vmlinuz, modulesDir, remove: () => rm(dir, { recursive: true, force: true }) }
}
