// Bundles the install client and the node installer into one file each that runs with
// nothing but a `node` binary, for installer ramdisks: dist/imageswarm-install.mjs and
// dist/imageswarm-installer.mjs (see docs/installer-ramdisk.md).
import { build } from 'esbuild'

// Optional native addons that dependencies load inside try/catch and work without: ws's
// speed-ups (bittorrent-tracker's websocket client), uTP and WebRTC (imageswarm speaks
// TCP only). Left out of the bundle; where they are missing, the code falls back.
const OPTIONAL_NATIVE = ['utp-native', 'bufferutil', 'utf-8-validate', 'node-datachannel']

/**
 * Bundles one program: `entry` (a bin/ script) into `outfile`, with every dependency.
 * @param {string} entry
 * @param {string} outfile
 */
async function bundle(entry, outfile) {
  const result = await build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    external: OPTIONAL_NATIVE,
    alias: { 'cross-fetch-ponyfill': './bundle/fetch.js' },
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

// The install-only client (a target root mounted at /a by someone else), and the whole
// installer a bare node runs after /init (packages/installer/src/node: disks, the client,
// bootloader, post-install).
const client = await bundle('bin/imageswarm-install.js', 'dist/imageswarm-install.mjs')
const installer = await bundle('bin/imageswarm-installer.js', 'dist/imageswarm-installer.mjs')
process.stdout.write(`client bundle: ${client}\ninstaller bundle: ${installer}\n`)
