import { constants } from 'node:fs'
import { access, stat } from 'node:fs/promises'
import { delimiter, join } from 'node:path'
import { ImageSwarmError } from '@imageswarm/core'

/**
 * Directories searched after PATH: disk tools and depmod live in sbin, which a
 * non-root PATH often leaves out.
 */
const SBIN_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin']

/**
 * The executable `name` in PATH (then the sbin directories), or E_TOOL_MISSING naming the
 * Debian package that provides it: the same error and hint as the archive tools
 * (core's `checkArchiveTools`).
 *
 * @example await findHostTool('depmod', 'kmod') // '/usr/sbin/depmod'
 */
export async function findHostTool(
  name: string,
  debianPackage: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<string> {
  const found = await lookUpTool(name, env)
  if (found !== undefined) return found
  throw toolMissing(name, debianPackage, `${name} not found in PATH or ${SBIN_DIRS.join(', ')}`)
}

/** The executable `name` (a path, or looked up like `findHostTool`), or undefined. */
export async function lookUpTool(
  name: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<string | undefined> {
  const dirs = name.includes('/')
    ? ['']
    : [...(env.PATH ?? '/usr/local/bin:/usr/bin:/bin').split(delimiter), ...SBIN_DIRS]
  for (const dir of dirs) {
    if (dir === '' && !name.includes('/')) continue
    const candidate = dir === '' ? name : join(dir, name)
    try {
      await access(candidate, constants.X_OK)
      if ((await stat(candidate)).isFile()) return candidate
    } catch {
      // Not here; try the next directory.
    }
  }
  return undefined
}

export function toolMissing(
  name: string,
  debianPackage: string,
  message: string,
  cause?: unknown,
): ImageSwarmError {
  return new ImageSwarmError('E_TOOL_MISSING', message, {
    operation: `find ${name}`,
    path: name,
    hint: `install the Debian package '${debianPackage}' (apt-get install ${debianPackage})`,
    cause,
  })
}
