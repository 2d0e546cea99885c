import { ImageSwarmError } from '@imageswarm/core'
import { describe, expect, it } from 'vitest'
import {
  renderFailureScript,
  renderIdentifyScript,
  renderInstallScript,
} from '../src/ipxe-script.js'

describe('iPXE scripts', () => {
  it('boots the installer for the image, with the server, the consoles and --boot-append on the kernel line', () => {
    expect(
      renderInstallScript({
        serverUrl: 'http://10.0.0.1:6969',
        image: 'compute',
        bootAppend: ' imageswarm.on-failure=reboot si.disks-layout=compute ',
        node: 'node07 (52:54:00:12:34:56)',
      }),
    ).toBe(
      [
        '#!ipxe',
        '# imageswarm: install image compute on node07 (52:54:00:12:34:56)',
        // biome-ignore lint/suspicious/noTemplateCurlyInString: iPXE's ${…} in the expected text, not JavaScript's
        'kernel http://10.0.0.1:6969/boot/vmlinuz initrd=initrd.img imageswarm.server=http://10.0.0.1:6969 imageswarm.image=compute BOOTIF=${netX/mac} console=tty0 console=ttyS0,115200n8 imageswarm.on-failure=reboot si.disks-layout=compute',
        'initrd http://10.0.0.1:6969/boot/initrd.img',
        'boot',
        '',
      ].join('\n'),
    )
  })

  it('writes no trailing blank on the kernel line without --boot-append, and brackets an IPv6 server', () => {
    const script = renderInstallScript({
      serverUrl: 'http://[fd00::1]:6969',
      image: 'x',
      bootAppend: '',
    })
    expect(script.split('\n')[2]).toBe(
      // biome-ignore lint/suspicious/noTemplateCurlyInString: iPXE's ${…} in the expected text, not JavaScript's
      'kernel http://[fd00::1]:6969/boot/vmlinuz initrd=initrd.img imageswarm.server=http://[fd00::1]:6969 imageswarm.image=x BOOTIF=${netX/mac} console=tty0 console=ttyS0,115200n8',
    )
  })

  it('asks a node that did not say who it is to ask again with its MAC and DHCP host name', () => {
    expect(renderIdentifyScript('http://10.0.0.1:6969/')).toBe(
      // biome-ignore lint/suspicious/noTemplateCurlyInString: iPXE's ${…} in the expected text, not JavaScript's
      '#!ipxe\n# imageswarm: ask again, saying which node this is\nchain http://10.0.0.1:6969/boot/ipxe?mac=${netX/mac}&hostname=${hostname}\n',
    )
  })

  it('shows an error on the console without letting iPXE expand or chain anything in it', () => {
    const error = new ImageSwarmError(
      'E_UNKNOWN_IMAGE',
      // biome-ignore lint/suspicious/noTemplateCurlyInString: iPXE's ${…} in the expected text, not JavaScript's
      'which image ${x} node7\ninstalls && || is not known',
      {
        hint: 'start imageswarm serve with --boot-image NAME',
      },
    )
    expect(renderFailureScript(error)).toBe(
      [
        '#!ipxe',
        'echo imageswarm: error E_UNKNOWN_IMAGE: which image $ {x} node7 installs & & | | is not known',
        'echo imageswarm: hint: start imageswarm serve with --boot-image NAME',
        'sleep 60',
        'exit 1',
        '',
      ].join('\n'),
    )
  })
})
