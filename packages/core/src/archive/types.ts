import type { Transform } from 'node:stream'
import type { Logger } from 'pino'
import type { Compression, ImageFormat } from '../manifest.js'
import type { TarObserver } from './scan.js'

export interface PackOptions extends ToolOptions {
  /** The image root: a chroot-able tree. */
  root: string
  /** The archive file to write; written to a temporary name beside it, then renamed. */
  output: string
  compression: Compression
  /** zstd level (1–19) or gzip level (1–9); default zstd 3, gzip 6. */
  level?: number
  /** Extra exclude patterns, GNU tar `--exclude` syntax, relative to the root (`./proc/*`). */
  excludes?: readonly string[]
  /** A SystemImager-style exclude file (one pattern a line, `#` comments). */
  excludeFile?: string
  /**
   * Default true: leave out the contents of ./proc, ./sys, ./dev/pts and ./run (see
   * DEFAULT_EXCLUDES); the directories themselves are kept.
   */
  defaultExcludes?: boolean
  /**
   * Also hash the archive into BitTorrent pieces of this length, in the same read as its
   * SHA-256 (see PackResult.pieces): a torrent then needs no pass over the archive.
   */
  pieceLength?: number
  logger?: Logger
  signal?: AbortSignal
}

export interface PackResult {
  output: string
  /** Size of the compressed archive in bytes. */
  size: number
  /** SHA-256 of the compressed archive, hex. */
  sha256: string
  /** The archive's piece hashes (SHA-1, 20 bytes a piece) when `pieceLength` was given. */
  pieces: Buffer | undefined
  /**
   * False when tar could not run in its own PID namespace: sparse members then carry
   * tar's PID in their names, and packing the same tree twice may give different bytes.
   */
  deterministic: boolean
}

export interface ExtractOptions extends DecryptOption {
  archive: string
  /**
   * Default: `tar` when `compression` is given, else detected from the file's magic bytes
   * (SquashFS `hsqs`, else a tar archive).
   */
  format?: ImageFormat
  /** The target root; must exist. */
  target: string
  /** Default: detected from the archive's magic bytes. */
  compression?: Compression
  logger?: Logger
  signal?: AbortSignal
  /** Called with the number of compressed bytes consumed so far. */
  onProgress?: (bytes: number, size: number) => void
  /**
   * The caller has run `validateArchive` on this very file, which has not changed since,
   * so extraction runs no validation of its own. Leave it out for the cheapest safe path:
   * into an empty target, `extractArchive` validates while it extracts, at almost no cost.
   */
  alreadyValidated?: { entries: number }
  /**
   * Names at the top of the target that do not make it non-empty (see `extractArchive`);
   * default `IGNORED_TARGET_ENTRIES` (the client's `.imageswarm-incomplete`, `lost+found`).
   */
  ignoreEntries?: readonly string[]
}

export interface ExtractResult {
  /** Members in the archive, counted by the validation. */
  entries: number
  /**
   * How the archive was validated: `while-extracting` (empty target: one gated pass),
   * `before-extracting` (a separate `validateArchive` pass first) or `by-caller`
   * (`alreadyValidated`).
   */
  validation: 'while-extracting' | 'before-extracting' | 'by-caller'
}

/** The external programs the archive format runs. */
export interface ArchiveTools {
  tar: string
  zstd: string
  gzip: string
  unshare: string
  /** SquashFS images (squashfs-tools-ng): packs the tar stream into a SquashFS file. */
  tar2sqfs: string
  /** SquashFS images: the image's tar stream, for validation and extraction. */
  sqfs2tar: string
  /** SquashFS images: makes the image's sparse files sparse again after extraction. */
  fallocate: string
}

export type ArchiveToolName = keyof ArchiveTools

/**
 * Where to find the external tools. Each tool is `tools[name]`, else the environment
 * variable `IMAGESWARM_TAR` / `IMAGESWARM_ZSTD` / `IMAGESWARM_GZIP` / `IMAGESWARM_UNSHARE`,
 * else its name looked up in PATH; a value containing `/` is a path.
 */
export interface ToolOptions {
  tools?: Partial<ArchiveTools>
  /** Default: `process.env`. Only read for the tool variables and PATH. */
  env?: NodeJS.ProcessEnv
}

/** One member of an archive, as `listArchive` yields it. */
export interface ArchiveEntry {
  /** The member's name as stored (`./etc/passwd`); sparse members under their real name. */
  path: string
  type: ArchiveEntryType
  size: number
  mode: number
  uid: number
  gid: number
  mtime: Date
  /** Symlink target or hardlink target; undefined for other types. */
  linkname: string | undefined
}

export type ArchiveEntryType =
  | 'file'
  | 'link'
  | 'symlink'
  | 'character-device'
  | 'block-device'
  | 'directory'
  | 'fifo'
  | 'contiguous-file'

export interface ValidateOptions extends DecryptOption {
  logger?: Logger
  signal?: AbortSignal
  /** Told of every member that passed and of its data, as the scan reads them (`indexArchive`). */
  observer?: TarObserver
}

/** Reading an encrypted archive (docs/trust.md, "Encrypted archives"). */
export interface DecryptOption extends ToolOptions {
  /**
   * The file is a SquashFS image: its tar stream is `sqfs2tar`'s output (see squashfs.ts),
   * and `decrypt` is not supported (SquashFS needs random access to the plaintext).
   */
  squashfs?: boolean
  /**
   * The archive file is encrypted: a new decrypting stream (`createDecryptStream`) for
   * every read of it, between the file and the decompressor. A chunk that fails its tag
   * ends the read with that stream's error (`E_DECRYPT_FAILED`), which is what the caller
   * gets, not a decompressor's complaint about the cut stream after it.
   */
  decrypt?: () => Transform
}

export interface ValidateResult {
  /** Members in the archive (pax and GNU long-name headers not counted). */
  entries: number
}
