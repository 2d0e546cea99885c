import { existsSync } from 'node:fs'
import { lstat, mkdir, symlink } from 'node:fs/promises'
import { join, relative } from 'node:path'
import type { DiskLayout, Logger, NodeConfigBinding, NodeInstallConfig } from '@imageswarm/core'
import type { BootloaderPlan } from './boot-requirements.js'
import { findImageGrub, installGrub } from './bootloader.js'
import { fstabText } from './filesystems.js'
import { fileSource, type InstallFileSource } from './install-files.js'
import type { InstallerConsole } from './installer-console.js'
import type { MountStack } from './mount-stack.js'
import { applyOverrides } from './overrides.js'
import { runPostInstallScripts } from './post-install.js'
import type { InstallVariables } from './post-install-plan.js'
import { runTool } from './run-tool.js'
import { resetMachineId, writeHostname, writeTargetFile } from './target-files.js'

/** Where the kernel shows UEFI variables; bound into the new system for GRUB under UEFI. */
const EFIVARS = '/sys/firmware/efi/efivars'

export type ConfigureTargetOptions = InstallFileSource & {
  target: string
  image: string
  layout: DiskLayout
  layoutName: string
  uuids: ReadonlyMap<string, string>
  bootloader: BootloaderPlan
  node: NodeInstallConfig
  hostname: string | undefined
  domain: string | undefined
  variables: InstallVariables
  /**
   * From a signed node config (a node with a trust root): each override tar and server
   * post-install script must match its SHA-256 before it is extracted or run.
   */
  digests?: Pick<NodeConfigBinding, 'overrideSha256' | 'postInstallSha256'>
  /** Where override archives are written before extraction (memory in the ramdisk). */
  workDir: string
  mounts: MountStack
  console: InstallerConsole
  logger: Logger
}

/**
 * The `configuring` step, after extraction: the new system's own files (fstab by UUID,
 * host name, an empty machine-id), the overrides over it (so a site's own fstab or hosts
 * in an override wins, as in SystemImager 4), the check that it can boot, GRUB from its own
 * packages in a chroot, the post-install scripts; then the bind mounts go and everything
 * is written to disk (sync), so that the node is bootable before it is reported installed.
 */
export async function configureTarget(options: ConfigureTargetOptions): Promise<void> {
  const { target, console, logger, mounts } = options
  await writeTargetFile(
    target,
    '/etc/fstab',
    fstabText(options.layout, options.uuids, options.layoutName),
  )
  console.say(`wrote /etc/fstab (${options.layout.filesystems.length} filesystems, by UUID)`)
  if (options.hostname) {
    await writeHostname(target, options.hostname, options.domain)
    console.say(`host name ${options.hostname}: /etc/hostname, 127.0.1.1 in /etc/hosts`)
  } else {
    console.say(
      'no host name from the server, DHCP or imageswarm.hostname: /etc/hostname stays the image’s',
    )
  }
  await resetMachineId(target)

  if (options.node.overrides.length > 0) {
    const applied = await applyOverrides({
      names: options.node.overrides,
      target,
      workDir: options.workDir,
      ...fileSource(options),
      ...(options.digests ? { digests: options.digests.overrideSha256 } : {}),
      console,
      logger,
    })
    console.say(`overrides applied: ${applied.join(', ') || 'none'}`)
  }

  const grub = await findImageGrub(target, options.image, options.bootloader.installType)

  try {
    for (const [from, to] of [
      ['/dev', 'dev'],
      ['/dev/pts', 'dev/pts'],
      ['/proc', 'proc'],
      ['/sys', 'sys'],
    ] as const) {
      if (!existsSync(join(target, to))) continue
      await mounts.mount(
        'bind',
        ['--bind', from],
        join(target, to),
        `bind ${from} into the new system`,
      )
    }
    if (options.bootloader.installType === 'efi' && existsSync(EFIVARS)) {
      await mounts.mount(
        'bind',
        ['-t', 'efivarfs', 'efivarfs'],
        join(target, EFIVARS),
        'mount the UEFI variables into the new system',
      )
    }
    // A fresh /run, not the installer's: the image's tools (systemctl in a script) must not
    // find an initramfs's systemd there and talk to it.
    if (existsSync(join(target, 'run'))) {
      await mounts.mount(
        'bind',
        ['-t', 'tmpfs', '-o', 'mode=0755,nosuid,nodev', 'tmpfs'],
        join(target, 'run'),
        'mount a tmpfs on /run of the new system',
      )
    }
    await linkDisksByUuid(options.uuids, logger)
    console.say(
      options.bootloader.installType === 'efi'
        ? 'installing GRUB for UEFI (EFI/BOOT/BOOTX64.EFI on the ESP)'
        : `installing GRUB for BIOS on ${options.bootloader.targets.join(', ')}`,
    )
    await installGrub({
      target,
      grub,
      plan: options.bootloader,
      timeoutSeconds: options.layout.bootloader?.timeout,
      logger,
    })
    console.say(`GRUB installed; ${grub.config} written by ${grub.mkconfig.split('/').at(-1)}`)

    const ran = await runPostInstallScripts({
      target,
      serverScripts: options.node.postInstall,
      variables: options.variables,
      ...fileSource(options),
      ...(options.digests ? { digests: options.digests.postInstallSha256 } : {}),
      console,
      logger,
    })
    if (ran.length > 0) console.say(`post-install scripts done: ${ran.join(', ')}`)
  } finally {
    for (const problem of await mounts.unmountAll('bind')) {
      console.say(`unmounting: ${problem}`)
      logger.warn({ problem }, 'bind mount stayed busy')
    }
  }
  await syncDisks(logger)
}

/** Writes everything to the disks (`sync`): the node now boots even if it loses power. */
export async function syncDisks(logger: Logger): Promise<void> {
  await runTool('sync', [], {
    what: 'write everything to disk',
    code: 'E_PARTITION_FAILED',
    hint: 'a disk failed to write; see the kernel’s messages (dmesg)',
    logger,
  })
}

/**
 * udev's /dev/disk/by-uuid links, made where they are missing (the ramdisk runs no udev):
 * GRUB's 10_linux writes `root=UUID=…` only when the link of the root filesystem's UUID
 * exists, else `root=/dev/vda2`, a name the node's disk may not have at its next boot.
 */
export async function linkDisksByUuid(
  uuids: ReadonlyMap<string, string>,
  logger: Logger,
  devDir = '/dev',
): Promise<void> {
  const dir = join(devDir, 'disk/by-uuid')
  await mkdir(dir, { recursive: true })
  for (const [device, uuid] of uuids) {
    const link = join(dir, uuid)
    if (
      await lstat(link).then(
        () => true,
        () => false,
      )
    )
      continue
    await symlink(join('../..', relative(devDir, device)), link)
    logger.info({ link, device }, 'made the by-uuid link udev would have')
  }
}
