import type { z } from 'zod'
import { ImageSwarmError } from './errors.js'

/** The first problem of a failed schema check, said the way a person fixes it. */
export interface SchemaProblem {
  /** Dotted path of the bad key (`swarm.uploadLimit`), or `rootLabel` for the whole value. */
  key: string
  /** What was expected, in zod's words. */
  message: string
  /** What was received, as short JSON (`nothing` when the key was missing). */
  received: string
}

/**
 * Names the key a schema check failed on, what was expected and what was received.
 *
 * @example
 *   const result = schema.safeParse(body)
 *   if (!result.success) describeSchemaProblem(result.error, body)
 *   // { key: 'state', message: 'Invalid option: …', received: '"flying"' }
 */
export function describeSchemaProblem(
  error: z.ZodError,
  input: unknown,
  rootLabel = '(root)',
): SchemaProblem {
  const issue = error.issues[0]
  return {
    key: issue?.path.length ? issue.path.join('.') : rootLabel,
    message: issue?.message ?? 'invalid value',
    received: describeValue(lookup(input, issue?.path ?? [])),
  }
}

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
  const { key, message, received } = describeSchemaProblem(result.error, input)
  throw new ImageSwarmError(
    'E_CONFIG_INVALID',
    `invalid ${what} setting ${key}: ${message} (received ${received})`,
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

function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing'
  let text: string
  try {
    text = JSON.stringify(value) ?? String(value)
  } catch {
    text = String(value)
  }
  return text.length > 80 ? `${text.slice(0, 77)}...` : text
}
