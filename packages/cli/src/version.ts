import { readFileSync } from 'node:fs'

// Replaced by the version string when a bundle is built (esbuild `define`, see
// build-client-bundle.mjs and scripts/package/build.mjs): a bundle has no package.json
// beside it, and an installer ramdisk has none at all.
declare const __IMAGESWARM_VERSION__: string | undefined

let cached: string | undefined

/**
 * imageswarm's version, from the one place it is written: the `version` of
 * packages/cli/package.json (inlined into bundles when they are built).
 *
 * @example version() // '0.1.0'
 */
export function version(): string {
  if (cached === undefined) {
    cached =
      typeof __IMAGESWARM_VERSION__ === 'string'
        ? __IMAGESWARM_VERSION__
        : readPackageVersion(new URL('../package.json', import.meta.url))
  }
  return cached
}

/** What `--version` prints: `imageswarm 0.1.0`, whatever the command's name. */
export function versionLine(): string {
  return `imageswarm ${version()}`
}

function readPackageVersion(file: URL): string {
  const { version } = JSON.parse(readFileSync(file, 'utf8')) as { version?: unknown }
  if (typeof version !== 'string') throw new Error(`no version in ${file.pathname}`)
  return version
}
