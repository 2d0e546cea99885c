// Bundles the install client into one file that runs with nothing but a `node` binary,
// for installer ramdisks: dist/imageswarm-install.mjs (see docs/installer-ramdisk.md).
import { build } from 'esbuild'

// Optional native addons that webtorrent and ws load inside try/catch and work without:
// uTP (imageswarm speaks TCP only), ws's speed-ups, fs-native-extensions' fallbacks.
const OPTIONAL_NATIVE = ['utp-native', 'bufferutil', 'utf-8-validate', 'node-datachannel']

// webtorrent's utp.cjs requires utp-native and prints a warning with a stack trace when it
// is missing; imageswarm never uses uTP, so the bundle gets what utp.cjs returns then.
const noUtp = {
  name: 'no-utp',
  setup(builder) {
    builder.onResolve({ filter: /\/utp\.cjs$/ }, (args) => ({
      path: args.path,
      namespace: 'no-utp',
    }))
    builder.onLoad({ filter: /.*/, namespace: 'no-utp' }, () => ({
      contents: 'module.exports = {}',
      loader: 'js',
    }))
  },
}

const result = await build({
  plugins: [noUtp],
  entryPoints: ['bin/imageswarm-install.js'],
  outfile: 'dist/imageswarm-install.mjs',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external: OPTIONAL_NATIVE,
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
