import {
  COMPRESSIONS,
  type Compression,
  formatDuration,
  IMAGE_FORMATS,
  type ImageFormat,
  ImageSwarmError,
  parseByteRate,
  parseDuration,
  parseImageName,
} from '@imageswarm/core'

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

/** What `--format` builds up: one format for every image, or formats by image name. */
export type FormatSetting = ImageFormat | Record<string, ImageFormat>

/**
 * `--format squashfs` (every image) or `--format hpc=squashfs` (one image), repeatable: a
 * later bare format applies to the images no `name=` names.
 */
export function formatFlag(value: string, previous?: FormatSetting): FormatSetting {
  const equals = value.indexOf('=')
  const image = equals === -1 ? undefined : value.slice(0, equals)
  const format = equals === -1 ? value : value.slice(equals + 1)
  if (!(IMAGE_FORMATS as readonly string[]).includes(format)) {
    throw new ImageSwarmError(
      'E_USAGE',
      `--format takes ${IMAGE_FORMATS.join(' or ')} (or IMAGE=FORMAT), not ${JSON.stringify(value)}`,
      { path: '--format', hint: 'for example --format squashfs or --format hpc=squashfs' },
    )
  }
  if (image === undefined) {
    if (previous === undefined || typeof previous === 'string') return format as ImageFormat
    // Named images keep theirs; the rest get this one.
    return { ...previous, '*': format as ImageFormat }
  }
  parseImageName(image)
  const byImage = typeof previous === 'string' ? { '*': previous } : { ...previous }
  return { ...byImage, [image]: format as ImageFormat }
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

/** A rate flag (`--upload-limit 50M`), in bytes per second; -1 is unlimited. */
export function rateFlag(flag: string) {
  return (value: string): number => {
    const rate = parseByteRate(value)
    if (rate === undefined) {
      throw new ImageSwarmError(
        'E_USAGE',
        `${flag} takes a rate like 50M (bytes per second), not ${JSON.stringify(value)}`,
        { path: flag },
      )
    }
    return rate
  }
}

/** A duration flag (`--manifest-lifetime 7d`, or seconds), in whole seconds within a range. */
export function durationFlag(flag: string, min: number, max: number) {
  return (value: string): number => {
    const seconds = parseDuration(value)
    if (seconds === undefined || seconds < min || seconds > max || !Number.isInteger(seconds)) {
      throw new ImageSwarmError(
        'E_USAGE',
        `${flag} takes a duration from ${formatDuration(min)} to ${formatDuration(max)} (600, 10m, 1h30m, 7d), not ${JSON.stringify(value)}`,
        { path: flag },
      )
    }
    return seconds
  }
}
