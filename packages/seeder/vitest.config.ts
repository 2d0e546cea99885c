import { defineProject } from 'vitest/config'

export default defineProject({
  test: {
    name: 'seeder',
    include: ['test/**/*.test.ts'],
  },
})
