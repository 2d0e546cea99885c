/**
 * Every failure imageswarm reports is an `ImageSwarmError`: a stable `code`, the
 * `operation` that failed, the `path` (file, URL or parameter) it concerns, and a `hint`
 * telling the administrator what to do. The CLI maps codes to exit codes.
 *
 * @example
 *   throw new ImageSwarmError('E_IMAGE_NOT_FOUND', `image root ${root} does not exist`, {
 *     operation: 'publish', path: root, hint: 'check --images-dir and the image name',
 *   })
 */
export const ERROR_CODES = {
  E_USAGE: 'bad parameters',
  E_CONFIG_INVALID: 'bad parameters',
  E_IMAGE_NAME_INVALID: 'bad parameters',
  E_IMAGE_NOT_FOUND: 'image missing',
  E_UNKNOWN_IMAGE: 'image missing',
  E_IMAGE_PUBLISHING: 'image missing',
  E_SERVER_UNREACHABLE: 'server unreachable',
  E_SERVER_RESPONSE: 'server unreachable',
  E_SERVER_RUNNING: 'server state',
  E_SERVER_NOT_RUNNING: 'server state',
  E_MANIFEST_INVALID: 'verification failed',
  E_TORRENT_MISMATCH: 'verification failed',
  E_ARCHIVE_DIGEST_MISMATCH: 'verification failed',
  E_ARCHIVE_UNSAFE: 'verification failed',
  E_SERVER_ARCHIVE_CHANGED: 'verification failed',
  E_STAGING_NOT_WRITABLE: 'staging',
  E_NO_SPACE: 'no space',
  E_TARGET_NOT_EMPTY: 'target',
  E_TARGET_NOT_WRITABLE: 'target',
  E_TOOL_MISSING: 'tool missing',
  E_PACK_FAILED: 'archive',
  // The image holds what its format cannot (POSIX ACLs in SquashFS): refused, not dropped.
  E_FORMAT_UNSUPPORTED: 'archive',
  // A file at a path publishing would write that imageswarm did not write (a SystemImager
  // tarball or .torrent): never overwritten.
  E_FOREIGN_FILE: 'archive',
  E_EXTRACT_FAILED: 'extraction failed',
  E_DOWNLOAD_FAILED: 'download failed',
  E_DOWNLOAD_STALLED: 'download failed',
  E_LAYOUT_INVALID: 'bad parameters',
  E_DISK_MISSING: 'disk',
  E_DISK_TOO_SMALL: 'disk',
  E_PARTITION_FAILED: 'disk',
  E_IMAGE_NOT_BOOTABLE: 'bootloader',
  E_BOOTLOADER_FAILED: 'bootloader',
  E_POST_INSTALL_FAILED: 'post-install',
  // Trust (issue 17): one exit code per kind of refusal, so an installer script can tell an
  // unsigned image from a forged, revoked, expired or rolled-back one.
  E_SIGNATURE_MISSING: 'signature missing',
  E_SIGNATURE_INVALID: 'signature invalid',
  E_KEY_UNKNOWN: 'signature invalid',
  E_MANIFEST_WRONG_IMAGE: 'signature invalid',
  // HTTPS (docs/trust.md, "HTTPS"): a server certificate the verified key list does not pin,
  // or, without a pin, one no CA the node trusts vouches for. The node refuses to talk to it
  // as it refuses a forged signature.
  E_TLS_PIN_MISMATCH: 'signature invalid',
  E_TLS_UNTRUSTED: 'signature invalid',
  E_KEY_REVOKED: 'key revoked',
  E_MANIFEST_EXPIRED: 'expired',
  E_KEYLIST_EXPIRED: 'expired',
  E_KEY_EXPIRED: 'expired',
  E_ROLLBACK: 'rollback',
  E_KEYLIST_INVALID: 'key list',
  E_KEYLIST_UNTRUSTED: 'key list',
  E_DECRYPT_FAILED: 'decryption failed',
  E_ARCHIVE_KEY_UNAVAILABLE: 'decryption failed',
  E_KEYS_EXIST: 'key files',
  E_KEY_FILE_INVALID: 'key files',
  // Updates (issue 16): a root that records no installed version, an update that did not
  // leave the root equal to the version, an image that cannot be updated by delta.
  E_NOT_INSTALLED: 'target',
  E_UPDATE_INCOMPLETE: 'extraction failed',
  E_UPDATE_UNSUPPORTED: 'bad parameters',
  E_INTERRUPTED: 'interrupted',
} as const

export type ErrorCode = keyof typeof ERROR_CODES

/** Exit codes, one per kind of failure, so installer scripts can branch on them. */
export const EXIT_CODES: Record<(typeof ERROR_CODES)[ErrorCode] | 'internal', number> = {
  'bad parameters': 2,
  'image missing': 3,
  'server unreachable': 4,
  'verification failed': 5,
  'no space': 6,
  'extraction failed': 7,
  'download failed': 8,
  staging: 9,
  target: 10,
  'tool missing': 11,
  archive: 12,
  'server state': 13,
  disk: 14,
  bootloader: 15,
  'post-install': 16,
  'signature missing': 17,
  'signature invalid': 18,
  'key revoked': 19,
  expired: 20,
  rollback: 21,
  'key list': 22,
  'decryption failed': 23,
  'key files': 24,
  interrupted: 130,
  internal: 70,
}

export interface ErrorDetails {
  operation?: string
  path?: string
  hint?: string
  cause?: unknown
}

/** An error as it travels in events, logs and HTTP answers. */
export interface ErrorReport {
  code: ErrorCode
  message: string
  operation: string | undefined
  path: string | undefined
  hint: string | undefined
}

export class ImageSwarmError extends Error {
  readonly code: ErrorCode
  readonly operation: string | undefined
  readonly path: string | undefined
  readonly hint: string | undefined

  constructor(code: ErrorCode, message: string, details: ErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause })
    this.name = 'ImageSwarmError'
    this.code = code
    this.operation = details.operation
    this.path = details.path
    this.hint = details.hint
  }

  get exitCode(): number {
    return EXIT_CODES[ERROR_CODES[this.code]]
  }

  /** A plain object for JSON logs, events and status reports. */
  toJSON(): ErrorReport {
    return {
      code: this.code,
      message: this.message,
      operation: this.operation,
      path: this.path,
      hint: this.hint,
    }
  }
}

export function isImageSwarmError(err: unknown): err is ImageSwarmError {
  return err instanceof ImageSwarmError
}

/** The exit code for any thrown value: a known error's own, or "internal". */
export function exitCodeFor(err: unknown): number {
  return isImageSwarmError(err) ? err.exitCode : EXIT_CODES.internal
}

/** The errno code of a Node system error (`ENOENT`, `EACCES`, ...), if there is one. */
export function errnoOf(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err) {
    const code = (err as { code: unknown }).code
    return typeof code === 'string' ? code : undefined
  }
  return undefined
}
