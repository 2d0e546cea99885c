import { afterEach, describe, expect, it } from 'vitest'
import {
  parseAptRecord,
  parsePrintUris,
  versionedKernelPackage,
} from '../src/ramdisk/debian-kernel.js'
import { findHostTool } from '../src/ramdisk/host-tools.js'
import { kernelFromFiles, readKernelRelease } from '../src/ramdisk/kernel.js'
import { parseLddOutput } from '../src/ramdisk/shared-libraries.js'
import { FAKE_RELEASE, type FakeKernel, fakeBzImage, makeFakeKernel } from './fake-kernel.js'

describe('ldd output', () => {
  it('lists each resolved library and the dynamic loader, not the vDSO', () => {
    const output = [
      '\tlinux-vdso.so.1 (0x00007ffd8a5f2000)',
      '\tlibstdc++.so.6 => /lib/x86_64-linux-gnu/libstdc++.so.6 (0x00007f1753c00000)',
      '\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f175393e000)',
      '\t/lib64/ld-linux-x86-64.so.2 (0x00007f1753ea6000)',
    ].join('\n')
    expect(parseLddOutput(output, '/usr/bin/node')).toEqual([
      '/lib/x86_64-linux-gnu/libstdc++.so.6',
      '/lib/x86_64-linux-gnu/libc.so.6',
      '/lib64/ld-linux-x86-64.so.2',
    ])
  })

  it('lists nothing for a static binary', () => {
    expect(parseLddOutput('\tnot a dynamic executable\n', '/bin/busybox')).toEqual([])
  })

  it('refuses a binary whose library is missing: it would not start on the node either', () => {
    expect(() => parseLddOutput('\tlibinih.so.0 => not found\n', '/usr/sbin/mkfs.xfs')).toThrow(
      expect.objectContaining({ code: 'E_TOOL_MISSING', path: '/usr/sbin/mkfs.xfs' }),
    )
  })
})

describe('host tools', () => {
  it('finds tools in sbin even when PATH leaves sbin out', async () => {
    expect(await findHostTool('depmod', 'kmod', { PATH: '/usr/bin:/bin' })).toMatch(/sbin\/depmod$/)
  })

  it('names the Debian package of a missing tool', async () => {
    await expect(findHostTool('no-such-ramdisk-tool', 'busybox-static')).rejects.toMatchObject({
      code: 'E_TOOL_MISSING',
      hint: expect.stringContaining('apt-get install busybox-static'),
    })
  })
})

describe('kernel images', () => {
  let kernel: FakeKernel | undefined
  afterEach(async () => {
    await kernel?.remove()
    kernel = undefined
  })

  it('reads the release from the bzImage header', () => {
    expect(readKernelRelease(fakeBzImage('6.1.0-57-cloud-amd64'))).toBe('6.1.0-57-cloud-amd64')
    expect(readKernelRelease(Buffer.from('#!/bin/sh\necho not a kernel\n'))).toBeUndefined()
  })

  it('refuses modules built for another kernel', async () => {
    kernel = await makeFakeKernel()
    const other = await makeFakeKernel('6.1.0-1-other-amd64')
    try {
      await expect(kernelFromFiles(other.vmlinuz, kernel.modulesDir)).rejects.toMatchObject({
        code: 'E_USAGE',
        message: expect.stringContaining(
          `kernel 6.1.0-1-other-amd64, but ${kernel.modulesDir} holds modules for ${FAKE_RELEASE}`,
        ),
      })
    } finally {
      await other.remove()
    }
  })

  it('refuses a file that is not a kernel image', async () => {
    kernel = await makeFakeKernel()
    await expect(
      kernelFromFiles(`${kernel.modulesDir}/modules.dep`, kernel.modulesDir),
    ).rejects.toMatchObject({
      code: 'E_USAGE',
      message: expect.stringContaining('not an x86 Linux kernel image'),
    })
  })
})

describe('Debian kernel packages', () => {
  it('follows a meta-package to the versioned kernel it depends on', () => {
    const record = parseAptRecord(
      [
        'Package: linux-image-cloud-amd64',
        'Version: 6.1.192-3',
        'Provides: linux-latest-modules-6.1.0-57-cloud-amd64, wireguard-modules (= 1.0.0)',
        'Depends: linux-image-6.1.0-57-cloud-amd64 (= 6.1.192-3)',
        'Description: Linux for x86-64 cloud (meta-package)',
        '',
        'Package: linux-image-cloud-amd64',
        'Version: 6.1.176-1',
        '',
      ].join('\n'),
    )
    expect(record).toEqual({
      package: 'linux-image-cloud-amd64',
      version: '6.1.192-3',
      depends: ['linux-image-6.1.0-57-cloud-amd64'],
    })
    expect(versionedKernelPackage(record!)).toBe('linux-image-6.1.0-57-cloud-amd64')
  })

  it('takes a versioned kernel package as it is', () => {
    const record = parseAptRecord(
      'Package: linux-image-6.1.0-57-cloud-amd64\nVersion: 6.1.192-3\nDepends: kmod, linux-base (>= 4.3~), initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool\n',
    )
    expect(versionedKernelPackage(record!)).toBe('linux-image-6.1.0-57-cloud-amd64')
  })

  it('reads the file name, size and SHA-256 apt will download', () => {
    const line =
      "'http://deb.debian.org/debian-security/pool/updates/main/l/linux-signed-amd64/linux-image-6.1.0-57-cloud-amd64_6.1.192-3_amd64.deb' linux-image-6.1.0-57-cloud-amd64_6.1.192-3_amd64.deb 26705532 SHA256:4fdd0172a8c3f41a97e92465b2ac1867e1c10d82d7aeed3d26ee7a5d14df1754\n"
    expect(parsePrintUris(line)).toMatchObject({
      file: 'linux-image-6.1.0-57-cloud-amd64_6.1.192-3_amd64.deb',
      bytes: 26705532,
      sha256: '4fdd0172a8c3f41a97e92465b2ac1867e1c10d82d7aeed3d26ee7a5d14df1754',
    })
  })
})
