import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import {
  buildFidelityTree,
  FIDELITY_COMMANDS,
  INSTALL_RECORD_SKIP,
  missingRequirements,
} from '@imageswarm/core/testing'

const run = promisify(execFile)

/** Built once per machine by scripts/make-debian-root.sh (scripts/setup.sh --test). */
export const DEBIAN_ROOT =
  process.env.IMAGESWARM_DEBIAN_ROOT ?? '/var/cache/imageswarm-tests/bookworm-minbase'

/** Why the Debian root tests cannot run here (no root built, a command missing), or undefined. */
export function missingDebianImage(commands: readonly string[] = []): string | undefined {
  return !existsSync(join(DEBIAN_ROOT, 'etc/debian_version'))
    ? `no Debian root at ${DEBIAN_ROOT} (scripts/make-debian-root.sh builds it)`
    : missingRequirements([...FIDELITY_COMMANDS, 'cp', ...commands])
}

/**
 * The image `debian` under `imagesDir`: the debootstrapped Debian minbase root, copied with
 * cp (not tar, so the archive engine is not tested against itself), plus every special case
 * an OS root can hold under srv/fidelity (capabilities, devices, FIFOs, ACLs, binary xattrs,
 * odd owners, names, modes and times). Returns its path.
 */
export async function copyDebianImage(imagesDir: string): Promise<string> {
  const image = join(imagesDir, 'debian')
  await mkdir(imagesDir, { recursive: true })
  await run('cp', ['-a', '--preserve=all', '--sparse=always', DEBIAN_ROOT, image])
  await buildFidelityTree(join(image, 'srv/fidelity'))
  return image
}

/**
 * What a root installed from `image` may differ in: the install's own record, and the
 * contents of /proc, /sys, /dev/pts and /run, which the default excludes leave out (the
 * directories themselves are kept).
 */
export async function runtimeSkips(image: string): Promise<string[]> {
  const skips: string[] = [...INSTALL_RECORD_SKIP]
  for (const dir of ['proc', 'sys', 'dev/pts', 'run']) {
    const names = await readdir(join(image, dir)).catch(() => [])
    skips.push(...names.map((name) => `${dir}/${name}`))
  }
  return skips
}
