#!/usr/bin/env node
import { installMain } from '../dist/install-main.js'

process.exitCode = await installMain(process.argv.slice(2))
// Everything is closed by now; a stray handle must not keep an installer waiting.
setTimeout(() => process.exit(), 2000).unref()
