// The archive format: GNU tar (pax, numeric owners, xattrs, ACLs, sparse) + zstd/gzip.

export {
  checkAgainstIndex,
  clearTypeChanges,
  commitStaged,
  type MemberSource,
  restoreDirectories,
  STAGED_PREFIX,
  stagedPath,
  stageMembers,
} from './apply-members.js'
export { DEFAULT_LEVELS, detectCompression } from './compression.js'
export { DEFAULT_EXCLUDES, parseExcludeFile } from './excludes.js'
export { extractArchive } from './extract.js'
export { TAR_EXTRACT_ARGS } from './extract-run.js'
export {
  FileIndexBuilder,
  type FileIndexEntry,
  indexArchive,
  indexArchiveMembers,
  type MemberRange,
} from './file-index.js'
export { listArchive } from './list.js'
export { packArchive, TAR_CREATE_ARGS } from './pack.js'
export { TAR_RECORD_ARGS } from './records.js'
export {
  detectFormat,
  packSquashfs,
  SQUASHFS_BLOCK_SIZE,
  SQUASHFS_DEFAULT_LEVEL,
  SquashfsAdmission,
  type SquashfsLosses,
  sqfs2tarArgs,
  tar2sqfsArgs,
} from './squashfs.js'
export { HoleFinder, restoreHoles, type SparseMember } from './squashfs-holes.js'
export { copyTarMembers, writeReferenceContents } from './tar-members.js'
export { IGNORED_TARGET_ENTRIES, INCOMPLETE_MARKER } from './target-snapshot.js'
export { checkArchiveTools, TOOL_ENV_VARS, TOOL_PACKAGES } from './tools.js'
export * from './types.js'
export { validateArchive } from './validate.js'
export { compressWithReference, decompressWithReference } from './zstd-patch.js'
