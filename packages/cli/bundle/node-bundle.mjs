// One way to bundle a Node program into a single ES module file with every dependency,
// shared by the installer ramdisk's bundles (build-client-bundle.mjs) and the server
// package (scripts/package/build.mjs).
import { readFileSync } from 'node:fs'
import { build } from 'esbuild'

/** imageswarm's version: the cli package's, the one source `--version` prints. */
export const VERSION = JSON.parse(
  readFileSync(new URL('../package.json', import.meta.url), 'utf8'),
).version

/** This package's directory: entries and aliases resolve from here. */
const PACKAGE_DIR = new URL('..', import.meta.url).pathname

// Optional native addons that dependencies load inside try/catch and work without: ws's
// speed-ups (bittorrent-tracker's websocket client), uTP and WebRTC (imageswarm speaks
// TCP only). Left out of the bundle; where they are missing, the code falls back.
const OPTIONAL_NATIVE = ['utp-native', 'bufferutil', 'utf-8-validate', 'node-datachannel']

/**
 * Bundles one program into `outfile`: `entry` (a file, relative to packages/cli) or
 * `contents` (module source resolved from packages/cli). Returns a line for the log.
 * @param {{ entry?: string, contents?: string, outfile: string }} options
 */
export async function bundleNodeProgram({ entry, contents, outfile }) {
  const result = await build({
    absWorkingDir: PACKAGE_DIR,
    ...(entry === undefined
      ? { stdin: { contents, resolveDir: PACKAGE_DIR, sourcefile: 'entry.mjs' } }
      : { entryPoints: [entry] }),
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    external: OPTIONAL_NATIVE,
    alias: { 'cross-fetch-ponyfill': './bundle/fetch.js' },
    // src/version.ts: a bundle has no package.json beside it to read the version from.
    define: { __IMAGESWARM_VERSION__: JSON.stringify(VERSION) },
    // CommonJS dependencies call require(); give the ES module bundle one.
    banner: {
      js: [
        "import { createRequire as __imageswarmCreateRequire } from 'node:module';",
        'const require = __imageswarmCreateRequire(import.meta.url);',
      ].join('\n'),
    },
    legalComments: 'linked',
    metafile: true,
    logLevel: 'warning',
  })
  const bytes = Object.values(result.metafile.outputs).reduce(
    (sum, output) => sum + output.bytes,
    0,
  )
  return `${outfile} (${(bytes / 1024).toFixed(0)} KiB)`
}
