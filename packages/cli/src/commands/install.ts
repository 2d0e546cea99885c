import {
  type ClientConfig,
  ClientConfigSchema,
  INSTALL_PARAMETERS,
  installImage,
  loadTrustRoot,
  type ParameterSpec,
  resolveInstallParameters,
} from '@imageswarm/client'
import { ImageSwarmError, type Logger, readKernelCmdline } from '@imageswarm/core'
import { type Command, Option } from 'commander'
import { chooseOutputMode, createInstallRenderer } from '../install-renderer.js'
import { runInterruptible } from '../interrupt.js'

/**
 * Help for each install setting, by config key; names come from the client's table and
 * defaults from its schema (`defaultText`), so neither is written twice.
 */
const HELP: Record<string, string> = {
  server: 'image server: address, address:port or URL',
  image: 'image name',
  staging:
    'download directory, or auto (tmpfs when memory allows, else the target disk), tmpfs or target',
  target: 'root of the system being installed',
  memoryReserve: 'memory auto staging leaves free beside the archive',
  cache: 'local directory or partition (/dev/sdX, LABEL=...) keeping archives across boots',
  node: 'this node’s name on the dashboard (default: host name)',
  seedTimeSeconds: 'keep seeding at most this long after installing, in seconds',
  connectTimeoutSeconds: 'keep trying to reach the server this long, in seconds',
  imageTimeoutSeconds:
    'wait this long, in seconds, for an image the server does not publish yet; 0 fails at once',
  webSeedFallbackSeconds: 'use the server’s web seed after this long without progress, in seconds',
  stallTimeoutSeconds: 'fail after this long without any data, in seconds',
  'swarm.maxConnections': 'peer connections',
  'swarm.uploadSlots': 'peers uploaded to at once',
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

/**
 * `imageswarm install`: parameters from flags, environment and kernel command line,
 * then the install pipeline with progress on the terminal, serial console or as JSON.
 */
export async function runInstall(flags: InstallFlags, logger: Logger): Promise<void> {
  const byKey: Record<string, string | number | boolean | undefined> = {}
  for (const parameter of INSTALL_PARAMETERS) {
    const attribute = new Option(parameter.flag).attributeName()
    const value = flags[attribute]
    // Commander sets --no-report's default (true) itself; only an explicit "no" counts.
    if (parameter.key === 'report') byKey.report = value === false ? false : undefined
    else if (value !== undefined) byKey[parameter.key] = value as string | boolean
  }
  const { config, sources } = resolveInstallParameters({
    flags: byKey,
    env: process.env,
    kernel: await readKernelCmdline(flags.cmdline),
  })
  if (flags.printConfig) {
    const trust = await describeTrust(config)
    process.stdout.write(`${JSON.stringify({ config, sources, trust }, null, 2)}\n`)
    return
  }
  await runInterruptible(
    'install',
    'run the install again; the download resumes from the pieces already in staging',
    (signal) =>
      installImage({
        config,
        logger,
        onEvent: createInstallRenderer(chooseOutputMode(flags.json)),
        signal,
      }),
  )
}

/** `--print-config`'s account of what the node trusts: the root key's id, or the problem. */
async function describeTrust(config: ClientConfig): Promise<Record<string, unknown>> {
  if (config.trustRoot === undefined && config.trustRootKey === undefined) {
    return { signedImagesOnly: false, note: 'no trust root: unsigned images are installed' }
  }
  const floors = {
    ...(config.minSerial === undefined ? {} : { minSerial: config.minSerial }),
    ...(config.minKeyListVersion === undefined
      ? {}
      : { minKeyListVersion: config.minKeyListVersion }),
  }
  try {
    const root = await loadTrustRoot(config)
    return {
      signedImagesOnly: true,
      rootKeyId: root?.publicKey.keyId,
      source: root?.source,
      insecureTestMode: root?.testMode ?? false,
      ...floors,
    }
  } catch (err) {
    return {
      signedImagesOnly: true,
      error: err instanceof ImageSwarmError ? `${err.code}: ${err.message}` : String(err),
      ...floors,
    }
  }
}
