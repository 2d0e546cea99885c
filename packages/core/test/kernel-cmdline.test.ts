import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { parseKernelCmdline, readKernelCmdline } from '../src/kernel-cmdline.js'

describe('parseKernelCmdline', () => {
  it('reads SystemImager’s names and namespaced imageswarm parameters', () => {
    const params = parseKernelCmdline(
      'BOOT_IMAGE=/vmlinuz root=/dev/ram0 IMAGESERVER=10.0.0.1 IMAGENAME=compute BITTORRENT_STAGING=/tmp imageswarm.target=/a quiet\n',
    )
    expect(params.get('IMAGESERVER')).toBe('10.0.0.1')
    expect(params.get('IMAGENAME')).toBe('compute')
    expect(params.get('BITTORRENT_STAGING')).toBe('/tmp')
    expect(params.get('imageswarm.target')).toBe('/a')
    expect(params.get('quiet')).toBe('')
    expect(params.get('BOOT_IMAGE')).toBe('/vmlinuz')
  })

  it('keeps spaces inside quoted values and quoted parameters, as the kernel does', () => {
    const params = parseKernelCmdline(
      'imageswarm.target="/mnt/new root" "imageswarm.staging=/var/tmp/x y" console=ttyS0,115200n8',
    )
    expect(params.get('imageswarm.target')).toBe('/mnt/new root')
    expect(params.get('imageswarm.staging')).toBe('/var/tmp/x y')
    expect(params.get('console')).toBe('ttyS0,115200n8')
  })

  it('splits only at the first "=" and lets the last repeated parameter win', () => {
    const params = parseKernelCmdline('imageswarm.server=http://h:1/?a=b IMAGENAME=a IMAGENAME=b')
    expect(params.get('imageswarm.server')).toBe('http://h:1/?a=b')
    expect(params.get('IMAGENAME')).toBe('b')
  })

  it('treats tabs and repeated whitespace as separators and ignores empty input', () => {
    expect([...parseKernelCmdline('  a=1\t\tb=2  ').entries()]).toEqual([
      ['a', '1'],
      ['b', '2'],
    ])
    expect(parseKernelCmdline('').size).toBe(0)
  })

  it('reads a command line file and treats a missing one as empty', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cmdline-'))
    try {
      await writeFile(join(dir, 'cmdline'), 'IMAGENAME=rocky9\n')
      expect((await readKernelCmdline(join(dir, 'cmdline'))).get('IMAGENAME')).toBe('rocky9')
      expect((await readKernelCmdline(join(dir, 'absent'))).size).toBe(0)
    } finally {
      await rm(dir, { recursive: true })
    }
  })
})
