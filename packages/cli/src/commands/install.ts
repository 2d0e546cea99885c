import { hostname } from 'node:os'
import {
  type ClientConfig,
  ClientConfigSchema,
  describeInstallParameters,
  formatMiB,
  INSTALL_PARAMETERS,
  installImage,
  loadTrustRoot,
  type ParameterSpec,
  resolveInstallParameters,
  unknownKernelParameters,
} from '@imageswarm/client'
import { formatDuration, ImageSwarmError, type Logger, readKernelCmdline } from '@imageswarm/core'
import { type Command, Option } from 'commander'
import type { ConsoleOutput } from '../console-output.js'
import { createInstallRenderer } from '../install-renderer.js'
import { INSTALLER_KERNEL_PARAMETERS, isInstallerEnvironment } from '../installer-environment.js'
import { runInterruptible } from '../interrupt.js'

/**
 * Help for each install setting, by config key; names come from the client's table and
 * defaults from its schema (`defaultText`), so neither is written twice.
 */
const HELP: Record<string, string> = {
  server:
    'image server: address, address:port or URL; several (a primary and its mirrors) separated by commas',
  image: 'image name',
  staging:
    'download directory, or auto (tmpfs when memory allows, else the target disk), tmpfs or target',
  target: 'root of the system being installed',
  memoryReserve: 'memory auto staging leaves free beside the archive',
  cache: 'local directory or partition (/dev/sdX, LABEL=...) keeping archives across boots',
  imageMode:
    'extract (into the target root), or mount a SquashFS image read-only under an overlay: disk (kept in the cache) or ram',
  overlay:
    'the mounted image’s writable layer: tmpfs, a partition (/dev/sdX, LABEL=...) or a directory',
  node: 'this node’s name on the dashboard (default: host name)',
  bootMac: 'MAC of the NIC this node booted from, shown on the dashboard',
  seedTimeSeconds: 'keep seeding at most this long after installing (600, 10m, 1h)',
  seedUploadMin:
    'leave the swarm early once this node uploads less than this (e.g. 50K, bytes/s; 0: no minimum)',
  connectTimeoutSeconds: 'keep trying to reach the server this long (e.g. 5m)',
  imageTimeoutSeconds:
    'wait this long (e.g. 30m) for an image the server does not publish yet; 0 fails at once',
  webSeedFallbackSeconds: 'use the server’s web seed after this long without progress (e.g. 30s)',
  stallTimeoutSeconds: 'fail after this long without any data (e.g. 10m)',
  'swarm.maxConnections': 'peer connections',
  'swarm.uploadSlots': 'peers uploaded to at once',
  'swarm.rack': "this node's rack: the tracker then hands out mostly peers of the same rack",
  'swarm.uploadLimit': 'upload limit, e.g. 50M (bytes/s)',
  'swarm.downloadLimit': 'download limit, e.g. 50M (bytes/s)',
  downloadProtocol:
    'torrent (the swarm), or http: one plain HTTP GET from the server, no swarm (a baseline)',
  report: 'report status to the server’s dashboard',
  force: 'install into a target root that is not empty',
  trustRoot: 'root public key file (root.pub): install only images signed under it (docs/trust.md)',
  trustRootKey: 'root public key as its RW… line: only with --insecure-test-mode',
  insecureTestMode: 'accept --trust-root-key (tests only: logged as insecure)',
  minSerial: 'refuse an image serial below this (rollback), with a trust root',
  minKeyListVersion: 'refuse a key list version below this, with a trust root',
  group: 'this node’s group, whose key opens encrypted images (default: the secret file’s)',
  nodeSecretFile: 'file with this node’s secret (imageswarm key node add), to fetch its group key',
}

/** The schema's defaults: what every setting is when nobody gives it. */
const DEFAULTS: unknown = ClientConfigSchema.parse({ server: 'http://defaults', image: 'defaults' })

/** ` (default X)` for a setting the schema gives a default, in the form its flag takes. */
function defaultText(parameter: ParameterSpec): string {
  let value: unknown = DEFAULTS
  for (const part of parameter.key.split('.')) {
    value = (value as Record<string, unknown> | undefined)?.[part]
  }
  if (value === undefined || parameter.key === 'server' || parameter.key === 'image') return ''
  if (typeof value === 'boolean') return ` (default ${value ? 'yes' : 'no'})`
  if (parameter.kind === 'rate' && value === -1) return ' (default unlimited)'
  if (parameter.kind === 'bytes' && typeof value === 'number' && value % 2 ** 20 === 0) {
    return ` (default ${value / 2 ** 20}M)`
  }
  return ` (default ${String(value)})`
}

/** Adds one flag per install setting, each taking its raw text (the client parses it). */
export function addInstallOptions(command: Command): Command {
  return addClientOptions(command)
    .option('--cmdline <file>', 'kernel command line to read parameters from', '/proc/cmdline')
    .option(
      '--print-config',
      'print the resolved settings and where each came from, then exit',
      false,
    )
}

/**
 * The client settings' flags and `--json`, for `install` and `update`. `update` leaves out
 * what only an install into an empty root uses (`omit`), reads no kernel command line (its
 * parameters' kernel names are not shown) and says what its own defaults are (`help`).
 */
export function addClientOptions(
  command: Command,
  options: { omit?: readonly string[]; help?: Record<string, string>; kernel?: boolean } = {},
): Command {
  for (const parameter of INSTALL_PARAMETERS) {
    if (options.omit?.includes(parameter.key)) continue
    const names = [
      ...parameter.env.map((name) => `$${name}`),
      ...(options.kernel === false ? [] : parameter.kernel.map((name) => `${name}=`)),
    ].join(', ')
    const help = `${options.help?.[parameter.key] ?? `${HELP[parameter.key] ?? parameter.key}${defaultText(parameter)}`} [${names}]`
    if (parameter.key === 'report') {
      command.addOption(new Option('--no-report', 'do not report status to the server'))
    } else if (parameter.kind === 'boolean') {
      command.addOption(new Option(parameter.flag, help))
    } else {
      command.addOption(new Option(`${parameter.flag} <value>`, help))
    }
  }
  return command.option('--json', 'write progress events as JSON lines on stdout', false)
}

interface InstallFlags {
  cmdline: string
  json: boolean
  printConfig: boolean
  report?: boolean
  [flag: string]: unknown
}

/** The install settings given as flags, by config key (the client parses their text). */
export function flagsByKey(
  flags: Readonly<Record<string, unknown>>,
): Record<string, string | boolean | undefined> {
  const byKey: Record<string, string | boolean | undefined> = {}
  for (const parameter of INSTALL_PARAMETERS) {
    const attribute = new Option(parameter.flag).attributeName()
    const value = flags[attribute]
    // Commander sets --no-report's default (true) itself; only an explicit "no" counts.
    if (parameter.key === 'report') byKey.report = value === false ? false : undefined
    else if (value !== undefined) byKey[parameter.key] = value as string | boolean
  }
  return byKey
}

/**
 * `imageswarm install`: parameters from flags, environment and kernel command line,
 * then the install pipeline with progress on the terminal, serial console or as JSON.
 * Outside an installer ramdisk the target root must be given: the default, /a, is the
 * installer's mount point, not a directory to fill on a running system.
 */
export async function runInstall(
  flags: InstallFlags,
  logger: Logger,
  output: ConsoleOutput,
): Promise<void> {
  const inputs = {
    flags: flagsByKey(flags),
    env: process.env,
    kernel: await readKernelCmdline(flags.cmdline),
  }
  for (const unknown of unknownKernelParameters(inputs.kernel, INSTALLER_KERNEL_PARAMETERS)) {
    logger.warn(
      {
        parameter: unknown.name,
        hint: unknown.suggestion
          ? `did you mean ${unknown.suggestion}=?`
          : 'imageswarm install --help lists the parameters',
      },
      `unknown kernel parameter ${unknown.name} is ignored`,
    )
  }
  if (flags.printConfig) {
    const { text, invalid } = await describeConfig(inputs)
    process.stdout.write(`${text}\n`)
    if (invalid > 0) {
      throw new ImageSwarmError(
        'E_CONFIG_INVALID',
        `${invalid} setting${invalid === 1 ? ' is' : 's are'} invalid (INVALID above)`,
        { hint: 'correct the flag, variable or kernel parameter named on its line' },
      )
    }
    return
  }
  const { config, sources } = resolveInstallParameters(inputs)
  if (sources.target?.source === 'default' && !(await isInstallerEnvironment())) {
    throw new ImageSwarmError(
      'E_USAGE',
      `no target root given, and this is not an installer environment: the default, ${config.target}, is the installer's mount point`,
      {
        path: 'target',
        hint: 'give the root to install into: --target DIR (or IMAGESWARM_TARGET, imageswarm.target=)',
      },
    )
  }
  await runInterruptible(
    'install',
    'run the install again; the download resumes from the pieces already in staging',
    (signal) =>
      installImage({
        config,
        logger,
        onEvent: createInstallRenderer({
          json: flags.json,
          console: output,
          node: config.node ?? hostname(),
        }),
        signal,
      }),
  )
}

/**
 * `--print-config`: one line per setting with its value and where it came from, a wrong
 * value shown where it is instead of stopping there, and what the node trusts.
 */
async function describeConfig(inputs: Parameters<typeof describeInstallParameters>[0]) {
  const described = describeInstallParameters(inputs, DEFAULTS)
  const rows = described.map((entry) => {
    const name = entry.parameter.flag.replace(/^--/, '')
    if (entry.problem !== undefined) return [name, 'INVALID', entry.problem]
    const from = entry.source === 'default' ? 'default' : `${entry.source} ${entry.name}`
    return [name, showValue(entry.parameter, entry.value), from]
  })
  let trust: string
  try {
    const { config } = resolveInstallParameters(inputs)
    trust = await describeTrust(config)
  } catch (err) {
    // A value that parses but the settings refuse (out of range, contradictory): on its line.
    const entry = described.find(
      (candidate) => candidate.parameter.key === (err as ImageSwarmError).path,
    )
    if (err instanceof ImageSwarmError && entry && entry.problem === undefined) {
      entry.problem = `${err.message}${err.hint ? `: ${err.hint}` : ''}`
      rows[described.indexOf(entry)] = [
        rows[described.indexOf(entry)]![0]!,
        'INVALID',
        entry.problem,
      ]
    }
    trust = 'not known until the settings above are valid'
  }
  const width = (column: number) =>
    Math.max(...rows.filter((row) => row[1] !== 'INVALID').map((row) => row[column]!.length))
  const lines = rows.map((row) =>
    `${row[0]!.padEnd(width(0))}  ${row[1]!.padEnd(width(1))}  ${row[2]}`.trimEnd(),
  )
  lines.push(`${'trust'.padEnd(width(0))}  ${trust}`)
  return { text: lines.join('\n'), invalid: described.filter((entry) => entry.problem).length }
}

function showValue(parameter: ParameterSpec, value: unknown): string {
  if (value === undefined) return '-'
  if (Array.isArray(value)) return value.join(',')
  if (typeof value === 'boolean') return value ? 'yes' : 'no'
  if (typeof value !== 'number') return String(value)
  if (parameter.kind === 'seconds') return formatDuration(value)
  if (parameter.kind === 'rate') return value < 0 ? 'unlimited' : `${formatMiB(value)}/s`
  if (parameter.kind === 'bytes') return formatMiB(value)
  return String(value)
}

/** What the node trusts: the root key's id, or the problem with it. */
async function describeTrust(config: ClientConfig): Promise<string> {
  if (config.trustRoot === undefined && config.trustRootKey === undefined) {
    return 'no trust root: unsigned images are installed'
  }
  const floors = [
    config.minSerial === undefined ? '' : `, serial >= ${config.minSerial}`,
    config.minKeyListVersion === undefined ? '' : `, key list >= ${config.minKeyListVersion}`,
  ].join('')
  try {
    const root = await loadTrustRoot(config)
    return `signed images only, root key ${root?.publicKey.keyId} (${root?.source}${root?.testMode ? ', INSECURE test mode' : ''}${floors})`
  } catch (err) {
    return `signed images only, but the root key cannot be used: ${err instanceof ImageSwarmError ? `${err.code}: ${err.message}` : String(err)}`
  }
}
