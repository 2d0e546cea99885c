import { IMAGE_NAME_PATTERN, resolveConfig } from '@imageswarm/core'
import { z } from 'zod'

/** Where the server's install files are by default (each also a `serve` flag). */
export const INSTALL_DIRS = {
  /**
   * What `imageswarm initrd --output DIR` writes: vmlinuz, initrd.img, initrd.manifest.json.
   * Beside SystemImager's other server state (/var/lib/systemimager/{images,scripts,
   * overrides,tarballs,torrents}): files a command writes belong under /var/lib.
   * SystemImager's own boot files live in /usr/share/systemimager/boot/ARCH/FLAVOR, which
   * its packages own, and carry another installer.
   */
  boot: '/var/lib/systemimager/boot',
  /** SystemImager's scripts directory: disks-layouts/, cluster.txt, hosts, post-install/. */
  scripts: '/var/lib/systemimager/scripts',
  /** SystemImager's override directories, one per name. */
  overrides: '/var/lib/systemimager/overrides',
} as const

/**
 * Where the server finds what bare nodes need besides the image, and what it tells them.
 * Each key has a `serve` flag of the same name (`bootDir` ↔ `--boot-dir`).
 */
export const InstallRoutesConfigSchema = z.strictObject({
  bootDir: z.string().min(1).default(INSTALL_DIRS.boot),
  scriptsDir: z.string().min(1).default(INSTALL_DIRS.scripts),
  overridesDir: z.string().min(1).default(INSTALL_DIRS.overrides),
  /**
   * The image a network-booted node installs when cluster.txt names none for it; default:
   * the server's only image.
   */
  bootImage: z.string().regex(IMAGE_NAME_PATTERN).optional(),
  /**
   * Appended to the installer's kernel command line (`imageswarm.on-failure=reboot
   * si.disks-layout=compute`). One line: it goes into the iPXE script as it is (iPXE's
   * `${…}` settings are expanded there).
   */
  bootAppend: z
    .string()
    .max(2048)
    .regex(/^[^\r\n]*$/, 'one line')
    .default(''),
})

export type InstallRoutesConfig = z.output<typeof InstallRoutesConfigSchema>
export type InstallRoutesConfigInput = z.input<typeof InstallRoutesConfigSchema>

/** Fills defaults and names the bad key. */
export function resolveInstallRoutesConfig(
  partial: InstallRoutesConfigInput = {},
): InstallRoutesConfig {
  return resolveConfig(InstallRoutesConfigSchema, partial, 'install routes')
}
