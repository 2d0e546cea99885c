// Trust (issue 17, docs/trust.md): minisign signatures, the root-signed key list, signed
// manifests, encrypted archives and the keys that open them.
export * from './archive-key.js'
export * from './archive-stream.js'
export * from './group-key-delivery.js'
export * from './group-key-directory.js'
export * from './key-directory.js'
export * from './key-list.js'
export * from './minisign.js'
export * from './node-trust-state.js'
export * from './secret-key.js'
export * from './signed-manifest.js'
export * from './tls-pin.js'
