import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium, type Page } from 'playwright-core'

/** Debian's Chromium, driven by playwright-core (no browser download). */
export const CHROMIUM = '/usr/bin/chromium'
export const hasChromium = existsSync(CHROMIUM)
/** Screenshots and what the dashboard tests saw, for a person to look at after a run. */
export const ARTIFACTS = join(fileURLToPath(new URL('../..', import.meta.url)), 'artifacts')

if (!hasChromium) {
  console.warn(
    `dashboard tests skipped: ${CHROMIUM} not found (Debian: apt-get install chromium; .ci/run installs it)`,
  )
}

/** Chromium with a fresh profile of its own (in the test's temporary directory). */
export async function launchBrowser(
  profileDir: string,
  viewport: { width: number; height: number } = { width: 1440, height: 1100 },
) {
  const context = await chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    viewport,
    acceptDownloads: true,
    // Headless, with nothing that talks to the internet.
    args: [
      '--no-sandbox',
      '--headless',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  })
  return { context, page: context.pages()[0] ?? (await context.newPage()) }
}

/**
 * Polls the page until `check` (an expression run in the page, as a string: the e2e tests
 * are type-checked without the DOM library) is true, with a generous deadline.
 */
export async function waitUntil(page: Page, check: string, what: string, timeoutMs = 90_000) {
  const deadline = Date.now() + timeoutMs
  while (!(await page.evaluate(check))) {
    if (Date.now() > deadline) throw new Error(`the page never showed ${what}`)
    await page.waitForTimeout(200)
  }
}
