// Test fixtures for the image formats core defines, for this package's tests and the
// repository's end-to-end tests (`@imageswarm/core/testing`); not part of the runtime API.
export {
  type CompareOptions,
  compareTrees,
  INSTALL_RECORD_SKIP,
  type NodeType,
  type SnapshotOptions,
  snapshotTree,
  type TreeNode,
} from './compare-trees.js'
export { buildFidelityTree, FIDELITY_COMMANDS, NON_UTF8_NAME, SPARSE_SIZE } from './fixture-tree.js'
export { type KeyDirectoryFixture, writeKeyDirectoryFixture } from './key-directory-fixture.js'
export {
  hasCommand,
  isRoot,
  missingRequirements,
  run,
  TEST_COMMAND_PACKAGES,
} from './system-tools.js'
export { type TlsCertificateFixture, writeSelfSignedCertificate } from './tls-certificate.js'
