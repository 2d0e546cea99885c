// A seeded generator for every random choice in a run (picker, first-copy, handout,
// start order), so a run with the same settings and seed is the same run: core's
// seededRandom (mulberry32), which the policy's unit tests use too.
export { seededRandom as mulberry32 } from '../../../packages/core/dist/index.js'
