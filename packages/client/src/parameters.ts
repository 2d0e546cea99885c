import { isAbsolute, relative, resolve } from 'node:path'
import { ImageSwarmError, parseByteRate, resolveConfig } from '@imageswarm/core'
import { type ClientConfig, ClientConfigSchema, normalizeServerUrl } from './config.js'

export type ParameterSource = 'flag' | 'environment' | 'kernel' | 'default'

type Kind = 'string' | 'server' | 'seconds' | 'integer' | 'rate' | 'bytes' | 'boolean'

/** One install setting and every name it can be given by, in order of preference. */
export interface ParameterSpec {
  /** Path in ClientConfig (`swarm.uploadLimit`). */
  key: string
  flag: string
  env: readonly string[]
  kernel: readonly string[]
  kind: Kind
}

const spec = (
  key: string,
  flag: string,
  env: readonly string[],
  kernel: readonly string[],
  kind: Kind = 'string',
): ParameterSpec => ({ key, flag, env, kernel, kind })

/**
 * Every install setting. SystemImager's names (`IMAGESERVER`, `IMAGENAME`,
 * `BITTORRENT_STAGING`) are accepted on the kernel command line and, as SystemImager's
 * installer exports them, in the environment; imageswarm's own kernel parameters are
 * namespaced (`imageswarm.server=`), its variables prefixed (`IMAGESWARM_SERVER`).
 */
export const INSTALL_PARAMETERS: readonly ParameterSpec[] = [
  spec(
    'server',
    '--server',
    ['IMAGESWARM_SERVER', 'IMAGESERVER'],
    ['imageswarm.server', 'IMAGESERVER'],
    'server',
  ),
  spec('image', '--image', ['IMAGESWARM_IMAGE', 'IMAGENAME'], ['imageswarm.image', 'IMAGENAME']),
  spec(
    'staging',
    '--staging',
    ['IMAGESWARM_STAGING', 'BITTORRENT_STAGING'],
    ['imageswarm.staging', 'BITTORRENT_STAGING'],
  ),
  spec('target', '--target', ['IMAGESWARM_TARGET'], ['imageswarm.target']),
  spec(
    'memoryReserve',
    '--memory-reserve',
    ['IMAGESWARM_MEMORY_RESERVE'],
    ['imageswarm.memory-reserve'],
    'bytes',
  ),
  spec('cache', '--cache', ['IMAGESWARM_CACHE'], ['imageswarm.cache']),
  spec('node', '--node-name', ['IMAGESWARM_NODE_NAME'], ['imageswarm.node']),
  spec(
    'seedTimeSeconds',
    '--seed-time',
    ['IMAGESWARM_SEED_TIME'],
    ['imageswarm.seed-time'],
    'seconds',
  ),
  spec(
    'connectTimeoutSeconds',
    '--connect-timeout',
    ['IMAGESWARM_CONNECT_TIMEOUT'],
    ['imageswarm.connect-timeout'],
    'seconds',
  ),
  spec(
    'imageTimeoutSeconds',
    '--image-timeout',
    ['IMAGESWARM_IMAGE_TIMEOUT'],
    ['imageswarm.image-timeout'],
    'seconds',
  ),
  spec(
    'webSeedFallbackSeconds',
    '--webseed-fallback',
    ['IMAGESWARM_WEBSEED_FALLBACK'],
    ['imageswarm.webseed-fallback'],
    'seconds',
  ),
  spec(
    'stallTimeoutSeconds',
    '--stall-timeout',
    ['IMAGESWARM_STALL_TIMEOUT'],
    ['imageswarm.stall-timeout'],
    'seconds',
  ),
  spec(
    'swarm.maxConnections',
    '--max-connections',
    ['IMAGESWARM_MAX_CONNECTIONS'],
    ['imageswarm.max-connections'],
    'integer',
  ),
  spec(
    'swarm.uploadSlots',
    '--upload-slots',
    ['IMAGESWARM_UPLOAD_SLOTS'],
    ['imageswarm.upload-slots'],
    'integer',
  ),
  spec(
    'swarm.uploadLimit',
    '--upload-limit',
    ['IMAGESWARM_UPLOAD_LIMIT'],
    ['imageswarm.upload-limit'],
    'rate',
  ),
  spec(
    'swarm.downloadLimit',
    '--download-limit',
    ['IMAGESWARM_DOWNLOAD_LIMIT'],
    ['imageswarm.download-limit'],
    'rate',
  ),
  spec('report', '--report', ['IMAGESWARM_REPORT'], ['imageswarm.report'], 'boolean'),
  spec('force', '--force', ['IMAGESWARM_FORCE'], ['imageswarm.force'], 'boolean'),
]

export interface ParameterInputs {
  /** Raw flag values by config key (`swarm.uploadLimit`); undefined when not given. */
  flags: Readonly<Record<string, string | number | boolean | undefined>>
  env: NodeJS.ProcessEnv
  kernel: ReadonlyMap<string, string>
}

export interface ResolvedParameters {
  config: ClientConfig
  sources: Record<string, { source: ParameterSource; name?: string }>
}

/**
 * Resolves install parameters: flags win over the environment, the environment over
 * the kernel command line, and that over defaults. A malformed or contradictory value
 * is an error that names the parameter and where it came from.
 */
export function resolveInstallParameters(inputs: ParameterInputs): ResolvedParameters {
  const values: Record<string, unknown> = {}
  const sources: ResolvedParameters['sources'] = {}
  for (const parameter of INSTALL_PARAMETERS) {
    const found = pick(parameter, inputs)
    if (!found) {
      sources[parameter.key] = { source: 'default' }
      continue
    }
    sources[parameter.key] = { source: found.source, name: found.name }
    setPath(
      values,
      parameter.key,
      convert(parameter, found.value, `${found.name} (${found.source})`),
    )
  }
  for (const key of ['server', 'image'] as const) {
    if (values[key] === undefined) {
      const names = INSTALL_PARAMETERS.find((p) => p.key === key)!
      throw new ImageSwarmError(
        'E_USAGE',
        `no ${key === 'server' ? 'image server' : 'image name'} given`,
        {
          path: key,
          hint: `pass ${names.flag}, set ${names.env.join(' or ')}, or boot with ${names.kernel.map((k) => `${k}=`).join(' or ')}`,
        },
      )
    }
  }
  const config = resolveConfig(ClientConfigSchema, values, 'install')
  refuseContradictions(config, sources)
  return { config, sources }
}

function pick(
  parameter: ParameterSpec,
  inputs: ParameterInputs,
): { value: string | number | boolean; source: ParameterSource; name: string } | undefined {
  const flag = inputs.flags[parameter.key]
  if (flag !== undefined) return { value: flag, source: 'flag', name: parameter.flag }
  for (const name of parameter.env) {
    const value = inputs.env[name]
    if (value !== undefined && value !== '') return { value, source: 'environment', name }
  }
  for (const name of parameter.kernel) {
    const value = inputs.kernel.get(name)
    // A bare boolean kernel parameter (`imageswarm.force`) means yes.
    if (value === '' && parameter.kind === 'boolean')
      return { value: 'yes', source: 'kernel', name }
    if (value !== undefined && value !== '') return { value, source: 'kernel', name }
  }
  return undefined
}

function convert(
  parameter: ParameterSpec,
  value: string | number | boolean,
  where: string,
): unknown {
  const bad = (expected: string) =>
    new ImageSwarmError('E_CONFIG_INVALID', `invalid ${where}: ${JSON.stringify(value)}`, {
      path: parameter.key,
      hint: `give ${expected}`,
    })
  if (typeof value !== 'string') return value
  switch (parameter.kind) {
    case 'server':
      return normalizeServerUrl(value, where)
    case 'seconds': {
      const seconds = Number(value)
      if (!Number.isFinite(seconds) || seconds < 0 || value.trim() === '') {
        throw bad('a number of seconds, e.g. 600')
      }
      return seconds
    }
    case 'integer': {
      const number = Number(value)
      if (!Number.isInteger(number) || number < 1) throw bad('a whole number, e.g. 80')
      return number
    }
    case 'rate': {
      const rate = parseByteRate(value)
      if (rate === undefined) throw bad('a rate in bytes per second, e.g. 50M')
      return rate
    }
    case 'bytes': {
      const bytes = parseByteRate(value)
      if (bytes === undefined || bytes < 0) throw bad('a size in bytes, e.g. 512M')
      return bytes
    }
    case 'boolean': {
      const text = value.toLowerCase()
      if (['1', 'yes', 'y', 'true', 'on'].includes(text)) return true
      if (['0', 'no', 'n', 'false', 'off'].includes(text)) return false
      throw bad('yes or no')
    }
    default:
      return value
  }
}

function setPath(target: Record<string, unknown>, path: string, value: unknown): void {
  const [head, ...rest] = path.split('.')
  if (!head) return
  if (rest.length === 0) {
    target[head] = value
    return
  }
  if (target[head] === undefined) target[head] = {}
  setPath(target[head] as Record<string, unknown>, rest.join('.'), value)
}

/** Settings that each make sense but not together. */
function refuseContradictions(config: ClientConfig, sources: ResolvedParameters['sources']): void {
  const named = (key: string) => sources[key]?.name ?? key
  const target = resolve(config.target)
  const within = (path: string) => {
    const rel = relative(target, resolve(path))
    return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel))
  }
  const contradiction = (key: string, message: string, hint: string) =>
    new ImageSwarmError('E_CONFIG_INVALID', `${named(key)}: ${message}`, { path: key, hint })
  if (config.staging !== 'auto' && resolve(config.staging) === target) {
    throw contradiction(
      'staging',
      `staging directory ${config.staging} is the target root`,
      'stage elsewhere (tmpfs, or leave it to auto, which uses the target’s tmp/)',
    )
  }
  if (
    config.cache !== undefined &&
    !config.cache.startsWith('/dev/') &&
    !config.cache.includes('=')
  ) {
    if (within(config.cache)) {
      throw contradiction(
        'cache',
        `cache ${config.cache} is inside the target root ${config.target}`,
        'the cache must be its own partition; the target root is what gets installed',
      )
    }
    if (config.staging !== 'auto' && resolve(config.staging) === resolve(config.cache)) {
      throw contradiction(
        'cache',
        `cache and staging are the same directory (${config.cache})`,
        'give only the cache: downloads for it are staged inside it',
      )
    }
  }
}
