import type { z } from 'zod'
import { ImageSwarmError } from './errors.js'

/**
 * Validates a package's config, fills its defaults and, when something is wrong, names
 * the exact key, what was expected and what was received.
 *
 * @example
 *   const config = resolveConfig(TrackerConfigSchema, { announceIntervalSeconds: 15 }, 'tracker')
 */
export function resolveConfig<S extends z.ZodType>(
  schema: S,
  input: unknown,
  what: string,
): z.output<S> {
  const result = schema.safeParse(input ?? {})
  if (result.success) return result.data
  const issue = result.error.issues[0]
  const key = issue?.path.length ? issue.path.join('.') : '(root)'
  const received = lookup(input, issue?.path ?? [])
  throw new ImageSwarmError(
    'E_CONFIG_INVALID',
    `invalid ${what} setting ${key}: ${issue?.message ?? 'invalid value'} (received ${describe(received)})`,
    { operation: `configure ${what}`, path: key, hint: `fix the value of ${key}` },
  )
}

function lookup(input: unknown, path: PropertyKey[]): unknown {
  let value = input
  for (const key of path) {
    if (typeof value !== 'object' || value === null) return undefined
    value = (value as Record<PropertyKey, unknown>)[key]
  }
  return value
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing'
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return String(value)
  }
}
