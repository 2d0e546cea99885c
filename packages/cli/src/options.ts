import { COMPRESSIONS, type Compression, ImageSwarmError } from '@imageswarm/core'

/** Parses an integer flag, naming the flag when the value is wrong. */
export function integerFlag(flag: string, min: number, max: number) {
  return (value: string): number => {
    const number = Number(value)
    if (!Number.isInteger(number) || number < min || number > max) {
      throw new ImageSwarmError(
        'E_USAGE',
        `${flag} takes a whole number from ${min} to ${max}, not ${JSON.stringify(value)}`,
        {
          path: flag,
          hint: `for example ${flag} ${min === 0 ? max : min}`,
        },
      )
    }
    return number
  }
}

export function numberFlag(flag: string, min: number) {
  return (value: string): number => {
    const number = Number(value)
    if (!Number.isFinite(number) || number < min) {
      throw new ImageSwarmError(
        'E_USAGE',
        `${flag} takes a number ≥ ${min}, not ${JSON.stringify(value)}`,
        {
          path: flag,
        },
      )
    }
    return number
  }
}

export function compressionFlag(value: string): Compression {
  if ((COMPRESSIONS as readonly string[]).includes(value)) return value as Compression
  throw new ImageSwarmError(
    'E_USAGE',
    `--compression takes ${COMPRESSIONS.join(', ')}, not ${JSON.stringify(value)}`,
    {
      path: '--compression',
    },
  )
}

/** Accumulates a repeatable flag that also accepts comma-separated lists (`--image a,b`). */
export function collectList(value: string, previous: string[] = []): string[] {
  return [
    ...previous,
    ...value
      .split(',')
      .map((part) => part.trim())
      .filter(Boolean),
  ]
}

/** Bytes per second from `10M`, `500K`, `1G` or a plain number; `-1` or `0` is unlimited. */
export function rateFlag(flag: string) {
  return (value: string): number => {
    const match = /^(\d+(?:\.\d+)?)([KMG]?)(?:i?B)?(?:\/s)?$/i.exec(value.trim())
    if (value.trim() === '-1' || value.trim() === '0') return -1
    if (!match) {
      throw new ImageSwarmError(
        'E_USAGE',
        `${flag} takes a rate like 50M (bytes per second), not ${JSON.stringify(value)}`,
        {
          path: flag,
        },
      )
    }
    const scale = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[
      match[2]!.toUpperCase() as '' | 'K' | 'M' | 'G'
    ]
    return Math.round(Number(match[1]) * scale)
  }
}
