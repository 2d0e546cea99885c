const UNIT_SECONDS: Readonly<Record<string, number>> = { s: 1, m: 60, h: 3600, d: 86400 }

/**
 * Seconds from `600`, `90s`, `10m`, `1h30m`, `2d` or `0.5` (a plain number is seconds,
 * as every duration setting was before units). Returns undefined for anything else,
 * negative values included.
 *
 * @example parseDuration('1h30m') // 5400
 */
export function parseDuration(text: string): number | undefined {
  const value = text.trim().toLowerCase()
  if (/^\d+(?:\.\d+)?$/.test(value)) return Number(value)
  if (!/^(?:\d+(?:\.\d+)?[smhd])+$/.test(value)) return undefined
  let seconds = 0
  for (const [, amount, unit] of value.matchAll(/(\d+(?:\.\d+)?)([smhd])/g)) {
    seconds += Number(amount) * UNIT_SECONDS[unit!]!
  }
  return seconds
}

/** `90` → `1m30s`, `600` → `10m`, `0` → `0s`: a duration as a person writes it. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return String(seconds)
  let rest = Math.round(seconds)
  const parts: string[] = []
  for (const [unit, size] of [
    ['d', 86400],
    ['h', 3600],
    ['m', 60],
  ] as const) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`)
      rest %= size
    }
  }
  if (rest > 0 || parts.length === 0) parts.push(`${rest}s`)
  return parts.join('')
}
