import { parseMac } from '@imageswarm/core'
import { describe, expect, it } from 'vitest'
import { resolveInstallParameters } from '../src/parameters.js'

const kernel = (bootif: string) =>
  new Map([
    ['IMAGESERVER', '10.0.0.1'],
    ['IMAGENAME', 'compute'],
    ['BOOTIF', bootif],
  ])

describe('the boot MAC a node reports (BOOTIF=)', () => {
  it('reads BOOTIF as iPXE and PXELINUX write it', () => {
    for (const bootif of ['52:54:00:AB:cd:01', '01-52-54-00-ab-cd-01']) {
      const { config, sources } = resolveInstallParameters({
        flags: {},
        env: {},
        kernel: kernel(bootif),
      })
      expect(config.bootMac).toBe('52:54:00:ab:cd:01')
      expect(sources.bootMac).toEqual({ source: 'kernel', name: 'BOOTIF' })
    }
  })

  it('leaves the MAC out when iPXE did not expand its variable, and refuses a wrong one given by hand', () => {
    const { config } = resolveInstallParameters({
      flags: {},
      env: {},
      // biome-ignore lint/suspicious/noTemplateCurlyInString: iPXE's variable, left unexpanded
      kernel: kernel('${net0/mac}'),
    })
    expect(config.bootMac).toBeUndefined()
    expect(() =>
      resolveInstallParameters({ flags: { bootMac: '52:54:00' }, env: {}, kernel: kernel('') }),
    ).toThrow(/invalid --boot-mac/)
  })

  it('parses the forms a MAC is written in, and nothing else', () => {
    expect(parseMac('52-54-00-AB-CD-01')).toBe('52:54:00:ab:cd:01')
    expect(parseMac('01:52:54:00:ab:cd:01')).toBe('52:54:00:ab:cd:01')
    expect(parseMac('52:54:00:ab:cd')).toBeUndefined()
    expect(parseMac('zz:54:00:ab:cd:01')).toBeUndefined()
  })
})
