// Bundles the install client into one file that runs with nothing but a `node` binary,
// for installer ramdisks: dist/imageswarm-install.mjs (see docs/installer-ramdisk.md).
import { build } from 'esbuild'

// Optional native addons that dependencies load inside try/catch and work without: ws's
// speed-ups (bittorrent-tracker's websocket client), uTP and WebRTC (imageswarm speaks
// TCP only). Left out of the bundle; where they are missing, the code falls back.
const OPTIONAL_NATIVE = ['utp-native', 'bufferutil', 'utf-8-validate', 'node-datachannel']

const result = await build({
  entryPoints: ['bin/imageswarm-install.js'],
  outfile: 'dist/imageswarm-install.mjs',
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
const bytes = Object.values(result.metafile.outputs).reduce((sum, output) => sum + output.bytes, 0)
process.stdout.write(
  `client bundle: dist/imageswarm-install.mjs (${(bytes / 1024).toFixed(0)} KiB)\n`,
)
