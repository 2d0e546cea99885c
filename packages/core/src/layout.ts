/** SystemImager's directory layout, the server's defaults. */
export const SYSTEMIMAGER_DIRS = {
  images: '/var/lib/systemimager/images',
  tarballs: '/var/lib/systemimager/tarballs',
  torrents: '/var/lib/systemimager/torrents',
} as const

/** File extension of an archive for each compression. */
export const ARCHIVE_EXTENSIONS = {
  zstd: '.tar.zst',
  gzip: '.tar.gz',
  none: '.tar',
} as const

/** File extension of a SquashFS image (its blocks are zstd whatever `compression` says). */
export const SQUASHFS_EXTENSION = '.sqfs'

/**
 * SystemImager names tarballs `image-NAME.tar.gz`; imageswarm keeps the pattern, and names
 * a SquashFS image `image-NAME.sqfs`.
 */
export function archiveFileName(
  image: string,
  compression: keyof typeof ARCHIVE_EXTENSIONS,
  format: 'tar' | 'squashfs' = 'tar',
): string {
  return `image-${image}${format === 'squashfs' ? SQUASHFS_EXTENSION : ARCHIVE_EXTENSIONS[compression]}`
}

export function torrentFileName(archiveFile: string): string {
  return `${archiveFile}.torrent`
}

export function manifestFileName(image: string): string {
  return `image-${image}.manifest.json`
}

/** The manifest's minisign signature beside it (`serve --keys DIR`, `publish --keys DIR`). */
export function manifestSignatureFileName(image: string): string {
  return `${manifestFileName(image)}.minisig`
}
