// Bundles the install client and the node installer into one file each that runs with
// nothing but a `node` binary, for installer ramdisks: dist/imageswarm-install.mjs and
// dist/imageswarm-installer.mjs (see docs/installer-ramdisk.md).
import { bundleNodeProgram } from './bundle/node-bundle.mjs'

// The install-only client (a target root mounted at /a by someone else), and the whole
// installer a bare node runs after /init (packages/installer/src/node: disks, the client,
// bootloader, post-install).
const client = await bundleNodeProgram({
  entry: 'bin/imageswarm-install.js',
  outfile: 'dist/imageswarm-install.mjs',
})
const installer = await bundleNodeProgram({
  entry: 'bin/imageswarm-installer.js',
  outfile: 'dist/imageswarm-installer.mjs',
})
process.stdout.write(`client bundle: ${client}\ninstaller bundle: ${installer}\n`)
