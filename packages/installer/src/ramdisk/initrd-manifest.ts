import type { InitrdCompression } from './cpio-archive.js'
import type { KernelSource } from './kernel.js'

/** Which program /init runs: the whole installer, or the client alone (disk mounted by someone else). */
export type InstallerProgramKind = 'installer' | 'install-only'

export interface FileDigest {
  bytes: number
  sha256: string
}

/**
 * What went into a ramdisk, written beside it as `initrd.manifest.json`; its `contents`
 * part is also inside the ramdisk as /etc/imageswarm/ramdisk.json, for an operator on a
 * node's console. It names no path of the build host beyond the standard ones (/usr/bin/…),
 * so the same inputs give the same bytes wherever the build runs.
 */
export interface InitrdManifest {
  format: 1
  vmlinuz: FileDigest
  initrd: FileDigest & {
    compression: InitrdCompression
    level: number
    /** Entries in the cpio archive. */
    entries: number
  }
  contents: RamdiskContents
}

export interface RamdiskContents {
  kernel: { release: string; source: KernelSource }
  node: { path: string; version: string }
  /** The program /init runs: its file name on the build host and its path in the ramdisk. */
  program: FileDigest & { kind: InstallerProgramKind; name: string; path: string }
  /** Each program copied from the build host, with its Debian package's version. */
  programs: {
    name: string
    source: string
    path: string
    debianPackage: string
    version: string | null
  }[]
  /** Shared libraries and the dynamic loader, as paths in the ramdisk. */
  libraries: string[]
  modules: { count: number; bytes: number; unmatchedPatterns: string[] }
  busyboxApplets: number
  /** The root key the installer trusts (`imageswarm initrd --trust-root`), if one is baked in. */
  trust?: { rootKeyId: string; path: string; minKeyListVersion?: number }
  /** Bytes of all regular files: the memory the unpacked ramdisk takes on the node. */
  unpackedBytes: number
}
