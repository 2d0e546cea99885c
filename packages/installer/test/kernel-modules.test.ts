import { afterEach, describe, expect, it } from 'vitest'
import {
  INSTALLER_MODULE_GROUPS,
  moduleName,
  modulePatternToRegExp,
  parseAliases,
  parseModulesDep,
  parseSoftDependencies,
  readModuleIndex,
  selectModules,
} from '../src/ramdisk/kernel-modules.js'
import {
  FAKE_ALIAS,
  FAKE_MODULES_DEP,
  FAKE_SOFTDEP,
  type FakeKernel,
  makeFakeKernel,
} from './fake-kernel.js'

describe('modules.dep, modules.softdep and modules.alias', () => {
  it('reads each module’s hard dependencies, including modules that need none', () => {
    const deps = parseModulesDep(FAKE_MODULES_DEP)
    expect(deps.get('kernel/drivers/block/virtio_blk.ko')).toEqual([
      'kernel/drivers/virtio/virtio.ko',
      'kernel/drivers/virtio/virtio_ring.ko',
    ])
    expect(deps.get('kernel/drivers/virtio/virtio.ko')).toEqual([])
    expect(deps.size).toBe(19)
  })

  it('reads soft dependencies by module name, pre and post alike', () => {
    const soft = parseSoftDependencies(`${FAKE_SOFTDEP}softdep ext4 pre: crc32c post: jbd2-extra\n`)
    expect(soft.get('xfs')).toEqual(['crc32c'])
    expect(soft.get('ext4')).toEqual(['crc32c', 'jbd2-extra'])
  })

  it('keeps exact aliases and leaves device aliases with wildcards out', () => {
    const aliases = parseAliases(FAKE_ALIAS)
    expect(aliases.get('crypto-crc32c')).toEqual(['crc32c_generic'])
    expect([...aliases.keys()].some((alias) => alias.includes('*'))).toBe(false)
  })

  it('names modules as modprobe does: no .ko suffix, dashes read as underscores', () => {
    expect(moduleName('kernel/sound/pci/snd-intel8x0.ko')).toBe('snd_intel8x0')
    expect(moduleName('kernel/fs/xfs/xfs.ko.zst')).toBe('xfs')
  })

  it('matches * within a directory and ** across directories', () => {
    expect(
      modulePatternToRegExp('kernel/drivers/virtio/*').test('kernel/drivers/virtio/virtio_pci'),
    ).toBe(true)
    expect(
      modulePatternToRegExp('kernel/drivers/scsi/*').test(
        'kernel/drivers/scsi/megaraid/megaraid_sas',
      ),
    ).toBe(false)
    expect(
      modulePatternToRegExp('kernel/drivers/net/ethernet/intel/**').test(
        'kernel/drivers/net/ethernet/intel/e1000e/e1000e',
      ),
    ).toBe(true)
    expect(modulePatternToRegExp('kernel/lib/crc*').test('kernel/lib/crc-itu-t')).toBe(true)
  })
})

describe('selecting the installer’s modules', () => {
  let kernel: FakeKernel | undefined
  afterEach(async () => {
    await kernel?.remove()
    kernel = undefined
  })

  it('takes the matching modules with every module they need, and nothing else', async () => {
    kernel = await makeFakeKernel()
    const selection = selectModules(await readModuleIndex(kernel.modulesDir))
    expect(selection.modules).toEqual([
      'kernel/crypto/crc32c_generic.ko', // xfs's soft dependency, through the alias crc32c
      'kernel/drivers/block/virtio_blk.ko',
      'kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko.zst',
      'kernel/drivers/net/net_failover.ko',
      'kernel/drivers/net/virtio_net.ko',
      'kernel/drivers/pps/pps_core.ko', // e1000e → ptp → pps_core
      'kernel/drivers/ptp/ptp.ko',
      'kernel/drivers/scsi/scsi_common.ko',
      'kernel/drivers/scsi/scsi_mod.ko',
      'kernel/drivers/scsi/sd_mod.ko',
      'kernel/drivers/virtio/virtio.ko',
      'kernel/drivers/virtio/virtio_pci.ko',
      'kernel/drivers/virtio/virtio_ring.ko',
      'kernel/fs/xfs/xfs.ko',
      'kernel/lib/libcrc32c.ko',
      'kernel/net/core/failover.ko',
    ])
    // Never taken: scsi_debug makes a fake disk; btrfs and sound are of no use here.
    expect(selection.modules.join(' ')).not.toMatch(/scsi_debug|btrfs|snd/)
  })

  it('reports the patterns this kernel has nothing for (built in, or not built)', async () => {
    kernel = await makeFakeKernel()
    const selection = selectModules(await readModuleIndex(kernel.modulesDir))
    expect(selection.unmatched).toContain('kernel/fs/ext4/*')
    expect(selection.unmatched).not.toContain('kernel/drivers/virtio/*')
    const patterns = INSTALLER_MODULE_GROUPS.flatMap((group) => group.patterns)
    expect(selection.unmatched.every((pattern) => patterns.includes(pattern))).toBe(true)
  })

  it('refuses a modules directory without modules.dep, and says to run depmod', async () => {
    kernel = await makeFakeKernel()
    await expect(readModuleIndex(kernel.dir)).rejects.toMatchObject({
      code: 'E_USAGE',
      hint: expect.stringContaining('depmod'),
    })
  })
})
