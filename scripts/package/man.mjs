// Writes imageswarm's manual pages (section 1) into a directory, from the same commander
// program as `--help` (packages/cli/src/man-page.ts): node scripts/package/man.mjs OUTDIR.
// The header's date comes from SOURCE_DATE_EPOCH when it is set, never from the clock.
// Needs the built cli package (pnpm build).
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { buildProgram } from '../../packages/cli/dist/main.js'
import { renderManPages } from '../../packages/cli/dist/man-page.js'
import { version } from '../../packages/cli/dist/version.js'

const [outDir] = process.argv.slice(2)
if (outDir === undefined) {
  process.stderr.write('usage: node scripts/package/man.mjs OUTDIR\n')
  process.exit(2)
}
const epoch = process.env.SOURCE_DATE_EPOCH
const date =
  epoch === undefined || epoch === ''
    ? undefined
    : new Date(Number(epoch) * 1000).toISOString().slice(0, 10)
const pages = renderManPages(buildProgram(), { version: version(), ...(date ? { date } : {}) })
await mkdir(outDir, { recursive: true })
for (const [name, text] of pages) await writeFile(join(outDir, name), text)
process.stdout.write(`${pages.size} manual pages in ${outDir}\n`)
