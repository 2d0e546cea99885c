#!/usr/bin/env node
import { runSystemImagerCommand } from '../dist/entry.js'

process.exitCode = await runSystemImagerCommand('si_updateclient', process.argv.slice(2))
// Everything is closed by now; a stray handle must not keep an installer waiting.
setTimeout(() => process.exit(), 2000).unref()
