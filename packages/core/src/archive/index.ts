// The archive format: GNU tar (pax, numeric owners, xattrs, ACLs, sparse) + zstd/gzip.
export * from './types.js'
