import { readFile } from 'node:fs/promises'
import { errnoOf, ImageSwarmError } from '../errors.js'

/**
 * What packing leaves out of every image unless told otherwise: the *contents* of the
 * kernel's pseudo-filesystems (proc, sysfs, devpts), which appear in an image root only
 * when someone mounted them into it for a chroot, and of `/run`, a tmpfs that every boot
 * mounts over whatever the image holds there. The directories themselves stay, with their
 * modes, because the installed system mounts onto them.
 *
 * `/tmp` is deliberately kept: it is a plain directory on Debian 12 and RHEL, and an image
 * root is exactly what the administrator wants installed. Sockets need no pattern: tar
 * skips them with a warning.
 */
export const DEFAULT_EXCLUDES: readonly string[] = ['./proc/*', './sys/*', './dev/pts/*', './run/*']

/**
 * Exclude patterns as tar sees them. `anchored` patterns start with `./` and match from the
 * image root; `floating` ones match at any depth (tar's default for `--exclude`).
 */
export interface ExcludeSet {
  anchored: string[]
  floating: string[]
}

export interface ExcludeSources {
  excludes?: readonly string[] | undefined
  excludeFile?: string | undefined
  /** Default true: add DEFAULT_EXCLUDES. */
  defaultExcludes?: boolean | undefined
}

/** Gathers the default patterns, the caller's and the exclude file's into one set. */
export async function collectExcludes(sources: ExcludeSources): Promise<ExcludeSet> {
  const set: ExcludeSet = { anchored: [], floating: [] }
  if (sources.defaultExcludes ?? true) set.anchored.push(...DEFAULT_EXCLUDES)
  for (const pattern of sources.excludes ?? []) addPattern(set, pattern)
  if (sources.excludeFile !== undefined) {
    let text: string
    try {
      text = await readFile(sources.excludeFile, 'utf8')
    } catch (err) {
      throw new ImageSwarmError(
        'E_USAGE',
        `cannot read exclude file ${sources.excludeFile}: ${errnoOf(err) ?? String(err)}`,
        {
          operation: 'pack',
          path: sources.excludeFile,
          hint: 'check the exclude file path',
          cause: err,
        },
      )
    }
    for (const pattern of parseExcludeFile(text)) addPattern(set, pattern)
  }
  return set
}

/**
 * Patterns from a SystemImager-style exclude file: one a line, `#` starts a comment line,
 * blank lines ignored. `/var/cache/*` (leading slash: relative to the image root) becomes
 * tar's `./var/cache/*`; a pattern without a leading slash matches at any depth.
 *
 * @example parseExcludeFile('# junk\n/tmp/*\ncore\n') // ['./tmp/*', 'core']
 */
export function parseExcludeFile(text: string): string[] {
  const patterns: string[] = []
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) continue
    patterns.push(toTarPattern(line))
  }
  return patterns
}

/**
 * One pattern in tar's form. tar's member names start with `./` (we pack `-C root .`), so a
 * root-relative `/x` becomes `./x`. tar cannot say "directories only", so rsync's trailing
 * slash is dropped (`/var/cache/` then also matches a file of that name): tar would
 * otherwise never match it at all.
 */
export function toTarPattern(pattern: string): string {
  let out = pattern
  if (out.startsWith('/')) out = `./${out.replace(/^\/+/, '')}`
  if (out.length > 1) out = out.replace(/\/+$/, '')
  return out
}

function addPattern(set: ExcludeSet, pattern: string): void {
  const tarPattern = toTarPattern(pattern)
  if (tarPattern === '' || tarPattern === '.' || tarPattern === './') {
    throw new ImageSwarmError(
      'E_USAGE',
      `exclude pattern '${pattern}' would exclude the whole image`,
      {
        operation: 'pack',
        hint: "exclude the contents instead, e.g. '/var/cache/*'",
      },
    )
  }
  if (tarPattern.startsWith('./')) set.anchored.push(tarPattern)
  else set.floating.push(tarPattern)
}

/** tar arguments for an exclude set; they must come before the `.` operand. */
export function excludeArgs(set: ExcludeSet): string[] {
  const args: string[] = []
  if (set.anchored.length > 0) {
    args.push('--anchored', ...set.anchored.map((p) => `--exclude=${p}`), '--no-anchored')
  }
  args.push(...set.floating.map((p) => `--exclude=${p}`))
  return args
}
