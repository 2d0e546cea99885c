import { BOOT_PATHS, type ImageSwarmError, serverUrl as joinUrl } from '@imageswarm/core'

/**
 * iPXE's settings the scripts use, which iPXE fills in: the MAC of the NIC it booted from
 * (`netX` is the last one opened; `net0`, the first, is another NIC on a node with
 * several) and the host name DHCP gave it (empty without one).
 */
// biome-ignore lint/suspicious/noTemplateCurlyInString: iPXE's setting syntax, not JavaScript's
const IPXE_BOOT_MAC = '${netX/mac}'
// biome-ignore lint/suspicious/noTemplateCurlyInString: iPXE's setting syntax, not JavaScript's
const IPXE_HOSTNAME = '${hostname}'

/**
 * The installer's console on a node: the screen and the first serial port at 115200 baud
 * (the kernel prints to every console named; /init and the installer log to both).
 */
export const INSTALLER_CONSOLES = 'console=tty0 console=ttyS0,115200n8'

export interface InstallScriptOptions {
  /** The server as nodes reach it (`http://10.0.0.1:6969`): the advertised address. */
  serverUrl: string
  image: string
  /** `serve --boot-append`, added at the end of the kernel command line. */
  bootAppend: string
  /** Who it is for, in a comment: `node07 (52:54:00:12:34:56)`. */
  node?: string
}

/**
 * The iPXE script that boots the installer ramdisk for one image: the kernel with its
 * command line, the ramdisk, `boot`. `initrd=initrd.img` names the ramdisk to a kernel
 * started through its EFI stub (UEFI), which loads it by that name; `BOOTIF=${netX/mac}`
 * (iPXE fills it in: the NIC it booted from, which `net0` is not on a node with several)
 * tells /init which NIC to bring up.
 *
 * @example
 *   renderInstallScript({ serverUrl: 'http://10.0.0.1:6969', image: 'compute', bootAppend: '' })
 *   // #!ipxe
 *   // kernel http://10.0.0.1:6969/boot/vmlinuz initrd=initrd.img imageswarm.server=http://10.0.0.1:6969 imageswarm.image=compute BOOTIF=${netX/mac} console=tty0 console=ttyS0,115200n8
 *   // initrd http://10.0.0.1:6969/boot/initrd.img
 *   // boot
 */
export function renderInstallScript(options: InstallScriptOptions): string {
  const kernelLine = [
    'kernel',
    joinUrl(options.serverUrl, BOOT_PATHS.kernel),
    'initrd=initrd.img',
    `imageswarm.server=${options.serverUrl}`,
    `imageswarm.image=${options.image}`,
    `BOOTIF=${IPXE_BOOT_MAC}`,
    INSTALLER_CONSOLES,
    options.bootAppend.trim(),
  ]
    .filter((word) => word !== '')
    .join(' ')
  return [
    '#!ipxe',
    `# imageswarm: install image ${options.image}${options.node ? ` on ${options.node}` : ''}`,
    kernelLine,
    `initrd ${joinUrl(options.serverUrl, BOOT_PATHS.initrd)}`,
    'boot',
    '',
  ].join('\n')
}

/**
 * The first script a node gets when it asks without saying who it is (the DHCP boot file
 * name is a plain URL): it asks again with its MAC and DHCP host name, so the server can
 * choose its image by name (cluster.txt), as SystemImager does.
 */
export function renderIdentifyScript(serverUrl: string): string {
  return [
    '#!ipxe',
    '# imageswarm: ask again, saying which node this is',
    `chain ${joinUrl(serverUrl, BOOT_PATHS.ipxe)}?mac=${IPXE_BOOT_MAC}&hostname=${IPXE_HOSTNAME}`,
    '',
  ].join('\n')
}

/**
 * A script that shows why this node cannot be installed on its console, then gives up
 * after a minute: iPXE goes on to the next boot device (the disk).
 */
export function renderFailureScript(error: ImageSwarmError): string {
  // iPXE expands ${…} and reads && and || as operators, even in echo's words.
  const text = (line: string) =>
    line
      .replace(/[\r\n]+/g, ' ')
      .replace(/\$\{/g, '$ {')
      .replace(/&&|\|\|/g, (op) => op.split('').join(' '))
  return [
    '#!ipxe',
    `echo imageswarm: error ${error.code}: ${text(error.message)}`,
    ...(error.hint ? [`echo imageswarm: hint: ${text(error.hint)}`] : []),
    'sleep 60',
    'exit 1',
    '',
  ].join('\n')
}
