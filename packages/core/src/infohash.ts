import { ImageSwarmError } from './errors.js'

declare const infoHashBrand: unique symbol

/** A BitTorrent v1 infohash: 40 lowercase hex digits. Made only by `parseInfoHash`. */
export type InfoHash = string & { readonly [infoHashBrand]: true }

const INFO_HASH = /^[0-9a-f]{40}$/

/**
 * @example parseInfoHash('D2474E86C95B19B8BCFDB92BC12C9D44667CFA36') // 'd2474e86…'
 */
export function parseInfoHash(value: string): InfoHash {
  const lower = value.toLowerCase()
  if (!INFO_HASH.test(lower)) {
    throw new ImageSwarmError('E_MANIFEST_INVALID', `not an infohash: ${JSON.stringify(value)}`, {
      hint: 'an infohash is 40 hexadecimal digits (the SHA-1 of the torrent info dictionary)',
    })
  }
  return lower as InfoHash
}

export function isInfoHash(value: string): value is InfoHash {
  return INFO_HASH.test(value)
}
