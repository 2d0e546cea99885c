/**
 * Bytes per second from `50M`, `500K`, `1.5G`, `100MB/s` or a plain number (binary
 * multiples: an administrator's "100M" uplink cap is 100 MiB/s). `0` and `-1` mean
 * unlimited and give -1. Returns undefined for anything else.
 *
 * @example parseByteRate('10M') // 10485760
 */
export function parseByteRate(text: string): number | undefined {
  const value = text.trim()
  if (value === '0' || value === '-1') return -1
  const match = /^(\d+(?:\.\d+)?)\s*([KMG]?)(?:i?B)?(?:\/s)?$/i.exec(value)
  if (!match) return undefined
  const unit = (match[2] ?? '').toUpperCase() as '' | 'K' | 'M' | 'G'
  const scale = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[unit]
  return Math.round(Number(match[1]) * scale)
}
