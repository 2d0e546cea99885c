import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'

// The harness lives in scripts/lib (plain ESM) because the benchmark and the demo, run by
// node without a build, use it too; the tests import it from here.
export * from '../../scripts/lib/vm-cluster.mjs'
export type { TestNetwork } from '../../scripts/lib/vm-network.mjs'

/** Built once per machine by scripts/make-debian-root.sh --bootable (scripts/setup.sh --test). */
export const BOOTABLE_ROOT =
  process.env.IMAGESWARM_BOOTABLE_ROOT ?? '/var/cache/imageswarm-tests/bookworm-bootable'

export interface TestKernel {
  /** The kernel image (bzImage). */
  kernel: string
  /** Its /lib/modules/RELEASE directory. */
  modulesDir: string
  release: string
}

/**
 * A Debian cloud kernel and its modules for the harness's own VMs: IMAGESWARM_VM_KERNEL
 * (with IMAGESWARM_VM_MODULES) if set, else the one in the bootable test root.
 */
export async function findTestKernel(): Promise<TestKernel | { missing: string }> {
  const kernel = process.env.IMAGESWARM_VM_KERNEL
  if (kernel) {
    const modulesDir = process.env.IMAGESWARM_VM_MODULES
    if (!modulesDir) return { missing: 'IMAGESWARM_VM_KERNEL set without IMAGESWARM_VM_MODULES' }
    return { kernel, modulesDir, release: modulesDir.split('/').at(-1) ?? '' }
  }
  const boot = join(BOOTABLE_ROOT, 'boot')
  if (!existsSync(boot)) {
    return {
      missing: `no bootable Debian root at ${BOOTABLE_ROOT} (scripts/make-debian-root.sh --bootable builds it)`,
    }
  }
  const images = (await readdir(boot)).filter((name) => name.startsWith('vmlinuz-')).sort()
  const image = images.at(-1)
  if (!image) return { missing: `no vmlinuz-* in ${boot}` }
  const release = image.slice('vmlinuz-'.length)
  return {
    kernel: join(boot, image),
    modulesDir: join(BOOTABLE_ROOT, 'lib/modules', release),
    release,
  }
}

/**
 * Skips a VM test file with a clear message where VMs cannot run here, or fails it where
 * they must (`IMAGESWARM_REQUIRE_VMS=1`, set by CI, whose setup installs everything they
 * need): a CI machine that lost QEMU must not pass by skipping the installer's tests.
 */
export function skipReason(what: string, missing: string | undefined): string | undefined {
  if (!missing) return undefined
  if (process.env.IMAGESWARM_REQUIRE_VMS === '1') {
    throw new Error(`${what} cannot run, and IMAGESWARM_REQUIRE_VMS=1: ${missing}`)
  }
  console.warn(`${what} skipped: ${missing}`)
  return missing
}

/** The program the installer ramdisk's /init runs, from `pnpm build`. */
export const INSTALLER_BUNDLE = new URL(
  '../../packages/cli/dist/imageswarm-installer.mjs',
  import.meta.url,
).pathname

/** Where `imageswarm initrd` keeps Debian's kernel across runs (its default). */
export const KERNEL_CACHE = process.env.IMAGESWARM_KERNEL_CACHE ?? '/var/cache/imageswarm/kernels'

/**
 * What building the installer ramdisk needs besides VMs: the installer bundle and Debian's
 * cloud kernel, cached or known to apt. A reason it cannot be built, or undefined.
 */
export async function missingInstallerParts(): Promise<string | undefined> {
  if (!existsSync(INSTALLER_BUNDLE)) return `no ${INSTALLER_BUNDLE} (pnpm build)`
  const cached =
    existsSync(KERNEL_CACHE) &&
    (await readdir(KERNEL_CACHE)).some((name) => /^linux-image-.*-cloud-amd64_.*\.deb$/.test(name))
  const known = await promisify(execFile)(
    'apt-cache',
    ['show', '--no-all-versions', 'linux-image-cloud-amd64'],
    { timeout: 30_000 },
  ).then(
    () => true,
    () => false,
  )
  if (!cached && !known) {
    return `apt knows no linux-image-cloud-amd64 and ${KERNEL_CACHE} holds none (apt-get update)`
  }
  return undefined
}
