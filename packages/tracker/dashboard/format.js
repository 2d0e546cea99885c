// How numbers read on the page: binary units as the CLI prints them, short durations.

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB']

export function formatBytes(bytes) {
  if (bytes === null || bytes === undefined || !Number.isFinite(bytes)) return '–'
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024
    unit += 1
  }
  return `${value.toFixed(value >= 100 || unit === 0 ? 0 : 1)} ${UNITS[unit]}`
}

export function formatRate(bytesPerSecond) {
  if (!bytesPerSecond) return '–'
  return `${formatBytes(bytesPerSecond)}/s`
}

export function formatPercent(ratio) {
  if (ratio === null || ratio === undefined || !Number.isFinite(ratio)) return '–'
  return `${(ratio * 100).toFixed(ratio >= 0.995 || ratio === 0 ? 0 : 1)}%`
}

export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '–'
  const s = Math.max(0, Math.round(seconds))
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`
  return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`
}

export function formatAgo(epochMs, now = Date.now()) {
  const seconds = (now - epochMs) / 1000
  return seconds < 2 ? 'now' : `${formatDuration(seconds)} ago`
}

export function shortHash(hex) {
  return hex ? `${hex.slice(0, 8)}…${hex.slice(-4)}` : ''
}
