#!/usr/bin/env -S node --initial-old-space-size=64
// What /init runs on a bare node (packages/installer/src/node): the option as for
// imageswarm-install, see docs/installer-ramdisk.md, "Node options".
import { installerMain } from '@imageswarm/installer/node'

process.exitCode = await installerMain()
// Everything is closed by now; a stray handle must not keep the node waiting.
setTimeout(() => process.exit(), 2000).unref()
