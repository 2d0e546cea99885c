import { constants } from 'node:fs'
import { access, stat } from 'node:fs/promises'
import { delimiter, join } from 'node:path'
import { ImageSwarmError } from '../errors.js'
import type { Compression } from '../manifest.js'
import { runTool } from './spawn-tool.js'
import type { ArchiveToolName, ToolOptions } from './types.js'

/** The Debian package that provides each tool, for the hint of E_TOOL_MISSING. */
export const TOOL_PACKAGES: Readonly<Record<ArchiveToolName, string>> = {
  tar: 'tar',
  zstd: 'zstd',
  gzip: 'gzip',
  unshare: 'util-linux',
  tar2sqfs: 'squashfs-tools-ng',
  sqfs2tar: 'squashfs-tools-ng',
  fallocate: 'util-linux',
}

/** Environment variables that name a tool's executable, overriding the PATH lookup. */
export const TOOL_ENV_VARS: Readonly<Record<ArchiveToolName, string>> = {
  tar: 'IMAGESWARM_TAR',
  zstd: 'IMAGESWARM_ZSTD',
  gzip: 'IMAGESWARM_GZIP',
  unshare: 'IMAGESWARM_UNSHARE',
  tar2sqfs: 'IMAGESWARM_TAR2SQFS',
  sqfs2tar: 'IMAGESWARM_SQFS2TAR',
  fallocate: 'IMAGESWARM_FALLOCATE',
}

/** `--sort=name`, which makes packing deterministic, arrived in GNU tar 1.28; 1.30 is our floor. */
const MIN_TAR_VERSION = [1, 30] as const

/**
 * The executable for `name`: `options.tools[name]`, else `$IMAGESWARM_<NAME>`, else `name`
 * looked up in PATH. A value containing `/` is used as a path; a bare name is looked up.
 */
export async function resolveTool(
  name: ArchiveToolName,
  options: ToolOptions = {},
): Promise<string> {
  const env = options.env ?? process.env
  // `||`, not `??`: an empty variable means unset, not "the current directory".
  const wanted = options.tools?.[name] || env[TOOL_ENV_VARS[name]] || name
  const candidates = wanted.includes('/')
    ? [wanted]
    : (env.PATH ?? '/usr/local/bin:/usr/bin:/bin')
        .split(delimiter)
        .filter((dir) => dir !== '')
        .map((dir) => join(dir, wanted))
  for (const candidate of candidates) {
    try {
      await access(candidate, constants.X_OK)
      if ((await stat(candidate)).isFile()) return candidate
    } catch {
      // Not here; try the next PATH entry.
    }
  }
  throw toolMissing(name, `${name} not found (looked for ${wanted})`)
}

export function toolMissing(
  name: ArchiveToolName,
  message: string,
  cause?: unknown,
): ImageSwarmError {
  const pkg = TOOL_PACKAGES[name]
  return new ImageSwarmError('E_TOOL_MISSING', message, {
    operation: `find ${name}`,
    path: name,
    hint:
      `install the Debian package '${pkg}' (apt-get install ${pkg}) ` +
      `or set ${TOOL_ENV_VARS[name]} to its path`,
    cause,
  })
}

/** The tools one compression needs, resolved to executables; GNU tar checked for its version. */
export interface ResolvedTools {
  tar: string
  /** The compressor for `zstd`/`gzip`; undefined for `none`. */
  compressor: string | undefined
}

/**
 * Checks that GNU tar (≥ 1.30) and the compressor for `compression` are installed.
 * Throws E_TOOL_MISSING naming the tool and the Debian package that provides it.
 *
 * @example await checkArchiveTools('zstd') // throws if zstd is not installed
 */
export async function checkArchiveTools(
  compression: Compression,
  options: ToolOptions = {},
): Promise<void> {
  await resolveArchiveTools(compression, options)
}

export async function resolveArchiveTools(
  compression: Compression,
  options: ToolOptions = {},
): Promise<ResolvedTools> {
  const tar = await resolveTool('tar', options)
  const compressor = compression === 'none' ? undefined : await resolveTool(compression, options)
  // The two run at once; each executable is run once per process (see `checkedOnce`).
  await Promise.all([
    checkedOnce(tar, () => checkTarVersion(tar)),
    compression === 'none' || compressor === undefined
      ? undefined
      : checkedOnce(compressor, () => checkRuns(compression, compressor)),
  ])
  return { tar, compressor }
}

/**
 * Executables that passed their check, by path and modification time: extracting or
 * packing again in the same process does not run `tar --version` again (about 10 ms).
 */
const passedChecks = new Set<string>()

async function checkedOnce(path: string, check: () => Promise<void>): Promise<void> {
  const key = `${path}\u0000${(await stat(path)).mtimeMs}`
  if (passedChecks.has(key)) return
  await check()
  passedChecks.add(key)
}

/** Running it proves it is an executable that works, not just a file with the x bit. */
async function checkRuns(name: Exclude<Compression, 'none'>, path: string): Promise<void> {
  const result = await runTool(path, ['--version']).catch((err: unknown) => {
    throw toolMissing(name, `${path} could not be run`, err)
  })
  if (result.code !== 0) {
    throw toolMissing(name, `${path} --version failed: ${result.stderr.trim()}`)
  }
}

async function checkTarVersion(tar: string): Promise<void> {
  const result = await runTool(tar, ['--version']).catch((err: unknown) => {
    throw toolMissing('tar', `${tar} could not be run`, err)
  })
  const match = /GNU tar\)?\s+(\d+)\.(\d+)/.exec(result.stdout)
  if (result.code !== 0 || match === null) {
    throw toolMissing('tar', `${tar} is not GNU tar (imageswarm needs GNU tar ≥ 1.30)`)
  }
  const version = [Number(match[1]), Number(match[2])] as const
  const [minMajor, minMinor] = MIN_TAR_VERSION
  if (version[0] < minMajor || (version[0] === minMajor && version[1] < minMinor)) {
    throw toolMissing(
      'tar',
      `${tar} is GNU tar ${version.join('.')}; imageswarm needs ≥ ${MIN_TAR_VERSION.join('.')}`,
    )
  }
}
