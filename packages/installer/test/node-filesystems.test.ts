import { DiskLayoutSchema, type Filesystem } from '@imageswarm/core'
import { describe, expect, it } from 'vitest'
import { type BlockDisk, chooseInstallDisk, defaultLayout } from '../src/node/default-layout.js'
import { fstabText, installMountOptions, mkfsCommand, mountOrder } from '../src/node/filesystems.js'
import { thrown } from './helpers/thrown.js'

const filesystem = (fields: Record<string, unknown>): Filesystem =>
  DiskLayoutSchema.parse({
    disks: [{ dev: '/dev/vda', label: 'gpt', partitions: [{ num: 1, size: '*' }] }],
    filesystems: [{ device: '/dev/vda9', mountPoint: '/', type: 'ext4' }, fields],
  }).filesystems[1] as Filesystem

describe('mountOrder', () => {
  it('mounts parents before children and leaves swap out, whatever the layout’s order', () => {
    const layout = DiskLayoutSchema.parse({
      disks: [{ dev: '/dev/vda', label: 'gpt', partitions: [{ num: 1, size: '*' }] }],
      filesystems: [
        { device: '/dev/vda5', mountPoint: '/var/lib', type: 'xfs' },
        { device: '/dev/vda3', mountPoint: '/boot/efi', type: 'vfat' },
        { device: '/dev/vda6', mountPoint: 'swap', type: 'swap' },
        { device: '/dev/vda4', mountPoint: '/var', type: 'ext4' },
        { device: '/dev/vda2', mountPoint: '/boot', type: 'ext4' },
        { device: '/dev/vda1', mountPoint: '/', type: 'ext4' },
        { device: '/dev/vda7', mountPoint: '/boot-old', type: 'ext4' },
      ],
    })
    expect(mountOrder(layout.filesystems).map((fs) => fs.mountPoint)).toEqual([
      '/',
      '/boot',
      '/boot-old',
      '/var',
      '/boot/efi',
      '/var/lib',
    ])
  })
})

describe('mkfsCommand', () => {
  it('makes ext4 over whatever was there, with its label', () => {
    expect(
      mkfsCommand(
        filesystem({ device: '/dev/vda2', mountPoint: '/srv', type: 'ext4', label: 'srv' }),
      ),
    ).toEqual({
      command: 'mke2fs',
      args: ['-t', 'ext4', '-F', '-q', '-L', 'srv', '/dev/vda2'],
    })
  })

  it('re-stamps the UUID or label the image’s fstab names it by', () => {
    const uuid = '0f3a4b5c-1d2e-4f60-8a9b-0c1d2e3f4a5b'
    expect(
      mkfsCommand(
        filesystem({
          device: '/dev/vda2',
          mountPoint: '/srv',
          type: 'ext3',
          mountDevice: `UUID=${uuid}`,
        }),
      ).args,
    ).toEqual(['-t', 'ext3', '-F', '-q', '-U', uuid, '/dev/vda2'])
    expect(
      mkfsCommand(
        filesystem({
          device: '/dev/vda3',
          mountPoint: '/data',
          type: 'xfs',
          mountDevice: 'LABEL=data',
        }),
      ),
    ).toEqual({ command: 'mkfs.xfs', args: ['-f', '-q', '-L', 'data', '/dev/vda3'] })
    expect(
      mkfsCommand(
        filesystem({
          device: '/dev/vda3',
          mountPoint: '/data',
          type: 'xfs',
          mountDevice: `UUID=${uuid}`,
        }),
      ).args,
    ).toEqual(['-f', '-q', '-m', `uuid=${uuid}`, '/dev/vda3'])
    expect(
      mkfsCommand(
        filesystem({
          device: '/dev/vda1',
          mountPoint: '/boot/efi',
          type: 'vfat',
          mountDevice: 'UUID=ABCD-12EF',
          label: 'ESP',
        }),
      ),
    ).toEqual({ command: 'mkfs.vfat', args: ['-n', 'ESP', '-i', 'ABCD12EF', '/dev/vda1'] })
    expect(
      mkfsCommand(
        filesystem({
          device: '/dev/vda4',
          mountPoint: 'swap',
          type: 'swap',
          mountDevice: `UUID=${uuid}`,
        }),
      ),
    ).toEqual({ command: 'mkswap', args: ['-f', '-U', uuid, '/dev/vda4'] })
  })

  it('passes the layout’s mkfs options before the device', () => {
    expect(
      mkfsCommand(
        filesystem({
          device: '/dev/vda2',
          mountPoint: '/srv',
          type: 'ext4',
          mkfsOptions: ' -m 0  -O ^has_journal ',
        }),
      ).args,
    ).toEqual(['-t', 'ext4', '-F', '-q', '-m', '0', '-O', '^has_journal', '/dev/vda2'])
  })

  it('refuses a label too long for the filesystem, and a UUID of the wrong form', () => {
    const long = thrown(() =>
      mkfsCommand(
        filesystem({
          device: '/dev/vda1',
          mountPoint: '/boot/efi',
          type: 'vfat',
          label: 'EFISYSTEMPART',
        }),
      ),
    )
    expect(long.code).toBe('E_LAYOUT_INVALID')
    expect(long.message).toBe(
      'filesystem on /dev/vda1 (/boot/efi): label "EFISYSTEMPART" is longer than vfat\'s 11 characters',
    )
    const vfatUuid = thrown(() =>
      mkfsCommand(
        filesystem({
          device: '/dev/vda1',
          mountPoint: '/boot/efi',
          type: 'vfat',
          mountDevice: 'UUID=0f3a4b5c-1d2e-4f60-8a9b-0c1d2e3f4a5b',
        }),
      ),
    )
    expect(vfatUuid.message).toMatch(/is not a FAT volume id \(ABCD-1234\)/)
    expect(
      thrown(() =>
        mkfsCommand(
          filesystem({
            device: '/dev/vda2',
            mountPoint: '/x',
            type: 'ext4',
            mountDevice: 'UUID=nope',
          }),
        ),
      ).message,
    ).toMatch(/UUID=nope is not a UUID/)
  })
})

describe('installMountOptions', () => {
  it('mounts read-write and executable whatever fstab says, keeping the filesystem’s own options', () => {
    expect(installMountOptions('defaults')).toBe('rw')
    expect(installMountOptions('umask=0077,shortname=winnt')).toBe('rw,umask=0077,shortname=winnt')
    expect(installMountOptions('ro,noexec,noatime,nofail,x-systemd.automount,comment=x,user')).toBe(
      'rw,noatime',
    )
  })
})

describe('fstabText', () => {
  it('names each filesystem by the UUID blkid read, in the layout’s order, swap as none', () => {
    const layout = DiskLayoutSchema.parse({
      disks: [{ dev: '/dev/vda', label: 'gpt', partitions: [{ num: 1, size: '*' }] }],
      filesystems: [
        { device: '/dev/vda3', mountPoint: '/', type: 'ext4', pass: 1 },
        {
          device: '/dev/vda2',
          mountPoint: '/boot/efi',
          type: 'vfat',
          mountOptions: 'umask=0077',
          pass: 2,
        },
        { device: '/dev/vda4', mountPoint: 'swap', type: 'swap' },
        {
          device: '/dev/vdb1',
          mountPoint: '/data',
          type: 'xfs',
          mountDevice: 'LABEL=data',
          dump: 1,
        },
      ],
    })
    const uuids = new Map([
      ['/dev/vda3', '6b1c0c9e-4e0e-4bbf-9a46-1f5f3d3c2a10'],
      ['/dev/vda2', 'A1B2-C3D4'],
      ['/dev/vda4', '0d4f2a55-21f1-4c70-8a43-4ad1b76d3d7e'],
      ['/dev/vdb1', '11111111-2222-3333-4444-555555555555'],
    ])
    expect(fstabText(layout, uuids, 'compute')).toBe(
      [
        '# /etc/fstab, written by the imageswarm installer from disk layout compute',
        '# <file system>  <mount point>  <type>  <options>  <dump>  <pass>',
        'UUID=6b1c0c9e-4e0e-4bbf-9a46-1f5f3d3c2a10  /          ext4  defaults    0  1',
        'UUID=A1B2-C3D4                             /boot/efi  vfat  umask=0077  0  2',
        'UUID=0d4f2a55-21f1-4c70-8a43-4ad1b76d3d7e  none       swap  sw          0  0',
        'LABEL=data                                 /data      xfs   defaults    1  0',
        '',
      ].join('\n'),
    )
  })
})

describe('the default layout and its disk', () => {
  const disk = (name: string, fields: Partial<BlockDisk> = {}): BlockDisk => ({
    name,
    device: `/dev/${name}`,
    bytes: 8 * 1024 ** 3,
    sectorSize: 512,
    removable: false,
    readOnly: false,
    ...fields,
  })

  it('picks the first fixed, writable, non-empty disk: vda before vdb, virtio before SCSI before NVMe', () => {
    expect(chooseInstallDisk([disk('vdb'), disk('sda'), disk('vda')])?.device).toBe('/dev/vda')
    expect(chooseInstallDisk([disk('nvme1n1'), disk('sdb'), disk('nvme0n1')])?.device).toBe(
      '/dev/sdb',
    )
    expect(chooseInstallDisk([disk('nvme1n1'), disk('nvme0n2'), disk('nvme0n1')])?.device).toBe(
      '/dev/nvme0n1',
    )
    expect(chooseInstallDisk([disk('sdaa'), disk('sdz')])?.device).toBe('/dev/sdz')
    expect(
      chooseInstallDisk([
        disk('sda', { removable: true }),
        disk('sdb', { readOnly: true }),
        disk('sdc', { bytes: 0 }),
        disk('md0'),
        disk('sdd'),
      ])?.device,
    ).toBe('/dev/sdd')
    expect(chooseInstallDisk([disk('sda', { removable: true }), disk('dm-0')])).toBeUndefined()
  })

  it('is gpt with a BIOS boot partition and ext4 / (fsck pass 1), plus an ESP under UEFI', () => {
    const bios = defaultLayout('/dev/vda', 'bios')
    expect(bios.disks).toEqual([
      {
        dev: '/dev/vda',
        label: 'gpt',
        partitions: [
          { num: 1, size: { value: 1, unit: 'MiB' }, type: 'primary', flags: ['bios_grub'] },
          { num: 2, size: '*', type: 'primary', flags: [] },
        ],
      },
    ])
    expect(bios.filesystems).toEqual([
      {
        device: '/dev/vda2',
        mountPoint: '/',
        type: 'ext4',
        mountOptions: 'defaults',
        dump: 0,
        pass: 1,
        format: true,
      },
    ])
    const uefi = defaultLayout('/dev/nvme0n1', 'uefi')
    expect(uefi.disks[0]?.partitions.map((part) => [part.num, part.flags])).toEqual([
      [1, ['bios_grub']],
      [2, ['esp']],
      [3, []],
    ])
    expect(
      uefi.filesystems.map((fs) => [fs.device, fs.mountPoint, fs.type, fs.mountOptions]),
    ).toEqual([
      ['/dev/nvme0n1p3', '/', 'ext4', 'defaults'],
      ['/dev/nvme0n1p2', '/boot/efi', 'vfat', 'umask=0077'],
    ])
  })
})
