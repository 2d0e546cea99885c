import { readdir, readFile, stat } from 'node:fs/promises'
import { ImageSwarmError, type Logger } from '@imageswarm/core'
import type { BootloaderPlan } from './boot-requirements.js'
import { pathInRoot } from './root-path.js'
import { runTool } from './run-tool.js'
import { withGrubTimeout, writeTargetFile } from './target-files.js'

/** What runs in the chroot: the installed system's own tools, never the ramdisk's. */
export const CHROOT_ENV: NodeJS.ProcessEnv = {
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  HOME: '/root',
  TERM: 'linux',
  LANG: 'C.UTF-8',
  DEBIAN_FRONTEND: 'noninteractive',
}

/** The GRUB of the installed system: its tools and where its config goes. */
export interface ImageGrub {
  /** `/usr/sbin/grub-install` (Debian) or `/usr/sbin/grub2-install` (RHEL), in the chroot. */
  install: string
  mkconfig: string
  /** `/boot/grub/grub.cfg` or `/boot/grub2/grub.cfg`. */
  config: string
}

/** GRUB's platform directory for each install type, and the packages that ship it. */
const GRUB_PLATFORMS = {
  legacy: {
    target: 'i386-pc',
    packages: 'Debian/Ubuntu grub-pc, RHEL grub2-pc',
  },
  efi: {
    target: 'x86_64-efi',
    packages: 'Debian/Ubuntu grub-efi-amd64, RHEL grub2-efi-x64',
  },
} as const

const KERNEL_NAME = /^(vmlinuz|vmlinux|bzImage|kernel)([-.].*)?$/

async function exists(target: string, path: string): Promise<boolean> {
  const real = await pathInRoot(target, path)
  return stat(real).then(
    () => true,
    () => false,
  )
}

/** The first of `paths` the installed system has. */
async function firstPresent(target: string, paths: readonly string[]): Promise<string | undefined> {
  for (const path of paths) if (await exists(target, path)) return path
  return undefined
}

/**
 * Checks the installed system can boot this node before anything is installed into its
 * boot area: a kernel (`/boot/vmlinuz-*`, or `/vmlinuz`), and GRUB with its modules for the
 * node's firmware (`grub-install`, `grub-mkconfig`, `/usr/lib/grub/i386-pc` or
 * `x86_64-efi`). E_IMAGE_NOT_BOOTABLE says everything that is missing and which packages
 * to add to the image.
 */
export async function findImageGrub(
  target: string,
  image: string,
  installType: BootloaderPlan['installType'],
): Promise<ImageGrub> {
  const missing: string[] = []
  const hints: string[] = []
  const boot = await pathInRoot(target, '/boot')
  const kernels = (await readdir(boot).catch(() => [] as string[])).filter((name) =>
    KERNEL_NAME.test(name),
  )
  if (kernels.length === 0 && !(await firstPresent(target, ['/vmlinuz', '/vmlinux']))) {
    missing.push('kernel (/boot/vmlinuz-*)')
    hints.push('a kernel package (Debian linux-image-amd64, RHEL kernel)')
  }
  const install = await firstPresent(target, [
    '/usr/sbin/grub-install',
    '/usr/sbin/grub2-install',
    '/sbin/grub-install',
    '/sbin/grub2-install',
  ])
  const mkconfig = await firstPresent(target, [
    '/usr/sbin/grub-mkconfig',
    '/usr/sbin/grub2-mkconfig',
    '/sbin/grub-mkconfig',
    '/sbin/grub2-mkconfig',
  ])
  const platform = GRUB_PLATFORMS[installType]
  const modules = await firstPresent(target, [
    `/usr/lib/grub/${platform.target}/modinfo.sh`,
    `/usr/lib/grub2/${platform.target}/modinfo.sh`,
  ])
  if (!install || !mkconfig) missing.push('GRUB (grub-install, grub-mkconfig)')
  if (!modules) {
    missing.push(
      `GRUB modules for ${installType === 'efi' ? 'UEFI' : 'BIOS'} (/usr/lib/grub/${platform.target})`,
    )
  }
  if (!install || !mkconfig || !modules) hints.push(platform.packages)
  if (missing.length > 0 || !install || !mkconfig) {
    throw new ImageSwarmError(
      'E_IMAGE_NOT_BOOTABLE',
      `image ${image} cannot boot this node: it has no ${missing.join(', no ')}`,
      {
        operation: 'check the image can boot',
        path: target,
        hint: `add to the image: ${hints.join('; ')}; then republish it`,
      },
    )
  }
  return {
    install,
    mkconfig,
    config: install.includes('grub2') ? '/boot/grub2/grub.cfg' : '/boot/grub/grub.cfg',
  }
}

/**
 * Installs GRUB with the image's own tools, chrooted into it (/dev, /proc, /sys bound in):
 * `grub-install --target=i386-pc DISK` for each target disk, or for UEFI `grub-install
 * --target=x86_64-efi --efi-directory=/boot/efi --removable --no-nvram` (the fallback path
 * EFI/BOOT/BOOTX64.EFI, which any UEFI boots without an NVRAM entry, so a node whose
 * firmware forgets its entries still boots), then `grub-mkconfig -o /boot/grub/grub.cfg`
 * (what Debian's update-grub runs). With the layout's timeout, GRUB_TIMEOUT in
 * /etc/default/grub is set first.
 */
export async function installGrub(options: {
  target: string
  grub: ImageGrub
  plan: BootloaderPlan
  timeoutSeconds?: number | undefined
  logger: Logger
}): Promise<void> {
  const { target, grub, plan, logger } = options
  if (options.timeoutSeconds !== undefined) {
    const defaults = await pathInRoot(target, '/etc/default/grub')
    const text = await readFile(defaults, 'utf8').catch(() => '')
    await writeTargetFile(
      target,
      '/etc/default/grub',
      withGrubTimeout(text, options.timeoutSeconds),
    )
  }
  const hint =
    'see grub-install’s message above; the image’s GRUB runs in a chroot of the new system'
  if (plan.installType === 'efi') {
    await runTool(
      'chroot',
      [
        target,
        grub.install,
        `--target=${GRUB_PLATFORMS.efi.target}`,
        '--efi-directory=/boot/efi',
        '--removable',
        '--no-nvram',
      ],
      { what: 'install GRUB for UEFI', code: 'E_BOOTLOADER_FAILED', hint, env: CHROOT_ENV, logger },
    )
  } else {
    for (const disk of plan.targets) {
      await runTool(
        'chroot',
        [target, grub.install, `--target=${GRUB_PLATFORMS.legacy.target}`, disk],
        {
          what: `install GRUB for BIOS on ${disk}`,
          code: 'E_BOOTLOADER_FAILED',
          path: disk,
          hint,
          env: CHROOT_ENV,
          logger,
        },
      )
    }
  }
  await runTool('chroot', [target, grub.mkconfig, '-o', grub.config], {
    what: `write GRUB's configuration ${grub.config}`,
    code: 'E_BOOTLOADER_FAILED',
    path: grub.config,
    hint: 'see grub-mkconfig’s message above (its scripts in /etc/grub.d of the image)',
    env: CHROOT_ENV,
    logger,
  })
}
