import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { DiskLayoutSchema, type ImageSwarmError, SIZE_UNITS } from '@imageswarm/core'
import { describe, expect, it } from 'vitest'
import { parseDisksLayoutXml } from '../src/disks-layout-xml.js'

const EXAMPLES = join(import.meta.dirname, 'fixtures', 'systemimager')

function example(name: string) {
  const file = join(EXAMPLES, `disk-layout-${name}.xml`)
  return parseDisksLayoutXml(readFileSync(file, 'utf8'), file)
}

/** A small valid layout: one gpt disk, a BIOS boot partition and an ext4 root. */
function layoutXml(
  parts: { disk?: string; between?: string; fsinfo?: string; tail?: string } = {},
) {
  return `<config>
  <disk dev="/dev/vda" label_type="gpt" unit_of_measurement="MiB">
    <part num="1" size="1" p_type="primary" flags="bios_grub" />
    <part num="2" size="*" p_type="primary" />${parts.disk ?? ''}
  </disk>${parts.between ?? ''}
  <fsinfo line="10" real_dev="/dev/vda2" mp="/" fs="ext4" options="defaults" dump="1" pass="1" />${parts.fsinfo ?? ''}${parts.tail ?? ''}
</config>
`
}

function refusal(xml: string): ImageSwarmError {
  try {
    parseDisksLayoutXml(xml, '/srv/scripts/disks-layouts/compute.xml')
  } catch (err) {
    return err as ImageSwarmError
  }
  throw new Error('the layout was accepted')
}

describe("SystemImager's own examples", () => {
  it('reads disk-layout-simple.xml: msdos, an extended partition, a * primary and a * logical, legacy GRUB', () => {
    const { layout, warnings } = example('simple')
    expect(layout).toEqual({
      disks: [
        {
          dev: '/dev/sda',
          label: 'msdos',
          partitions: [
            { num: 1, size: { value: 500, unit: 'MB' }, type: 'primary', flags: ['boot'] },
            { num: 2, size: '*', type: 'extended', flags: [] },
            { num: 5, size: { value: 512, unit: 'MB' }, type: 'logical', flags: ['swap'] },
            { num: 6, size: '*', type: 'logical', flags: [] },
          ],
        },
      ],
      // Sorted by line="…", as SystemImager writes fstab.
      filesystems: [
        {
          device: '/dev/sda6',
          mountPoint: '/',
          type: 'xfs',
          mountOptions: 'defaults',
          dump: 1,
          pass: 2,
          format: true,
        },
        {
          device: '/dev/sda5',
          mountPoint: 'swap',
          type: 'swap',
          mountOptions: 'defaults',
          dump: 0,
          pass: 0,
          format: true,
        },
        {
          device: '/dev/sda1',
          mountPoint: '/boot',
          type: 'ext4',
          mountOptions: 'defaults',
          dump: 1,
          pass: 2,
          format: true,
        },
      ],
      bootloader: { flavor: 'grub2', installType: 'legacy', targets: ['/dev/sda'], timeout: 2 },
    })
    expect(warnings).toEqual([
      `<bootloader default_entry="0"> is not applied: the image's /etc/default/grub decides the default entry`,
    ])
    // What the installer will parse again.
    expect(DiskLayoutSchema.parse(layout)).toEqual(layout)
  })

  it('reads disk-layout-EFI.xml: gpt in MiB, an ESP as fat32 (vfat, mkfs -F 32) at /boot/efi, efi GRUB', () => {
    const { layout } = example('EFI')
    expect(layout.disks[0]).toEqual({
      dev: '/dev/sda',
      label: 'gpt',
      partitions: [
        { num: 1, size: { value: 512, unit: 'MiB' }, type: 'primary', flags: ['esp'] },
        { num: 2, size: { value: 2048, unit: 'MiB' }, type: 'primary', flags: [] },
        { num: 3, size: { value: 2048, unit: 'MiB' }, type: 'primary', flags: ['swap'] },
        { num: 4, size: '*', type: 'primary', flags: [] },
      ],
    })
    expect(layout.filesystems.map((fs) => [fs.device, fs.mountPoint, fs.type])).toEqual([
      ['/dev/sda4', '/', 'xfs'],
      ['/dev/sda3', 'swap', 'swap'],
      ['/dev/sda2', '/boot', 'xfs'],
      ['/dev/sda1', '/boot/efi', 'vfat'],
    ])
    expect(layout.filesystems[3]).toMatchObject({
      mkfsOptions: '-F 32',
      mountOptions: 'umask=0077,shortname=winnt',
    })
    // For UEFI GRUB goes onto the ESP; the target (the ESP itself) is not a disk to install to.
    expect(layout.bootloader).toEqual({
      flavor: 'grub2',
      installType: 'efi',
      targets: [],
      timeout: 2,
    })
  })

  it('reads disk-layout-complex.xml, keeping the partitions in the order of the file (a * in the middle)', () => {
    const { layout } = example('complex')
    expect(
      layout.disks[0]?.partitions.map((part) => [
        part.num,
        part.type,
        part.size === '*' ? '*' : part.size.value,
      ]),
    ).toEqual([
      [1, 'primary', 500],
      [3, 'primary', 4096],
      [4, 'extended', '*'],
      [7, 'logical', 4096],
      [5, 'logical', '*'],
      [6, 'logical', 2048],
      [2, 'primary', 1024],
    ])
    expect(layout.filesystems.map((fs) => fs.mountPoint)).toEqual([
      '/',
      '/var',
      'swap',
      '/boot',
      '/home',
      '/backup',
    ])
  })

  it('refuses disk-layout-lvm_over_raid.xml at its <raid>, naming the file and the line', () => {
    const file = join(EXAMPLES, 'disk-layout-lvm_over_raid.xml')
    expect(() => parseDisksLayoutXml(readFileSync(file, 'utf8'), file)).toThrow(
      expect.objectContaining({
        code: 'E_LAYOUT_INVALID',
        message: `disks layout ${file}:30: <raid>: software RAID is not supported`,
        path: file,
        hint: expect.stringContaining('does not build software RAID'),
      }),
    )
  })
})

describe('mapping', () => {
  it('maps units, percent, flags, p_name, mount_dev and format', () => {
    const { layout, warnings } = parseDisksLayoutXml(
      `<config>
  <disk dev="/dev/nvme0n1" label_type="gpt" unit_of_measurement="percent">
    <part num="1" size="0.5" p_type="primary" p_name="EFI system" flags="esp,boot" />
    <part num="2" size="10" p_type="primary" p_name="-" flags="-" id="82" />
    <part num="3" size="*" p_type="primary" p_name="  root   disk " />
  </disk>
  <bootloader flavor="grub2" install_type="efi"><target dev="/dev/nvme0n1p1" /></bootloader>
  <fsinfo line="3" real_dev="/dev/nvme0n1p1" mp="/boot/efi" fs="vfat" mount_dev="LABEL=ESP" />
  <fsinfo line="2" real_dev="/dev/nvme0n1p2" mp="none" fs="swap" mount_dev="UUID=0b7e3f6a-5f6e-4f0c-9a43-0e1f8d1c2b3a" />
  <fsinfo line="1" real_dev="/dev/nvme0n1p3" mp="/" fs="ext4" format="no" mkfs_opts="-O ^metadata_csum" />
  <fsinfo comment="# a comment line" />
  <boel devstyle="udev" />
</config>`,
      'x.xml',
    )
    expect(layout.disks[0]?.partitions).toEqual([
      {
        num: 1,
        size: { value: 0.5, unit: '%' },
        type: 'primary',
        name: 'EFI system',
        flags: ['esp', 'boot'],
      },
      { num: 2, size: { value: 10, unit: '%' }, type: 'primary', flags: [] },
      { num: 3, size: '*', type: 'primary', name: 'root disk', flags: [] },
    ])
    expect(layout.filesystems).toEqual([
      {
        device: '/dev/nvme0n1p3',
        mountPoint: '/',
        type: 'ext4',
        mkfsOptions: '-O ^metadata_csum',
        mountOptions: 'defaults',
        dump: 0,
        pass: 0,
        format: false,
      },
      {
        device: '/dev/nvme0n1p2',
        mountDevice: 'UUID=0b7e3f6a-5f6e-4f0c-9a43-0e1f8d1c2b3a',
        mountPoint: 'swap',
        type: 'swap',
        mountOptions: 'defaults',
        dump: 0,
        pass: 0,
        format: true,
      },
      {
        device: '/dev/nvme0n1p1',
        mountDevice: 'LABEL=ESP',
        mountPoint: '/boot/efi',
        type: 'vfat',
        label: 'ESP',
        mountOptions: 'defaults',
        dump: 0,
        pass: 0,
        format: true,
      },
    ])
    expect(warnings).toEqual([
      'partition 2 id="82" is not applied: the installer sets each partition\'s type from its flags and filesystem (as SystemImager 5 does after the id)',
      '<fsinfo line=""> has no real_dev, mp or fs: skipped (fstab comment lines are not written)',
    ])
  })

  it('maps every unit SystemImager accepts', () => {
    // Each of core's units by its own name, and the XML's other name for `%`.
    const units: [string, string][] = [
      ...SIZE_UNITS.map((unit): [string, string] => [unit, unit]),
      ['percentage', '%'],
    ]
    for (const [xml, unit] of units) {
      const { layout } = parseDisksLayoutXml(
        layoutXml().replace('unit_of_measurement="MiB"', `unit_of_measurement="${xml}"`),
        'x.xml',
      )
      expect(layout.disks[0]?.partitions[0]?.size).toEqual({ value: 1, unit })
    }
  })

  it('accepts a gpt legacy layout with a bios_grub partition (imageswarm’s default layout, as XML)', () => {
    const { layout } = parseDisksLayoutXml(
      layoutXml({
        between:
          '\n  <bootloader flavor="grub2" install_type="legacy"><target dev="/dev/vda"/></bootloader>',
      }),
      'x.xml',
    )
    expect(layout.bootloader).toEqual({
      flavor: 'grub2',
      installType: 'legacy',
      targets: ['/dev/vda'],
    })
    expect(layout.disks[0]?.partitions[0]?.flags).toEqual(['bios_grub'])
  })
})

describe('refusals: E_LAYOUT_INVALID naming the file, the line, the element and what to do', () => {
  const cases: [string, string, RegExp, RegExp][] = [
    [
      'an <lvm> section',
      layoutXml({
        between:
          '\n  <lvm><lvm_group name="vg" max_log_vols="0" max_phys_vols="0" phys_extent_size="4M"><lv name="root" size="*"/></lvm_group></lvm>',
      }),
      /:6: <lvm>: LVM is not supported/,
      /does not build LVM/,
    ],
    [
      'flags="lvm"',
      layoutXml({ disk: '\n    <part num="3" size="1" p_type="primary" flags="lvm" />' }),
      /:5: <part num="3">: flags="lvm": LVM is not supported/,
      /does not build LVM/,
    ],
    [
      'lvm_group=',
      layoutXml({ disk: '\n    <part num="3" size="1" p_type="primary" lvm_group="vg" />' }),
      /<part num="3">: lvm_group=: LVM is not supported/,
      /LVM/,
    ],
    [
      'flags="raid"',
      layoutXml({ disk: '\n    <part num="3" size="1" p_type="primary" flags="raid" />' }),
      /<part num="3">: flags="raid": software RAID is not supported/,
      /software RAID/,
    ],
    [
      'raid_dev=',
      layoutXml({ disk: '\n    <part num="3" size="1" p_type="primary" raid_dev="/dev/md0" />' }),
      /raid_dev=: software RAID is not supported/,
      /software RAID/,
    ],
    [
      'a /dev/md real_dev',
      layoutXml({ fsinfo: '\n  <fsinfo line="20" real_dev="/dev/md0" mp="/srv" fs="ext4" />' }),
      /:7: <fsinfo line="20">: real_dev="\/dev\/md0": software RAID/,
      /software RAID/,
    ],
    [
      'label_type="none"',
      layoutXml().replace('label_type="gpt"', 'label_type="none"'),
      /:2: <disk dev="\/dev\/vda">: label_type="none" \(leave the disk as it is\) is not supported/,
      /use label_type="gpt" or "msdos"/,
    ],
    [
      'label_type="convert"',
      layoutXml().replace('label_type="gpt"', 'label_type="convert"'),
      /label_type="convert" .* is not supported/,
      /use label_type="gpt" or "msdos"/,
    ],
    [
      'fs="btrfs"',
      layoutXml().replace('fs="ext4"', 'fs="btrfs"'),
      /:6: <fsinfo line="10">: fs="btrfs": the installer makes ext2, ext3, ext4, xfs, vfat .* and swap only/,
      /choose one of those/,
    ],
    ['fs="jfs"', layoutXml().replace('fs="ext4"', 'fs="jfs"'), /fs="jfs"/, /choose one of those/],
    [
      'fs="reiserfs"',
      layoutXml().replace('fs="ext4"', 'fs="reiserfs"'),
      /fs="reiserfs"/,
      /choose one of those/,
    ],
    [
      'fs="ntfs"',
      layoutXml().replace('fs="ext4"', 'fs="ntfs"'),
      /fs="ntfs"/,
      /choose one of those/,
    ],
    [
      'fs="nfs"',
      layoutXml({ fsinfo: '\n  <fsinfo line="20" real_dev="server:/home" mp="/home" fs="nfs" />' }),
      /fs="nfs": a network filesystem/,
      /image’s \/etc\/fstab or in an override/,
    ],
    [
      'flavor="systemd"',
      layoutXml({
        between:
          '\n  <bootloader flavor="systemd" install_type="efi"><target dev="/dev/vda1"/></bootloader>',
      }),
      /<bootloader flavor="systemd">: flavor="systemd": the installer installs GRUB 2 only/,
      /flavor="grub2"/,
    ],
    [
      'flavor="grub" (GRUB legacy)',
      layoutXml({
        between:
          '\n  <bootloader flavor="grub" install_type="legacy"><target dev="/dev/vda"/></bootloader>',
      }),
      /GRUB legacy/,
      /flavor="grub2"/,
    ],
    [
      'two <bootloader>s',
      layoutXml({
        between:
          '\n  <bootloader flavor="grub2" install_type="legacy"><target dev="/dev/vda"/></bootloader>\n  <bootloader flavor="grub2" install_type="legacy"><target dev="/dev/vda"/></bootloader>',
      }),
      /:7: <bootloader flavor="grub2">: only one <bootloader>/,
      /systemimager.disks-layout/,
    ],
    [
      'efi with no vfat /boot/efi',
      layoutXml({
        between:
          '\n  <bootloader flavor="grub2" install_type="efi"><target dev="/dev/vda1"/></bootloader>',
      }),
      /install_type="efi" needs the EFI system partition/,
      /flags="esp"/,
    ],
    [
      'legacy GRUB on a gpt disk with no bios_grub partition',
      layoutXml({
        between:
          '\n  <bootloader flavor="grub2" install_type="legacy"><target dev="/dev/vda"/></bootloader>',
      }).replace(' flags="bios_grub"', ''),
      /needs a BIOS boot partition, and \/dev\/vda has none/,
      /flags="bios_grub"/,
    ],
    [
      'a legacy target that is not a disk of the layout',
      layoutXml({
        between:
          '\n  <bootloader flavor="grub2" install_type="legacy"><target dev="/dev/vda2"/></bootloader>',
      }),
      /<target dev="\/dev\/vda2">: dev="\/dev\/vda2" is not a <disk> of this layout/,
      /name one of \/dev\/vda/,
    ],
    [
      'an unknown attribute',
      layoutXml().replace('p_type="primary" />', 'p_type="primary" mount="x" />'),
      /:4: <part num="2">: unknown attribute mount= \(allowed: num, size/,
      /systemimager.disks-layout/,
    ],
    [
      'an unknown element',
      layoutXml({ tail: '\n  <raid_disk name="/dev/md0" raid_level="1"/>' }),
      /<raid_disk>: unknown element/,
      /systemimager.disks-layout/,
    ],
    [
      '<fsinfo> before <bootloader>',
      layoutXml({
        tail: '\n  <bootloader flavor="grub2" install_type="legacy"><target dev="/dev/vda"/></bootloader>',
      }),
      /<bootloader flavor="grub2">: out of order/,
      /systemimager.disks-layout/,
    ],
    [
      'XML that is not well-formed',
      layoutXml().replace(
        '<part num="2" size="*" p_type="primary" />',
        '<part num="2" size="*" p_type="primary">',
      ),
      /compute\.xml:5:\d+: not well-formed XML: unexpected close tag/,
      /xmllint/,
    ],
    [
      'a repeated attribute',
      layoutXml().replace('size="*"', 'size="*" size="3"'),
      /compute\.xml:4:\d+: not well-formed XML: duplicate attribute: size/,
      /xmllint/,
    ],
    [
      'two fsinfo with the same line',
      layoutXml({ fsinfo: '\n  <fsinfo line="10" real_dev="/dev/vda1" mp="/boot" fs="ext4" />' }),
      /line="10" is also the line of the <fsinfo> at line 6/,
      /systemimager.disks-layout/,
    ],
    [
      'a real_dev not in the layout',
      layoutXml().replace('real_dev="/dev/vda2"', 'real_dev="/dev/vdb1"'),
      /real_dev="\/dev\/vdb1" is not a partition of a <disk> of this layout \(\/dev\/vda1, \/dev\/vda2\)/,
      /\/dev\/nvme0n1p2/,
    ],
    [
      'a filesystem on the extended partition',
      '<config><disk dev="/dev/sda" label_type="msdos" unit_of_measurement="MB"><part num="1" size="*" p_type="extended"/><part num="5" size="*" p_type="logical"/></disk><fsinfo line="1" real_dev="/dev/sda1" mp="/" fs="ext4"/></config>',
      /real_dev="\/dev\/sda1" is the extended partition/,
      /systemimager.disks-layout/,
    ],
    [
      'a logical partition numbered below 5',
      '<config><disk dev="/dev/sda" label_type="msdos" unit_of_measurement="MB"><part num="1" size="*" p_type="extended"/><part num="2" size="*" p_type="logical"/></disk><fsinfo line="1" real_dev="/dev/sda2" mp="/" fs="ext4"/></config>',
      /<part num="2">: logical partitions are numbered from 5/,
      /systemimager.disks-layout/,
    ],
    [
      'a primary partition numbered 5 on msdos',
      '<config><disk dev="/dev/sda" label_type="msdos" unit_of_measurement="MB"><part num="5" size="*" p_type="primary"/></disk><fsinfo line="1" real_dev="/dev/sda5" mp="/" fs="ext4"/></config>',
      /primary partitions on an msdos disk are numbered 1 to 4/,
      /systemimager.disks-layout/,
    ],
    [
      'two extended partitions',
      '<config><disk dev="/dev/sda" label_type="msdos" unit_of_measurement="MB"><part num="1" size="9" p_type="extended"/><part num="2" size="*" p_type="extended"/><part num="5" size="*" p_type="logical"/></disk><fsinfo line="1" real_dev="/dev/sda5" mp="/" fs="ext4"/></config>',
      /<part num="2">: a disk has at most one extended partition/,
      /systemimager.disks-layout/,
    ],
    [
      'a logical partition on gpt',
      layoutXml({ disk: '\n    <part num="5" size="1" p_type="logical" />' }),
      /p_type="logical": a gpt disk has only primary partitions/,
      /systemimager.disks-layout/,
    ],
    [
      'two * partitions',
      layoutXml({ disk: '\n    <part num="3" size="*" p_type="primary" />' }),
      /<disk dev="\/dev\/vda">: only one partition of \/dev\/vda can take the rest of the disk/,
      /systemimager.disks-layout/,
    ],
    [
      'size="0"',
      layoutXml().replace('size="1"', 'size="0"'),
      /size="0": a positive number/,
      /systemimager.disks-layout/,
    ],
    [
      'an unknown unit',
      layoutXml().replace('unit_of_measurement="MiB"', 'unit_of_measurement="cylinders"'),
      /unit_of_measurement="cylinders": use one of TB, TiB/,
      /systemimager.disks-layout/,
    ],
    [
      'an unknown flag',
      layoutXml().replace('flags="bios_grub"', 'flags="bios_grub,fast"'),
      /unknown flag "fast"/,
      /systemimager.disks-layout/,
    ],
    [
      'bios_grub on an msdos disk',
      layoutXml().replace('label_type="gpt"', 'label_type="msdos"'),
      /flags="bios_grub" marks GRUB's BIOS boot partition on a gpt disk/,
      /systemimager.disks-layout/,
    ],
    [
      'a mount_dev that is neither UUID= nor LABEL=',
      layoutXml().replace('fs="ext4"', 'fs="ext4" mount_dev="PARTUUID=1234"'),
      /mount_dev="PARTUUID=1234": UUID=… or LABEL=…/,
      /leave mount_dev out/,
    ],
    [
      'a label too long for xfs',
      layoutXml().replace('fs="ext4"', 'fs="xfs" mount_dev="LABEL=thirteen-char"'),
      /a xfs label has at most 12 characters/,
      /systemimager.disks-layout/,
    ],
    [
      'dump="2"',
      layoutXml().replace('dump="1"', 'dump="2"'),
      /dump="2": fstab takes 0 to 1/,
      /systemimager.disks-layout/,
    ],
    [
      'no / filesystem',
      layoutXml().replace('mp="/"', 'mp="/srv"'),
      /<config>: no filesystem is mounted at \//,
      /systemimager.disks-layout/,
    ],
    [
      'swap mounted on a path',
      layoutXml().replace('fs="ext4"', 'fs="swap"'),
      /swap is mounted as swap, and only swap is/,
      /systemimager.disks-layout/,
    ],
    [
      'a disk that is not a local disk',
      layoutXml().replace('dev="/dev/vda"', 'dev="/dev/disk/by-id/x"'),
      /dev="\/dev\/disk\/by-id\/x" is not a local disk/,
      /name the whole disk/,
    ],
    [
      'a root element other than <config>',
      '<layout/>',
      /<layout>: the root element must be <config>/,
      /systemimager.disks-layout/,
    ],
  ]
  for (const [what, xml, message, hint] of cases) {
    it(`refuses ${what}`, () => {
      const error = refusal(xml)
      expect(error).toMatchObject({
        code: 'E_LAYOUT_INVALID',
        path: '/srv/scripts/disks-layouts/compute.xml',
      })
      expect(error.message).toMatch(/^disks layout \/srv\/scripts\/disks-layouts\/compute\.xml/)
      expect(error.message).toMatch(message)
      expect(error.hint).toMatch(hint)
    })
  }

  it('does not expand entities a DOCTYPE declares (no billion laughs)', () => {
    const error = refusal(
      `<!DOCTYPE config [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>${layoutXml().replace('options="defaults"', 'options="&b;"')}`,
    )
    expect(error.message).toMatch(/undefined entity/)
  })
})
