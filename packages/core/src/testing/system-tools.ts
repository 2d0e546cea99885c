import { execFile } from 'node:child_process'
import { accessSync, constants } from 'node:fs'
import { delimiter, join } from 'node:path'
import { promisify } from 'node:util'

/** The Debian package for each command the archive tests run. */
export const TEST_COMMAND_PACKAGES: Readonly<Record<string, string>> = {
  setfattr: 'attr',
  getfattr: 'attr',
  setfacl: 'acl',
  getfacl: 'acl',
  setcap: 'libcap2-bin',
  mknod: 'coreutils',
  touch: 'coreutils',
  tar: 'tar',
  zstd: 'zstd',
  gzip: 'gzip',
  unshare: 'util-linux',
  tar2sqfs: 'squashfs-tools-ng',
  sqfs2tar: 'squashfs-tools-ng',
  mksquashfs: 'squashfs-tools',
}

export const isRoot = process.getuid?.() === 0

export function hasCommand(name: string): boolean {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    try {
      accessSync(join(dir, name), constants.X_OK)
      return true
    } catch {
      // next
    }
  }
  return false
}

/**
 * Why a test cannot run here, or undefined when it can: not root, or commands missing,
 * named with the Debian packages that provide them.
 */
export function missingRequirements(
  commands: readonly string[],
  needRoot = true,
): string | undefined {
  const reasons: string[] = []
  if (needRoot && !isRoot) reasons.push('needs root')
  const missing = commands.filter((name) => !hasCommand(name))
  if (missing.length > 0) {
    const packages = [...new Set(missing.map((name) => TEST_COMMAND_PACKAGES[name] ?? name))]
    reasons.push(`missing ${missing.join(', ')} (apt-get install ${packages.join(' ')})`)
  }
  return reasons.length === 0 ? undefined : reasons.join('; ')
}

const execFileAsync = promisify(execFile)

/** Runs a command and returns its stdout; rejects with its stderr when it fails. */
export async function run(command: string, args: readonly string[]): Promise<string> {
  const { stdout } = await execFileAsync(command, args, { maxBuffer: 64 << 20 })
  return stdout
}
