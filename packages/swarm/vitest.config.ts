import { defineProject } from 'vitest/config'

export default defineProject({
  test: {
    name: 'swarm',
    include: ['test/**/*.test.ts'],
  },
})
