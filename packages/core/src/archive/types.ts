import type { Logger } from 'pino'
import type { Compression } from '../manifest.js'

export interface PackOptions {
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
  logger?: Logger
  signal?: AbortSignal
}

export interface PackResult {
  output: string
  /** Size of the compressed archive in bytes. */
  size: number
  /** SHA-256 of the compressed archive, hex. */
  sha256: string
}

export interface ExtractOptions {
  archive: string
  /** The target root; must exist. */
  target: string
  /** Default: detected from the archive's magic bytes. */
  compression?: Compression
  logger?: Logger
  signal?: AbortSignal
  /** Called with the number of compressed bytes consumed so far. */
  onProgress?: (bytes: number, size: number) => void
}

export interface ExtractResult {
  entries: number
}
