#!/usr/bin/env -S node --initial-old-space-size=64
// What /init runs on a bare node (packages/installer/src/node): the option as for
// imageswarm-install, see docs/installer-ramdisk.md, "Node options".
import { installerMain } from '@imageswarm/installer/node'
import { versionLine } from '../dist/version.js'

// It takes its settings from the kernel command line and the environment, never from
// arguments; --version and --help answer without touching the node's disks.
const [arg] = process.argv.slice(2)
if (arg === '--version' || arg === '-V') {
  process.stdout.write(`${versionLine()}\n`)
} else if (arg === '--help' || arg === '-h') {
  process.stdout.write(
    'Usage: imageswarm-installer\n\nInstall this bare node: disks, the image over the swarm, bootloader, overrides and\npost-install scripts, as the kernel command line (imageswarm.server=URL imageswarm.image=NAME)\nsays. /init runs it in the installer ramdisk; see docs/installer-ramdisk.md.\n',
  )
} else if (arg !== undefined) {
  process.stderr.write(
    `imageswarm-installer: error: it takes no arguments, not ${JSON.stringify(arg)}\n  hint: its settings come from the kernel command line (docs/installer-ramdisk.md)\n`,
  )
  process.exitCode = 2
} else {
  process.exitCode = await installerMain()
  // Everything is closed by now; a stray handle must not keep the node waiting.
  setTimeout(() => process.exit(), 2000).unref()
}
