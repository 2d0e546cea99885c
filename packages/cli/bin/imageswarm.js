#!/usr/bin/env node
import { main } from '../dist/main.js'

process.exitCode = await main(process.argv.slice(2))
// Everything is closed by now; a stray handle must not keep an installer waiting.
setTimeout(() => process.exit(), 2000).unref()
