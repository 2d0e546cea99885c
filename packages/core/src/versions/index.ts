// Image versions and deltas (issue 16, docs/updates.md).
export * from './documents.js'
export * from './index-diff.js'
export * from './root-compare.js'
export * from './update-excludes.js'
