#!/usr/bin/env -S node --initial-old-space-size=64
// The option: see docs/installer-ramdisk.md, "Node options".
import { installMain } from '../dist/install-main.js'

process.exitCode = await installMain(process.argv.slice(2))
// Everything is closed by now; a stray handle must not keep an installer waiting.
setTimeout(() => process.exit(), 2000).unref()
