import { open, stat } from 'node:fs/promises'
import { basename } from 'node:path'
import { ImageSwarmError } from '@imageswarm/core'

/** A kernel and its modules, ready to go into a ramdisk. */
export interface KernelFiles {
  /** The kernel image (x86 bzImage). */
  vmlinuz: string
  /** Its modules directory (`…/lib/modules/RELEASE`), with depmod's modules.dep. */
  modulesDir: string
  /** The kernel's release (`uname -r`), read from the image. */
  release: string
  source: KernelSource
}

export type KernelSource =
  | {
      kind: 'debian-package'
      /** What was asked for (`linux-image-cloud-amd64`). */
      requested: string
      /** The package that holds the files (`linux-image-6.1.0-57-cloud-amd64`). */
      package: string
      version: string
      /** The .deb's file name (in the kernel cache), and its SHA-256 as apt's index gives it. */
      deb: string
      debSha256: string
    }
  | { kind: 'files' }

/**
 * The release string of an x86 bzImage (`6.1.0-57-cloud-amd64`), from its boot-protocol
 * header: the "HdrS" magic at 0x202 and, at 0x20e, the offset (from 0x200) of the
 * NUL-terminated version string the kernel prints at boot. Undefined if the bytes are not
 * such a kernel.
 */
export function readKernelRelease(image: Buffer): string | undefined {
  if (image.length < 0x210 || image.toString('latin1', 0x202, 0x206) !== 'HdrS') return undefined
  const offset = image.readUInt16LE(0x20e) + 0x200
  if (offset >= image.length) return undefined
  const end = image.indexOf(0, offset)
  const text = image.toString('latin1', offset, end < 0 ? image.length : end)
  const release = text.split(' ')[0]
  return release !== undefined && /^\d+\.\d+\S*$/.test(release) ? release : undefined
}

/** Reads the release of the kernel image at `path`; E_USAGE if it is not an x86 kernel. */
export async function kernelRelease(path: string): Promise<string> {
  const handle = await open(path, 'r').catch((err: NodeJS.ErrnoException) => {
    throw new ImageSwarmError(
      'E_USAGE',
      `cannot read the kernel ${path}: ${err.code ?? err.message}`,
      {
        operation: 'read kernel',
        path,
        hint: 'pass --kernel FILE: a kernel image such as /boot/vmlinuz-$(uname -r)',
        cause: err,
      },
    )
  })
  try {
    // The version string sits in the first 32 KiB (setup code) of every bzImage.
    const head = Buffer.alloc(32 * 1024)
    const { bytesRead } = await handle.read(head, 0, head.length, 0)
    const release = readKernelRelease(head.subarray(0, bytesRead))
    if (release === undefined) {
      throw new ImageSwarmError('E_USAGE', `${path} is not an x86 Linux kernel image (bzImage)`, {
        operation: 'read kernel',
        path,
        hint: 'pass --kernel FILE: a kernel image such as /boot/vmlinuz-$(uname -r)',
      })
    }
    return release
  } finally {
    await handle.close()
  }
}

/**
 * A kernel given as files (`--kernel /boot/vmlinuz-X --modules /lib/modules/X`). The
 * modules directory must be the kernel's own: the ramdisk's modprobe looks in
 * /lib/modules/$(uname -r).
 */
export async function kernelFromFiles(vmlinuz: string, modulesDir: string): Promise<KernelFiles> {
  const release = await kernelRelease(vmlinuz)
  const info = await stat(modulesDir).catch(() => undefined)
  if (info === undefined || !info.isDirectory()) {
    throw new ImageSwarmError('E_USAGE', `modules directory ${modulesDir} does not exist`, {
      operation: 'read kernel modules',
      path: modulesDir,
      hint: `pass --modules /lib/modules/${release} (the modules of ${vmlinuz})`,
    })
  }
  if (basename(modulesDir) !== release) {
    throw new ImageSwarmError(
      'E_USAGE',
      `${vmlinuz} is kernel ${release}, but ${modulesDir} holds modules for ${basename(modulesDir)}`,
      {
        operation: 'read kernel modules',
        path: modulesDir,
        hint: `pass --modules /lib/modules/${release}, the modules built with this kernel`,
      },
    )
  }
  return { vmlinuz, modulesDir, release, source: { kind: 'files' } }
}
