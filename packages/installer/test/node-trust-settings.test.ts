import { parseKernelCmdline } from '@imageswarm/core'
import { describe, expect, it } from 'vitest'
import { resolveNodeInstallerSettings } from '../src/node/installer-config.js'

const BASE = 'imageswarm.server=10.0.0.1 imageswarm.image=compute'
const settings = (cmdline: string, env: NodeJS.ProcessEnv = {}) =>
  resolveNodeInstallerSettings(parseKernelCmdline(`${BASE} ${cmdline}`), env)

describe('the installer’s trust settings', () => {
  it('say on the console that the node installs signed images and signed node configs only', () => {
    const baked = settings('', { IMAGESWARM_TRUST_ROOT: '/etc/imageswarm/root.pub' })
    expect(baked.client.trustRoot).toBe('/etc/imageswarm/root.pub')
    expect(baked.notes).toContain(
      'signed images only: root key /etc/imageswarm/root.pub (baked into this ramdisk)',
    )
    expect(baked.notes.join('\n')).toMatch(/node config .* must be signed too/)
  })

  it('say the insecure test mode on the console', () => {
    const test = settings('imageswarm.trust-root-key=RWQx imageswarm.insecure-test-mode=1')
    expect(test.notes.join('\n')).toMatch(
      /^INSECURE TEST MODE: trusting the root key given on the kernel command line \(imageswarm.trust-root-key\)/m,
    )
  })

  it('refuse a root key on the kernel command line beside the ramdisk’s, and without the test mode', () => {
    expect(() =>
      settings('imageswarm.trust-root-key=RWQx imageswarm.insecure-test-mode=1', {
        IMAGESWARM_TRUST_ROOT: '/etc/imageswarm/root.pub',
      }),
    ).toThrow(/a second root key/)
    expect(() => settings('imageswarm.trust-root-key=RWQx')).toThrow(/insecure test mode/)
    expect(settings('').notes.join('\n')).not.toMatch(/signed|INSECURE/)
  })
})
