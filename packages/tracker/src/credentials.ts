import { createHash, timingSafeEqual } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { isIP } from 'node:net'

/**
 * Whether two secrets are equal, in time that depends on neither: both are hashed to 32
 * bytes first, so `timingSafeEqual` compares equal lengths and not even the length of
 * the expected secret leaks.
 */
export function sameSecret(given: string, expected: string): boolean {
  const digest = (text: string) => createHash('sha256').update(text, 'utf8').digest()
  return timingSafeEqual(digest(given), digest(expected))
}

/** The token of an `Authorization: Bearer <token>` header; undefined without one. */
export function bearerToken(req: IncomingMessage): string | undefined {
  const header = req.headers.authorization
  if (header === undefined) return undefined
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header)
  return match?.[1]
}

/** A cookie's value from the request's Cookie header; undefined when it is not there. */
export function cookieValue(req: IncomingMessage, name: string): string | undefined {
  const header = req.headers.cookie
  if (header === undefined) return undefined
  for (const part of header.split(';')) {
    const at = part.indexOf('=')
    if (at > 0 && part.slice(0, at).trim() === name) return part.slice(at + 1).trim()
  }
  return undefined
}

/**
 * The address a request came from, as the tracker records an announce's: the first
 * `X-Forwarded-For` entry with `trustProxy`, else the socket's peer, with IPv4-mapped
 * IPv6 written as plain IPv4. A status post and an announce from one host so give the
 * same string, which is what ties a node's reports to its announces.
 */
export function clientAddress(req: IncomingMessage, trustProxy: boolean): string {
  const forwarded = trustProxy ? req.headers['x-forwarded-for'] : undefined
  const raw =
    typeof forwarded === 'string' && forwarded.length > 0
      ? (forwarded.split(',')[0] ?? '').trim()
      : (req.socket.remoteAddress ?? '')
  return raw.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, '')
}

/**
 * The key an address's budget of new nodes is kept under: an IPv4 address itself, an
 * IPv6 address by its /64 (one host is given a whole /64 and picks addresses in it
 * freely, so counting single IPv6 addresses would budget nothing).
 */
export function addressBudgetKey(address: string): string {
  if (isIP(address) !== 6) return address
  const [head = '', tail] = address.split('::')
  const left = head === '' ? [] : head.split(':')
  const right = tail === undefined || tail === '' ? [] : tail.split(':')
  const groups =
    tail === undefined
      ? left
      : [...left, ...Array(8 - left.length - right.length).fill('0'), ...right]
  return `${groups
    .slice(0, 4)
    .map((group) => group.toLowerCase().replace(/^0+(?=.)/, ''))
    .join(':')}::/64`
}
