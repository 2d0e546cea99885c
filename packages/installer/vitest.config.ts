import { defineProject } from 'vitest/config'

export default defineProject({
  test: {
    name: 'installer',
    include: ['test/**/*.test.ts'],
    // Building a ramdisk packs and compresses about 140 MB (node alone is 99 MB).
    testTimeout: 300_000,
    hookTimeout: 300_000,
  },
})
