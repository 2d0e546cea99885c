import { defineConfig } from 'vitest/config'

// Cross-package end-to-end tests: real server and client processes on loopback.
// Each package's own tests run from the package (turbo run test).
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'e2e',
          include: ['test/**/*.test.ts'],
          testTimeout: 180_000,
          hookTimeout: 120_000,
          // Swarms share two cores; running e2e files one at a time keeps timings sane.
          fileParallelism: false,
          // After-hooks run in reverse order, so a file's own cleanup (mounts, proxies)
          // runs before the shared server fixture's (test/helpers/server-fixture.ts).
          sequence: { hooks: 'stack' },
        },
      },
    ],
  },
})
