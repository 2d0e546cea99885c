import { defineProject } from 'vitest/config'

export default defineProject({
  test: {
    name: 'cli',
    include: ['test/**/*.test.ts'],
    // Bounds, not expectations: CI runs on two loaded cores, where vitest's 5 s default
    // failed tests that take 0.5 s on an idle machine.
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
})
