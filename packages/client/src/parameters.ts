import { isAbsolute, relative, resolve } from 'node:path'
import {
  ImageSwarmError,
  parseByteRate,
  parseDuration,
  parseMac,
  RACK_PATTERN,
  resolveConfig,
} from '@imageswarm/core'
import {
  type ClientConfig,
  ClientConfigSchema,
  DOWNLOAD_PROTOCOLS,
  IMAGE_MODES,
  isStagingChoice,
  parseServerList,
} from './config.js'

export type ParameterSource = 'flag' | 'environment' | 'kernel' | 'default'

type Kind =
  | 'string'
  | 'server'
  | 'seconds'
  | 'integer'
  | 'rate'
  | 'bytes'
  | 'boolean'
  | 'protocol'
  | 'mac'
  | 'rack'
  | 'imageMode'

/**
 * A kernel name that says a setting in another installer's words: its values are turned
 * into the setting's own (SystemImager 5's `si.tmpfs-staging=y` is staging `tmpfs`).
 */
export interface KernelTranslation {
  /** The values it takes, for the error when it is given another. */
  expected: string
  /**
   * The setting's own value for `value` (`''` for a bare name), undefined when bad, or null
   * when this value sets nothing here (the next name, or the default, decides).
   */
  translate: (value: string) => string | null | undefined
}

/** One install setting and every name it can be given by, in order of preference. */
export interface ParameterSpec {
  /** Path in ClientConfig (`swarm.uploadLimit`). */
  key: string
  flag: string
  env: readonly string[]
  kernel: readonly string[]
  kind: Kind
  /** Kernel names (of `kernel`) whose values are translated first. */
  translations?: Readonly<Record<string, KernelTranslation>>
}

const spec = (
  key: string,
  flag: string,
  env: readonly string[],
  kernel: readonly string[],
  kind: Kind = 'string',
  translations?: Readonly<Record<string, KernelTranslation>>,
): ParameterSpec => ({ key, flag, env, kernel, kind, ...(translations ? { translations } : {}) })

/**
 * SystemImager 5's `si.tmpfs-staging`: a y/n boolean in its code (a bare name is yes),
 * whatever its man page says: y stages in memory (tmpfs), n on the target disk.
 */
const TMPFS_STAGING: KernelTranslation = {
  expected: 'y or n',
  translate: (value) => {
    const text = value.toLowerCase()
    if (['', '1', 'y', 'yes'].includes(text)) return 'tmpfs'
    if (['0', 'n', 'no'].includes(text)) return 'target'
    return undefined
  },
}

/** A y/n answer in SystemImager's words (`BITTORRENT_SEED_WAIT=y`), or undefined when bad. */
function yesNo(value: string): boolean | undefined {
  const text = value.toLowerCase()
  if (['y', 'yes', '1'].includes(text)) return true
  if (['n', 'no', '0'].includes(text)) return false
  return undefined
}

/**
 * SystemImager's `BITTORRENT_SEED_WAIT=n` (its default): leave the swarm as soon as the
 * image is there, no seeding after the download. `y` keeps seeding as imageswarm does
 * anyway (while others download, at most the seed time), so it leaves the seed time alone.
 */
const SEED_WAIT_TIME: KernelTranslation = {
  expected: 'y or n',
  translate: (value) => {
    const wait = yesNo(value)
    return wait === undefined ? undefined : wait ? null : '0'
  },
}

/**
 * SystemImager 4's installer, with `BITTORRENT_SEED_WAIT=y`, seeded until its upload rate
 * fell below `BITTORRENT_UPLOAD_MIN` KiB/s, 50 when that was not given.
 */
const SEED_WAIT_UPLOAD_MIN: KernelTranslation = {
  expected: 'y or n',
  translate: (value) => {
    const wait = yesNo(value)
    return wait === undefined ? undefined : wait ? String(50 * 1024) : null
  },
}

/** `BITTORRENT_UPLOAD_MIN=50`: KiB/s, as SystemImager's installer read it. */
const UPLOAD_MIN_KIB: KernelTranslation = {
  expected: 'a whole number of KiB/s, e.g. 50',
  translate: (value) => (/^[0-9]+$/.test(value) ? String(Number(value) * 1024) : undefined),
}

/**
 * Every install setting. SystemImager's names (`IMAGESERVER`, `IMAGENAME`,
 * `BITTORRENT_STAGING`) are accepted on the kernel command line and, as SystemImager's
 * installer exports them, in the environment; so are SystemImager 5's kernel parameters
 * (`si.image-server=`, `si.image-name=`, `si.tmpfs-staging=y|n`). imageswarm's own kernel
 * parameters are namespaced (`imageswarm.server=`), its variables prefixed
 * (`IMAGESWARM_SERVER`). The server setting takes several image servers separated by
 * commas (`imageswarm.server=10.0.0.1,10.0.0.2`), under each of its names.
 */
export const INSTALL_PARAMETERS: readonly ParameterSpec[] = [
  spec(
    'server',
    '--server',
    ['IMAGESWARM_SERVER', 'IMAGESERVER'],
    ['imageswarm.server', 'IMAGESERVER', 'si.image-server'],
    'server',
  ),
  spec(
    'image',
    '--image',
    ['IMAGESWARM_IMAGE', 'IMAGENAME'],
    ['imageswarm.image', 'IMAGENAME', 'si.image-name'],
  ),
  spec(
    'staging',
    '--staging',
    ['IMAGESWARM_STAGING', 'BITTORRENT_STAGING'],
    ['imageswarm.staging', 'BITTORRENT_STAGING', 'si.tmpfs-staging'],
    'string',
    { 'si.tmpfs-staging': TMPFS_STAGING },
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
  spec(
    'imageMode',
    '--image-mode',
    ['IMAGESWARM_IMAGE_MODE'],
    ['imageswarm.image-mode'],
    'imageMode',
  ),
  spec('overlay', '--overlay', ['IMAGESWARM_OVERLAY'], ['imageswarm.overlay']),
  spec('node', '--node-name', ['IMAGESWARM_NODE_NAME'], ['imageswarm.node']),
  spec('bootMac', '--boot-mac', ['IMAGESWARM_BOOT_MAC'], ['imageswarm.boot-mac', 'BOOTIF'], 'mac'),
  spec(
    'seedTimeSeconds',
    '--seed-time',
    ['IMAGESWARM_SEED_TIME'],
    ['imageswarm.seed-time', 'BITTORRENT_SEED_WAIT'],
    'seconds',
    { BITTORRENT_SEED_WAIT: SEED_WAIT_TIME },
  ),
  spec(
    'seedUploadMin',
    '--seed-upload-min',
    ['IMAGESWARM_SEED_UPLOAD_MIN'],
    ['imageswarm.seed-upload-min', 'BITTORRENT_UPLOAD_MIN', 'BITTORRENT_SEED_WAIT'],
    'rate',
    { BITTORRENT_UPLOAD_MIN: UPLOAD_MIN_KIB, BITTORRENT_SEED_WAIT: SEED_WAIT_UPLOAD_MIN },
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
  spec('swarm.rack', '--rack', ['IMAGESWARM_RACK'], ['imageswarm.rack'], 'rack'),
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
  // SystemImager 5's si.dl-protocol names its transports (rsync, torrent, ssh, ...); of
  // those imageswarm has torrent, and adds http, the plain-HTTP baseline.
  spec(
    'downloadProtocol',
    '--dl-protocol',
    ['IMAGESWARM_DL_PROTOCOL'],
    ['imageswarm.dl-protocol', 'si.dl-protocol'],
    'protocol',
  ),
  spec('report', '--report', ['IMAGESWARM_REPORT'], ['imageswarm.report'], 'boolean'),
  spec('force', '--force', ['IMAGESWARM_FORCE'], ['imageswarm.force'], 'boolean'),
  // Trust (docs/trust.md). The installer ramdisk bakes its root key in as the environment's
  // IMAGESWARM_TRUST_ROOT, which the kernel command line cannot override.
  spec('trustRoot', '--trust-root', ['IMAGESWARM_TRUST_ROOT'], ['imageswarm.trust-root']),
  spec(
    'trustRootKey',
    '--trust-root-key',
    ['IMAGESWARM_TRUST_ROOT_KEY'],
    ['imageswarm.trust-root-key'],
  ),
  spec(
    'insecureTestMode',
    '--insecure-test-mode',
    ['IMAGESWARM_INSECURE_TEST_MODE'],
    ['imageswarm.insecure-test-mode'],
    'boolean',
  ),
  spec(
    'minSerial',
    '--min-serial',
    ['IMAGESWARM_MIN_SERIAL'],
    ['imageswarm.min-serial'],
    'integer',
  ),
  spec(
    'minKeyListVersion',
    '--min-key-list-version',
    ['IMAGESWARM_MIN_KEY_LIST_VERSION'],
    ['imageswarm.min-key-list-version'],
    'integer',
  ),
  // Encrypted images: the node's group and the file with its secret (never the secret).
  spec('group', '--group', ['IMAGESWARM_GROUP'], ['imageswarm.group']),
  spec(
    'nodeSecretFile',
    '--node-secret-file',
    ['IMAGESWARM_NODE_SECRET_FILE'],
    ['imageswarm.node-secret-file'],
  ),
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
    const translation = parameter.translations?.[name]
    if (value !== undefined && translation) {
      const translated = translation.translate(value)
      if (translated === null) continue
      if (translated === undefined) {
        throw new ImageSwarmError(
          'E_CONFIG_INVALID',
          `invalid ${name} (kernel): ${JSON.stringify(value)}`,
          { path: parameter.key, hint: `give ${translation.expected}` },
        )
      }
      return { value: translated, source: 'kernel', name }
    }
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
      // A list: `--server a,b`, `IMAGESERVER=10.0.0.1,10.0.0.2`, `imageswarm.server=a,b`.
      return parseServerList(value, where)
    case 'seconds': {
      const seconds = parseDuration(value)
      if (seconds === undefined)
        throw bad('a duration: seconds, or with a unit, e.g. 600, 10m, 1h30m')
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
    case 'mac': {
      // iPXE leaves BOOTIF=${netX/mac} as it is when the variable is not set: no MAC then,
      // and no reason to stop an install.
      if (value.includes('${')) return undefined
      const mac = parseMac(value)
      if (mac === undefined)
        throw bad('a MAC address, e.g. 52:54:00:ab:cd:01 or 01-52-54-00-ab-cd-01')
      return mac
    }
    case 'rack':
      if (!RACK_PATTERN.test(value)) throw bad('a rack name: letters, digits and ._:- (up to 64)')
      return value
    case 'protocol': {
      const protocol = value.toLowerCase()
      if (!(DOWNLOAD_PROTOCOLS as readonly string[]).includes(protocol)) {
        throw bad('torrent (the swarm) or http (one GET from the image server)')
      }
      return protocol
    }
    case 'imageMode': {
      const mode = value.toLowerCase()
      if (!(IMAGE_MODES as readonly string[]).includes(mode)) {
        throw bad(
          'extract (into the target root), disk (mount it, kept in the cache) or ram (mount it, kept in RAM)',
        )
      }
      return mode
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
  refuseTrustContradictions(config, named)
  const stagingDir = isStagingChoice(config.staging) ? undefined : resolve(config.staging)
  if (stagingDir === target) {
    throw contradiction(
      'staging',
      `staging directory ${config.staging} is the target root`,
      'stage elsewhere (tmpfs, or leave it to auto, which uses the target’s tmp/)',
    )
  }
  if (config.imageMode === 'disk' && config.cache === undefined) {
    throw contradiction(
      'imageMode',
      'image mode disk keeps the image in the image cache, and no cache is given',
      'give the cache partition (imageswarm.cache=/dev/sda3 or LABEL=…), or use image mode ram',
    )
  }
  if (config.imageMode === 'extract' && sources.overlay?.source !== 'default') {
    throw contradiction(
      'overlay',
      'an overlay is only for a mounted image (image mode disk or ram)',
      'add imageswarm.image-mode=disk or ram, or leave the overlay out',
    )
  }
  if (
    config.overlay !== 'tmpfs' &&
    !config.overlay.startsWith('/dev/') &&
    !config.overlay.includes('=') &&
    within(config.overlay)
  ) {
    throw contradiction(
      'overlay',
      `overlay ${config.overlay} is inside the target root ${config.target}`,
      'the overlay is mounted beneath the target root: give a partition, tmpfs or a directory elsewhere',
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
    if (stagingDir === resolve(config.cache)) {
      throw contradiction(
        'cache',
        `cache and staging are the same directory (${config.cache})`,
        'give only the cache: downloads for it are staged inside it',
      )
    }
  }
}

/**
 * A root key given as a line (`imageswarm.trust-root-key=`) only in the test mode, one
 * root key only, and rollback floors only where there is a root to check them against.
 */
function refuseTrustContradictions(config: ClientConfig, named: (key: string) => string): void {
  const contradiction = (key: string, message: string, hint: string) =>
    new ImageSwarmError('E_CONFIG_INVALID', `${named(key)}: ${message}`, { path: key, hint })
  if (config.trustRootKey !== undefined && !config.insecureTestMode) {
    throw contradiction(
      'trustRootKey',
      'a root key given on the command line is accepted only in the insecure test mode',
      'the kernel command line comes from the same unauthenticated boot path an attacker would use: bake the root key into the ramdisk (imageswarm initrd --trust-root FILE); for a test, add imageswarm.insecure-test-mode=1',
    )
  }
  if (config.trustRootKey !== undefined && config.trustRoot !== undefined) {
    throw contradiction(
      'trustRootKey',
      `a second root key, beside ${named('trustRoot')} (${config.trustRoot})`,
      'a node trusts one root key; a ramdisk that carries one (imageswarm initrd --trust-root) cannot be given another on the kernel command line',
    )
  }
  const hasRoot = config.trustRoot !== undefined || config.trustRootKey !== undefined
  for (const key of ['minSerial', 'minKeyListVersion'] as const) {
    if (config[key] !== undefined && !hasRoot) {
      throw contradiction(
        key,
        'a rollback floor without a trust root',
        'serials and key list versions are only trusted when signed: give the root key too (--trust-root FILE, imageswarm.trust-root=PATH)',
      )
    }
  }
}

/** One setting as `--print-config` shows it: its value and where it came from, or what is wrong. */
export interface DescribedParameter {
  parameter: ParameterSpec
  /** The value the install would use (undefined: none). */
  value?: unknown
  source: ParameterSource
  /** The flag, variable or kernel parameter that gave it. */
  name?: string
  /** Why the given value cannot be used: the error resolving would stop at. */
  problem?: string
}

/**
 * Every setting with its value and source, like `resolveInstallParameters` but without
 * stopping at the first wrong one: each problem is shown beside its setting, so the
 * wrong one is found where it is (`--print-config`).
 */
export function describeInstallParameters(
  inputs: ParameterInputs,
  defaults: unknown,
): DescribedParameter[] {
  return INSTALL_PARAMETERS.map((parameter) => {
    let found: ReturnType<typeof pick>
    try {
      found = pick(parameter, inputs)
    } catch (err) {
      return { parameter, source: 'kernel', problem: problemOf(err) }
    }
    if (!found) return { parameter, source: 'default', value: valueAt(defaults, parameter.key) }
    try {
      return {
        parameter,
        source: found.source,
        name: found.name,
        value: convert(parameter, found.value, `${found.name} (${found.source})`),
      }
    } catch (err) {
      return { parameter, source: found.source, name: found.name, problem: problemOf(err) }
    }
  })
}

function problemOf(err: unknown): string {
  if (err instanceof ImageSwarmError) return `${err.message}${err.hint ? `: ${err.hint}` : ''}`
  return err instanceof Error ? err.message : String(err)
}

function valueAt(object: unknown, path: string): unknown {
  let value = object
  for (const part of path.split('.')) value = (value as Record<string, unknown> | undefined)?.[part]
  return value
}

/**
 * `imageswarm.*` kernel parameters nobody reads (a misspelt `imageswarm.seedtime=30`),
 * each with the known name closest to it. `known` adds the names other parts of the
 * installer read (the ramdisk's `imageswarm.on-failure`, the installer's own settings).
 */
export function unknownKernelParameters(
  kernel: ReadonlyMap<string, string>,
  known: readonly string[] = [],
): { name: string; suggestion?: string }[] {
  const names = new Set([...INSTALL_PARAMETERS.flatMap((parameter) => parameter.kernel), ...known])
  const ours = [...names].filter((name) => name.startsWith('imageswarm.'))
  return [...kernel.keys()]
    .filter((name) => name.startsWith('imageswarm.') && !names.has(name))
    .map((name) => {
      const suggestion = closest(name, ours)
      return suggestion === undefined ? { name } : { name, suggestion }
    })
}

/** The candidate within a few edits of `name` (ignoring dashes), if any. */
function closest(name: string, candidates: readonly string[]): string | undefined {
  const plain = (text: string) => text.replaceAll('-', '')
  let best: { name: string; distance: number } | undefined
  for (const candidate of candidates) {
    const distance = editDistance(plain(name), plain(candidate))
    if (distance <= 3 && (!best || distance < best.distance)) best = { name: candidate, distance }
  }
  return best?.name
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, index) => index)
  for (let i = 1; i <= a.length; i++) {
    const current = [i]
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(
        previous[j]! + 1,
        current[j - 1]! + 1,
        previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      )
    }
    previous = current
  }
  return previous[b.length]!
}
