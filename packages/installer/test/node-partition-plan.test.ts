import { execFile } from 'node:child_process'
import { mkdtemp, rm, truncate } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { type Disk, DiskLayoutSchema, type Filesystem } from '@imageswarm/core'
import { describe, expect, it } from 'vitest'
import { defaultLayout } from '../src/node/default-layout.js'
import {
  GPT_TYPES,
  MSDOS_TYPES,
  type PartitionPlan,
  planPartitions,
  sfdiskScript,
} from '../src/node/partition-plan.js'
import { thrown } from './helpers/thrown.js'

const run = promisify(execFile)
const MiB = 1024 * 1024
const GiB = 1024 * MiB
/** Sectors of 512 bytes in a MiB: where partitions start. */
const S = 2048

/** A disk of the JSON layout form, through the schema (defaults filled, rules checked). */
function disk(
  value: unknown,
  filesystems: unknown[] = [{ device: '/dev/vda1', mountPoint: '/', type: 'ext4' }],
): {
  disk: Disk
  filesystems: Filesystem[]
} {
  const layout = DiskLayoutSchema.parse({ disks: [value], filesystems })
  return { disk: layout.disks[0] as Disk, filesystems: layout.filesystems }
}

const summary = (plan: PartitionPlan) =>
  plan.partitions.map((part) => [part.num, part.start, part.sectors, part.type])

describe('planPartitions on gpt', () => {
  it('lays out the default BIOS layout: a 1 MiB BIOS boot partition, then / on the rest', () => {
    const layout = defaultLayout('/dev/vda', 'bios')
    const plan = planPartitions(layout.disks[0] as Disk, 4 * GiB, 512, layout.filesystems)
    // 4 GiB = 8388608 sectors; the backup GPT takes the last 33, so the rest ends at the last
    // whole MiB before them: 8386560.
    expect(summary(plan)).toEqual([
      [1, S, S, GPT_TYPES.biosBoot],
      [2, 2 * S, 8386560 - 2 * S, GPT_TYPES.linuxFilesystem],
    ])
    expect(plan.partitions.map((part) => part.device)).toEqual(['/dev/vda1', '/dev/vda2'])
    expect(plan.notes).toEqual([])
  })

  it('adds a 256 MiB EFI system partition under UEFI', () => {
    const layout = defaultLayout('/dev/nvme0n1', 'uefi')
    const plan = planPartitions(layout.disks[0] as Disk, 4 * GiB, 512, layout.filesystems)
    expect(summary(plan)).toEqual([
      [1, S, S, GPT_TYPES.biosBoot],
      [2, 2 * S, 256 * S, GPT_TYPES.efiSystem],
      [3, 258 * S, 8386560 - 258 * S, GPT_TYPES.linuxFilesystem],
    ])
    expect(plan.partitions.map((part) => part.device)).toEqual([
      '/dev/nvme0n1p1',
      '/dev/nvme0n1p2',
      '/dev/nvme0n1p3',
    ])
  })

  it('places partitions after the * one at the end of the disk, as SystemImager 5 does', () => {
    const { disk: d, filesystems } = disk(
      {
        dev: '/dev/sda',
        label: 'gpt',
        partitions: [
          { num: 1, size: { value: 512, unit: 'MiB' }, flags: ['esp'] },
          { num: 2, size: '*' },
          { num: 3, size: { value: 2, unit: 'GiB' }, flags: ['swap'] },
        ],
      },
      [
        { device: '/dev/sda2', mountPoint: '/', type: 'xfs' },
        { device: '/dev/sda1', mountPoint: '/boot/efi', type: 'vfat' },
      ],
    )
    const plan = planPartitions(d, 10 * GiB, 512, filesystems)
    const end = 10 * 1024 * S - S // the last whole MiB before the backup GPT
    expect(summary(plan)).toEqual([
      [1, S, 512 * S, GPT_TYPES.efiSystem],
      [2, 513 * S, end - 2048 * S - 513 * S, GPT_TYPES.linuxFilesystem],
      [3, end - 2048 * S, 2048 * S, GPT_TYPES.linuxSwap],
    ])
  })

  it('rounds a fixed size up to whole MiB and a percentage down, so 50 % + 50 % fits', () => {
    const { disk: d } = disk({
      dev: '/dev/vda',
      label: 'gpt',
      partitions: [
        { num: 1, size: { value: 500, unit: 'MB' } },
        { num: 2, size: { value: 40, unit: '%' } },
        { num: 3, size: '*' },
      ],
    })
    const plan = planPartitions(d, 8 * GiB, 512, [])
    // 500 MB = 476.8 MiB → 477 MiB; 40 % of 8 GiB = 3276.8 MiB → 3276 MiB.
    expect(plan.partitions[0]?.sectors).toBe(477 * S)
    expect(plan.partitions[1]?.sectors).toBe(3276 * S)
    const halves = disk({
      dev: '/dev/vda',
      label: 'gpt',
      partitions: [
        { num: 1, size: { value: 50, unit: '%' } },
        { num: 2, size: { value: 49, unit: '%' } },
      ],
    })
    expect(() => planPartitions(halves.disk, 8 * GiB, 512, [])).not.toThrow()
  })

  it('keeps gaps in the numbering and names partitions', () => {
    const { disk: d } = disk({
      dev: '/dev/vda',
      label: 'gpt',
      partitions: [
        { num: 1, size: { value: 1, unit: 'MiB' }, flags: ['bios_grub'] },
        { num: 4, size: '*', name: 'root', flags: ['legacy_boot', 'hidden'] },
      ],
    })
    const plan = planPartitions(d, 1 * GiB, 512, [])
    expect(plan.partitions.map((part) => part.device)).toEqual(['/dev/vda1', '/dev/vda4'])
    expect(plan.partitions[1]).toMatchObject({ name: 'root', attributes: ['LegacyBIOSBootable'] })
    expect(plan.notes).toEqual(['flag hidden on gpt: no meaning on a gpt disk, ignored'])
    expect(sfdiskScript(plan)).toBe(
      [
        'label: gpt',
        'unit: sectors',
        'first-lba: 2048',
        '',
        '/dev/vda1 : start=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649',
        `/dev/vda4 : start=4096, size=${1024 * S - S - 2 * S}, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, attrs="LegacyBIOSBootable", name="root"`,
        '',
      ].join('\n'),
    )
  })

  it('aligns to 1 MiB on a disk of 4 KiB sectors', () => {
    const layout = defaultLayout('/dev/sda', 'bios')
    const plan = planPartitions(layout.disks[0] as Disk, 4 * GiB, 4096, layout.filesystems)
    // 256 sectors of 4 KiB a MiB; the backup GPT takes 4 + 1 sectors.
    expect(summary(plan)).toEqual([
      [1, 256, 256, GPT_TYPES.biosBoot],
      [2, 512, 1048320 - 512, GPT_TYPES.linuxFilesystem],
    ])
    expect(sfdiskScript(plan)).toContain('first-lba: 256\n')
  })

  it('types partitions by their filesystem: swap, vfat, and lvm or raid by flag', () => {
    const { disk: d, filesystems } = disk(
      {
        dev: '/dev/vda',
        label: 'gpt',
        partitions: [
          { num: 1, size: { value: 64, unit: 'MiB' } },
          { num: 2, size: { value: 64, unit: 'MiB' } },
          { num: 3, size: { value: 64, unit: 'MiB' }, flags: ['lvm'] },
          { num: 4, size: { value: 64, unit: 'MiB' }, flags: ['raid'] },
          { num: 5, size: '*' },
        ],
      },
      [
        { device: '/dev/vda1', mountPoint: 'swap', type: 'swap' },
        { device: '/dev/vda2', mountPoint: '/data', type: 'vfat' },
        { device: '/dev/vda5', mountPoint: '/', type: 'ext4' },
      ],
    )
    expect(planPartitions(d, 1 * GiB, 512, filesystems).partitions.map((p) => p.type)).toEqual([
      GPT_TYPES.linuxSwap,
      GPT_TYPES.microsoftBasicData,
      GPT_TYPES.linuxLvm,
      GPT_TYPES.linuxRaid,
      GPT_TYPES.linuxFilesystem,
    ])
  })
})

describe('planPartitions on msdos', () => {
  // SystemImager 5's doc/examples/disk-layout-simple.xml, in the JSON form.
  const simple = disk(
    {
      dev: '/dev/sda',
      label: 'msdos',
      partitions: [
        { num: 1, size: { value: 500, unit: 'MB' }, type: 'primary', flags: ['boot'] },
        { num: 2, size: '*', type: 'extended' },
        { num: 5, size: { value: 512, unit: 'MB' }, type: 'logical', flags: ['swap'] },
        { num: 6, size: '*', type: 'logical' },
      ],
    },
    [
      { device: '/dev/sda6', mountPoint: '/', type: 'xfs' },
      { device: '/dev/sda5', mountPoint: 'swap', type: 'swap' },
      { device: '/dev/sda1', mountPoint: '/boot', type: 'ext4' },
    ],
  )

  it('lays out SystemImager’s simple example: logical partitions inside the extended one, each after its boot record', () => {
    const plan = planPartitions(simple.disk, 4 * GiB, 512, simple.filesystems)
    const total = 4 * 1024 * S
    expect(summary(plan)).toEqual([
      [1, S, 477 * S, MSDOS_TYPES.linux],
      [2, 478 * S, total - 478 * S, MSDOS_TYPES.extended],
      [5, 479 * S, 489 * S, MSDOS_TYPES.linuxSwap],
      [6, 969 * S, total - 969 * S, MSDOS_TYPES.linux],
    ])
    expect(plan.partitions[0]?.bootable).toBe(true)
    expect(sfdiskScript(plan)).toBe(
      [
        'label: dos',
        'unit: sectors',
        '',
        `/dev/sda1 : start=${S}, size=${477 * S}, type=83, bootable`,
        `/dev/sda2 : start=${478 * S}, size=${total - 478 * S}, type=5`,
        `/dev/sda5 : start=${479 * S}, size=${489 * S}, type=82`,
        `/dev/sda6 : start=${969 * S}, size=${total - 969 * S}, type=83`,
        '',
      ].join('\n'),
    )
  })

  it('refuses logical partitions that do not fit in a fixed extended one, with the numbers', () => {
    const { disk: d } = disk({
      dev: '/dev/sda',
      label: 'msdos',
      partitions: [
        { num: 1, size: { value: 100, unit: 'MiB' }, type: 'extended' },
        { num: 5, size: { value: 60, unit: 'MiB' }, type: 'logical' },
        { num: 6, size: { value: 60, unit: 'MiB' }, type: 'logical' },
      ],
    })
    const err = thrown(() => planPartitions(d, GiB, 512, []))
    expect(err.code).toBe('E_LAYOUT_INVALID')
    expect(err.message).toBe(
      'disk /dev/sda in the layout extended partition 1 holds 100 MiB, its logical partitions need 122 MiB (1 MiB before each for its boot record)',
    )
  })

  it('refuses numbers a msdos label cannot hold, and flags only gpt has', () => {
    const logicalOne = disk({
      dev: '/dev/sda',
      label: 'msdos',
      partitions: [
        { num: 2, size: '*', type: 'extended' },
        { num: 3, size: { value: 1, unit: 'GiB' }, type: 'logical' },
      ],
    })
    expect(thrown(() => planPartitions(logicalOne.disk, 4 * GiB, 512, [])).message).toMatch(
      /logical partition 3: on a msdos disk primary and extended partitions are 1 to 4, logical ones 5 and up/,
    )
    const biosGrub = disk({
      dev: '/dev/sda',
      label: 'msdos',
      partitions: [{ num: 1, size: '*', flags: ['bios_grub'] }],
    })
    const err = thrown(() => planPartitions(biosGrub.disk, 4 * GiB, 512, []))
    expect(err.code).toBe('E_LAYOUT_INVALID')
    expect(err.message).toMatch(/flag bios_grub, which only a gpt disk has/)
    const orphan = disk({
      dev: '/dev/sda',
      label: 'msdos',
      partitions: [
        { num: 1, size: '*' },
        { num: 5, size: { value: 1, unit: 'GiB' }, type: 'logical' },
      ],
    })
    expect(thrown(() => planPartitions(orphan.disk, 4 * GiB, 512, [])).message).toMatch(
      /has logical partitions but no extended partition/,
    )
  })
})

describe('a disk too small for the layout', () => {
  it('is E_DISK_TOO_SMALL saying the disk’s size and what the layout needs', () => {
    const { disk: d } = disk({
      dev: '/dev/vda',
      label: 'gpt',
      partitions: [
        { num: 1, size: { value: 1, unit: 'MiB' }, flags: ['bios_grub'] },
        { num: 2, size: { value: 2, unit: 'GiB' } },
        { num: 3, size: '*' },
      ],
    })
    const err = thrown(() => planPartitions(d, GiB, 512, []))
    expect(err.code).toBe('E_DISK_TOO_SMALL')
    expect(err.path).toBe('/dev/vda')
    expect(err.message).toBe(
      'disk /dev/vda has 1024 MiB (1073741824 bytes); its layout needs at least 2052 MiB: partitions 1: 1 MiB, 2: 2048 MiB, at least 1 MiB for partition 3 (size *) and 1 MiB at each end for the gpt label',
    )
    expect(err.hint).toMatch(/larger disk/)
  })

  it('is E_DISK_TOO_SMALL when the fixed partitions fit but leave the * one nothing', () => {
    const { disk: d } = disk({
      dev: '/dev/vda',
      label: 'gpt',
      partitions: [
        { num: 1, size: { value: 1022, unit: 'MiB' } },
        { num: 2, size: '*' },
      ],
    })
    expect(thrown(() => planPartitions(d, GiB, 512, [])).code).toBe('E_DISK_TOO_SMALL')
    // One MiB less, and the * partition gets the MiB that is left.
    const fits = disk({
      dev: '/dev/vda',
      label: 'gpt',
      partitions: [
        { num: 1, size: { value: 1021, unit: 'MiB' } },
        { num: 2, size: '*' },
      ],
    })
    expect(planPartitions(fits.disk, GiB, 512, []).partitions[1]?.sectors).toBe(S)
  })

  it('is E_DISK_TOO_SMALL for fixed partitions alone, with no * one', () => {
    const { disk: d } = disk({
      dev: '/dev/vda',
      label: 'msdos',
      partitions: [{ num: 1, size: { value: 1, unit: 'GiB' } }],
    })
    const err = thrown(() => planPartitions(d, GiB, 512, []))
    expect(err.code).toBe('E_DISK_TOO_SMALL')
    expect(err.message).toMatch(
      /needs at least 1025 MiB: partitions 1: 1024 MiB and 1 MiB for the msdos label/,
    )
  })
})

// sfdisk itself, writing to a file (never a device): the script is taken as planned.
const sfdisk = await run('sfdisk', ['--version']).then(
  () => true,
  () => false,
)
describe.skipIf(!sfdisk)('sfdiskScript through sfdisk on a disk image file', () => {
  it('writes exactly the planned table, gpt and msdos', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'imageswarm-sfdisk-'))
    try {
      const uefi = defaultLayout('/dev/vda', 'uefi')
      const cases: PartitionPlan[] = [
        planPartitions(uefi.disks[0] as Disk, 4 * GiB, 512, uefi.filesystems),
        planPartitions(simple().disk, 4 * GiB, 512, simple().filesystems),
      ]
      for (const [index, plan] of cases.entries()) {
        const image = join(dir, `disk${index}.img`)
        await run('truncate', ['-s', String(4 * GiB), image])
        const child = execFile('sfdisk', ['--wipe', 'always', image])
        child.stdin?.end(sfdiskScript(plan))
        const code = await new Promise((resolve) => child.once('exit', resolve))
        expect(code).toBe(0)
        const { stdout } = await run('sfdisk', ['-J', image])
        const table = JSON.parse(stdout).partitiontable
        expect(table.label).toBe(plan.label === 'msdos' ? 'dos' : 'gpt')
        expect(
          table.partitions.map(
            (entry: { node: string; start: number; size: number; type: string }) => [
              Number(/(\d+)$/.exec(entry.node)?.[1]),
              entry.start,
              entry.size,
              entry.type.toUpperCase(),
            ],
          ),
        ).toEqual(
          plan.partitions.map((part) => [
            part.num,
            part.start,
            part.sectors,
            part.type.toUpperCase(),
          ]),
        )
        await truncate(image, 0)
      }
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})

function simple() {
  return disk(
    {
      dev: '/dev/sda',
      label: 'msdos',
      partitions: [
        { num: 1, size: { value: 500, unit: 'MB' }, flags: ['boot'] },
        { num: 2, size: '*', type: 'extended' },
        { num: 5, size: { value: 512, unit: 'MB' }, type: 'logical', flags: ['swap'] },
        { num: 6, size: '*', type: 'logical' },
      ],
    },
    [{ device: '/dev/sda6', mountPoint: '/', type: 'xfs' }],
  )
}
