import { ImageSwarmError, resolveConfig } from '@imageswarm/core'
import {
  type ClientConfig,
  type ClientConfigInput,
  ClientConfigSchema,
  normalizeServerUrl,
} from './config.js'

export type ParameterSource = 'flag' | 'environment' | 'kernel' | 'default'

/** Where each install parameter can come from, by name, in order of preference. */
interface ParameterSpec {
  key: 'server' | 'image' | 'staging' | 'target' | 'seedTimeSeconds'
  flag: string
  env: readonly string[]
  kernel: readonly string[]
  kind: 'string' | 'seconds'
}

/**
 * SystemImager's names (`IMAGESERVER`, `IMAGENAME`, `BITTORRENT_STAGING`) are accepted
 * on the kernel command line and, as SystemImager's installer exports them, in the
 * environment; imageswarm's own names are namespaced (`imageswarm.server=`).
 */
export const INSTALL_PARAMETERS: readonly ParameterSpec[] = [
  {
    key: 'server',
    flag: '--server',
    env: ['IMAGESWARM_SERVER', 'IMAGESERVER'],
    kernel: ['imageswarm.server', 'IMAGESERVER'],
    kind: 'string',
  },
  {
    key: 'image',
    flag: '--image',
    env: ['IMAGESWARM_IMAGE', 'IMAGENAME'],
    kernel: ['imageswarm.image', 'IMAGENAME'],
    kind: 'string',
  },
  {
    key: 'staging',
    flag: '--staging',
    env: ['IMAGESWARM_STAGING', 'BITTORRENT_STAGING'],
    kernel: ['imageswarm.staging', 'BITTORRENT_STAGING'],
    kind: 'string',
  },
  {
    key: 'target',
    flag: '--target',
    env: ['IMAGESWARM_TARGET'],
    kernel: ['imageswarm.target'],
    kind: 'string',
  },
  {
    key: 'seedTimeSeconds',
    flag: '--seed-time',
    env: ['IMAGESWARM_SEED_TIME'],
    kernel: ['imageswarm.seed-time'],
    kind: 'seconds',
  },
]

export interface ParameterInputs {
  /** Values from command-line flags, by config key; undefined when the flag was not given. */
  flags: Partial<Record<ParameterSpec['key'], string | number | undefined>>
  env: NodeJS.ProcessEnv
  kernel: ReadonlyMap<string, string>
  /** Settings that only flags carry (swarm limits, timeouts). */
  rest?: Partial<Omit<ClientConfigInput, ParameterSpec['key']>>
}

export interface ResolvedParameters {
  config: ClientConfig
  sources: Record<ParameterSpec['key'], { source: ParameterSource; name?: string }>
}

/**
 * Resolves install parameters: flags win over the environment, the environment over
 * the kernel command line, and that over defaults. A malformed value is an error that
 * names the parameter and where it came from.
 */
export function resolveInstallParameters(inputs: ParameterInputs): ResolvedParameters {
  const values: Record<string, unknown> = { ...inputs.rest }
  const sources = {} as ResolvedParameters['sources']
  for (const spec of INSTALL_PARAMETERS) {
    const found = pick(spec, inputs)
    if (!found) {
      sources[spec.key] = { source: 'default' }
      continue
    }
    sources[spec.key] = { source: found.source, name: found.name }
    values[spec.key] = convert(spec, found.value, `${found.name} (${found.source})`)
  }
  if (values.server === undefined) {
    throw new ImageSwarmError('E_USAGE', 'no image server given', {
      path: 'server',
      hint: 'pass --server URL, set IMAGESERVER, or boot with IMAGESERVER= or imageswarm.server=',
    })
  }
  if (values.image === undefined) {
    throw new ImageSwarmError('E_USAGE', 'no image name given', {
      path: 'image',
      hint: 'pass --image NAME, set IMAGENAME, or boot with IMAGENAME= or imageswarm.image=',
    })
  }
  return { config: resolveConfig(ClientConfigSchema, values, 'install'), sources }
}

function pick(
  spec: ParameterSpec,
  inputs: ParameterInputs,
): { value: string | number; source: ParameterSource; name: string } | undefined {
  const flag = inputs.flags[spec.key]
  if (flag !== undefined) return { value: flag, source: 'flag', name: spec.flag }
  for (const name of spec.env) {
    const value = inputs.env[name]
    if (value !== undefined && value !== '') return { value, source: 'environment', name }
  }
  for (const name of spec.kernel) {
    const value = inputs.kernel.get(name)
    if (value !== undefined && value !== '') return { value, source: 'kernel', name }
  }
  return undefined
}

function convert(spec: ParameterSpec, value: string | number, where: string): unknown {
  if (spec.kind === 'seconds') {
    const seconds = typeof value === 'number' ? value : Number(value)
    if (!Number.isFinite(seconds) || seconds < 0) {
      throw new ImageSwarmError('E_CONFIG_INVALID', `invalid ${where}: ${JSON.stringify(value)}`, {
        path: spec.key,
        hint: 'give a number of seconds, e.g. 600',
      })
    }
    return seconds
  }
  const text = String(value)
  return spec.key === 'server' ? normalizeServerUrl(text, where) : text
}
