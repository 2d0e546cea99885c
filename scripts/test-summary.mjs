#!/usr/bin/env node
// Adds up the JSON reports of every vitest run (each package's and the end-to-end
// suite's) into one closing line, `N passed, N failed`, so CI and people see the whole.
import { existsSync } from 'node:fs'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
// Every package with a vitest config writes a report; a new package is counted without
// being listed here.
const packages = (await readdir(join(root, 'packages'))).filter((p) =>
  existsSync(join(root, 'packages', p, 'vitest.config.ts')),
)
const reports = [
  'test-results.json',
  ...packages.map((p) => join('packages', p, 'test-results.json')),
]
let passed = 0
let failed = 0
let skipped = 0
for (const report of reports) {
  let data
  try {
    data = JSON.parse(await readFile(join(root, report), 'utf8'))
  } catch {
    process.stdout.write(`test summary: no report at ${report}\n`)
    failed++
    continue
  }
  passed += data.numPassedTests
  failed += data.numFailedTests
  skipped += data.numPendingTests + (data.numTodoTests ?? 0)
}
process.stdout.write(`\ntests: ${passed} passed, ${failed} failed, ${skipped} skipped\n`)
process.exitCode = failed > 0 ? 1 : 0
