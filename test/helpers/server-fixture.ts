import { afterEach } from 'vitest'
import type { startServer } from '../../scripts/lib/deployment.mjs'
import type { ServerLayout } from './workspace.js'

export type Server = Awaited<ReturnType<typeof startServer>>

/**
 * The server layout and image server a test makes, stopped and removed after each test.
 * Register it at the top of a test file; a file's own afterEach hooks run before this
 * one (vitest runs after-hooks in reverse order), so mounts and proxies go first.
 */
export function useServerFixture() {
  const fixture: { layout: ServerLayout | undefined; server: Server | undefined } = {
    layout: undefined,
    server: undefined,
  }
  afterEach(async () => {
    await fixture.server?.stop()
    fixture.server = undefined
    await fixture.layout?.remove()
    fixture.layout = undefined
  })
  return fixture
}
