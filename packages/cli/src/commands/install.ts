import { installImage, resolveInstallParameters } from '@imageswarm/client'
import { ImageSwarmError, type Logger, readKernelCmdline } from '@imageswarm/core'
import { chooseOutputMode, createInstallRenderer } from '../install-renderer.js'

export interface InstallFlags {
  server?: string
  image?: string
  staging?: string
  target?: string
  seedTime?: number
  connectTimeout?: number
  webseedFallback?: number
  stallTimeout?: number
  maxConnections?: number
  uploadLimit?: number
  downloadLimit?: number
  force: boolean
  cmdline: string
  json: boolean
  printConfig: boolean
}

/**
 * `imageswarm install`: parameters from flags, environment and kernel command line,
 * then the install pipeline with progress on the terminal, serial console or as JSON.
 */
export async function runInstall(flags: InstallFlags, logger: Logger): Promise<void> {
  const kernel = await readKernelCmdline(flags.cmdline)
  const { config, sources } = resolveInstallParameters({
    flags: {
      server: flags.server,
      image: flags.image,
      staging: flags.staging,
      target: flags.target,
      seedTimeSeconds: flags.seedTime,
    },
    env: process.env,
    kernel,
    rest: {
      force: flags.force,
      ...(flags.connectTimeout === undefined
        ? {}
        : { connectTimeoutSeconds: flags.connectTimeout }),
      ...(flags.webseedFallback === undefined
        ? {}
        : { webSeedFallbackSeconds: flags.webseedFallback }),
      ...(flags.stallTimeout === undefined ? {} : { stallTimeoutSeconds: flags.stallTimeout }),
      swarm: {
        ...(flags.maxConnections === undefined ? {} : { maxConnections: flags.maxConnections }),
        ...(flags.uploadLimit === undefined ? {} : { uploadLimit: flags.uploadLimit }),
        ...(flags.downloadLimit === undefined ? {} : { downloadLimit: flags.downloadLimit }),
      },
    },
  })
  if (flags.printConfig) {
    process.stdout.write(`${JSON.stringify({ config, sources }, null, 2)}\n`)
    return
  }
  const interrupt = new AbortController()
  const onSignal = (signal: NodeJS.Signals) =>
    interrupt.abort(
      new ImageSwarmError('E_INTERRUPTED', `install interrupted by ${signal}`, {
        hint: 'run the install again; the download resumes from the pieces already in staging',
      }),
    )
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    await installImage({
      config,
      logger,
      onEvent: createInstallRenderer(chooseOutputMode(flags.json)),
      signal: interrupt.signal,
    })
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}
