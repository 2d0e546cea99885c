import { normalizeServerUrl } from '@imageswarm/client'
import { type Compression, ImageSwarmError, type Logger } from '@imageswarm/core'
import {
  type InstallRoutesConfig,
  resolveInstallRoutesConfig,
  resolveSeederConfig,
  type SeederConfig,
  StateLock,
  stateDirectoriesOf,
} from '@imageswarm/seeder'
import type { DeploymentEvent } from '@imageswarm/tracker'
import type { ConsoleOutput } from '../console-output.js'
import type { FormatSetting } from '../options.js'
import { PidFile } from '../pid-file.js'
import { deploymentConsoleLine, printServeSummary } from '../serve-console.js'
import { ImageServer, type ServerTlsFiles } from '../server.js'

export interface PublishingFlags {
  image: string[]
  imagesDir: string
  tarballsDir: string
  torrentsDir: string
  updateImage: boolean
  /** Unset: as the image was last published, else zstd (the seeder's `compression`). */
  compression?: Compression
  /** The seeder's `format`: one for every image, or by image name (`--format hpc=squashfs`). */
  format?: FormatSetting
  compressionLevel?: number
  excludeFile?: string
  keepVersions?: number
  pieceLength?: number
  /** The seeder's `keys`: the key directory that signs manifests. */
  keys?: string
  /** The seeder's `manifestLifetime`, in seconds. */
  manifestLifetime?: number
  /** The seeder's `encrypt`: encrypt every archive for the groups in `groupKeys`. */
  encrypt?: boolean
  /** The seeder's `groupKeys`: the group key directory. */
  groupKeys?: string
}

export interface ServeFlags extends Omit<PublishingFlags, 'image'> {
  /** Unset with `--mirror-of` (a mirror serves its primary's images). */
  image?: string[]
  /** The seeder's `mirrorOf`: serve this server's images as a mirror. */
  mirrorOf?: string
  /** The seeder's `mirrorInterval`, in seconds. */
  mirrorInterval?: number
  /** The seeder's `trustRoot`: what a mirror checks its primary's signatures against. */
  trustRoot?: string
  address: string
  advertiseAddress?: string
  port: number
  torrentPort: number
  announceInterval?: number
  maxPeersPerSwarm?: number
  statusPostsPerSecond?: number
  /** The tracker's `deploymentGapSeconds`. */
  deploymentGap?: number
  /** The tracker's `deploymentsKept`. */
  deploymentsKept?: number
  /** The tracker's `dashboardTokenFile`: the dashboard's read-only token. */
  dashboardTokenFile?: string
  /** The tracker's `rackMap`: nodes to racks for the peer handout. */
  rackMap?: string
  maxConnections?: number
  uploadLimit?: number
  /** False with --no-tracker. */
  tracker: boolean
  /** False with --no-first-copy. */
  firstCopy: boolean
  pidFile: string
  bootDir: string
  bootImage?: string
  bootAppend?: string
  scriptsDir: string
  overridesDir: string
  /** The server's `tls.cert`: HTTPS on `--port` with this certificate (PEM). */
  tlsCert?: string
  /** The server's `tls.key`: the certificate's private key (PEM). */
  tlsKey?: string
}

/** `--tls-cert` and `--tls-key` together, or neither (plain HTTP). */
export function serverTlsFrom(
  flags: Pick<ServeFlags, 'tlsCert' | 'tlsKey'>,
): ServerTlsFiles | undefined {
  if (flags.tlsCert === undefined && flags.tlsKey === undefined) return undefined
  if (flags.tlsCert === undefined || flags.tlsKey === undefined) {
    const missing = flags.tlsCert === undefined ? '--tls-cert' : '--tls-key'
    throw new ImageSwarmError(
      'E_USAGE',
      `HTTPS needs both --tls-cert and --tls-key; ${missing} is missing`,
      {
        path: missing,
        hint: 'make both with imageswarm key tls-generate --output DIR (DIR/tls.crt, DIR/tls.key), or give neither for plain HTTP',
      },
    )
  }
  return { cert: flags.tlsCert, key: flags.tlsKey }
}

/**
 * The images `serve` publishes: `--image`, or none for a mirror (`--mirror-of`), which serves
 * its primary's. Both, or neither, is a usage error.
 */
export function imagesToServe(
  flags: Pick<ServeFlags, 'image' | 'mirrorOf' | 'trustRoot'>,
): string[] {
  const images = flags.image ?? []
  if (flags.mirrorOf !== undefined && images.length > 0) {
    throw new ImageSwarmError('E_USAGE', '--mirror-of and --image do not go together', {
      path: '--mirror-of',
      hint: "a mirror serves its primary's images: publish the image on the primary (--image there), or serve it from a server that is not a mirror",
    })
  }
  if (flags.mirrorOf === undefined && images.length === 0) {
    throw new ImageSwarmError('E_USAGE', 'serve needs --image NAME (or --mirror-of URL)', {
      path: '--image',
      hint: 'name the images to publish (--image compute,login), or the server to mirror (--mirror-of http://10.0.0.1:6969)',
    })
  }
  if (flags.trustRoot !== undefined && flags.mirrorOf === undefined) {
    throw new ImageSwarmError('E_USAGE', '--trust-root is for a mirror (--mirror-of)', {
      path: '--trust-root',
      hint: "a server signs with --keys; a mirror checks its primary's signatures with --trust-root",
    })
  }
  return images
}

/**
 * The seeder's config from the flags: each flag and its config key share one name.
 * `--encrypt` needs `--keys` (an unsigned manifest's wrappings could be swapped by anyone
 * in the way) and `--group-keys` (the groups to encrypt for): refused otherwise.
 */
export function seederConfigFrom(
  flags: Omit<PublishingFlags, 'image'> & Partial<ServeFlags>,
): SeederConfig {
  const config = resolveSeederFlags(flags)
  if (config.encrypt && config.keys === undefined) {
    throw new ImageSwarmError('E_USAGE', '--encrypt needs --keys: encrypted images are signed', {
      path: '--encrypt',
      hint: 'give the key directory (imageswarm key generate --output DIR) with --keys DIR',
    })
  }
  if (config.encrypt && config.groupKeys === undefined) {
    throw new ImageSwarmError(
      'E_USAGE',
      '--encrypt needs --group-keys: the groups to encrypt for',
      {
        path: '--encrypt',
        hint: 'make a group key with imageswarm key group add NAME --group-keys DIR and give --group-keys DIR',
      },
    )
  }
  return config
}

function resolveSeederFlags(
  flags: Omit<PublishingFlags, 'image'> & Partial<ServeFlags>,
): SeederConfig {
  return resolveSeederConfig({
    imagesDir: flags.imagesDir,
    tarballsDir: flags.tarballsDir,
    torrentsDir: flags.torrentsDir,
    ...(flags.compression === undefined ? {} : { compression: flags.compression }),
    ...(flags.format === undefined ? {} : { format: flags.format }),
    ...(flags.compressionLevel === undefined ? {} : { compressionLevel: flags.compressionLevel }),
    ...(flags.excludeFile === undefined ? {} : { excludeFile: flags.excludeFile }),
    ...(flags.keepVersions === undefined ? {} : { keepVersions: flags.keepVersions }),
    ...(flags.pieceLength === undefined ? {} : { pieceLength: flags.pieceLength }),
    ...(flags.keys === undefined ? {} : { keys: flags.keys }),
    ...(flags.manifestLifetime === undefined ? {} : { manifestLifetime: flags.manifestLifetime }),
    ...(flags.encrypt === undefined ? {} : { encrypt: flags.encrypt }),
    ...(flags.groupKeys === undefined ? {} : { groupKeys: flags.groupKeys }),
    ...(flags.torrentPort === undefined ? {} : { torrentPort: flags.torrentPort }),
    ...(flags.mirrorOf === undefined
      ? {}
      : { mirrorOf: normalizeServerUrl(flags.mirrorOf, '--mirror-of') }),
    ...(flags.mirrorInterval === undefined ? {} : { mirrorInterval: flags.mirrorInterval }),
    ...(flags.trustRoot === undefined ? {} : { trustRoot: flags.trustRoot }),
    swarm: {
      ...(flags.firstCopy === undefined ? {} : { firstCopy: flags.firstCopy }),
      ...(flags.maxConnections === undefined ? {} : { maxConnections: flags.maxConnections }),
      ...(flags.uploadLimit === undefined ? {} : { uploadLimit: flags.uploadLimit }),
    },
  })
}

/** What bare nodes are handed besides the image (boot files, node config): see InstallRoutes. */
export function installRoutesConfigFrom(flags: ServeFlags): InstallRoutesConfig {
  return resolveInstallRoutesConfig({
    bootDir: flags.bootDir,
    scriptsDir: flags.scriptsDir,
    overridesDir: flags.overridesDir,
    ...(flags.bootImage === undefined ? {} : { bootImage: flags.bootImage }),
    ...(flags.bootAppend === undefined ? {} : { bootAppend: flags.bootAppend }),
  })
}

/**
 * Locks the state directories (tarballs, torrents) for this process, or refuses with
 * E_SERVER_RUNNING naming the process that holds them: see `StateLock`.
 */
export function lockStateDirectories(config: SeederConfig, command: string): Promise<StateLock> {
  return StateLock.acquire(stateDirectoriesOf(config), command)
}

/**
 * `imageswarm serve`: publishes the images, then runs tracker, seeder and HTTP in the
 * foreground until SIGINT or SIGTERM (`imageswarm stop`), and shuts down cleanly. It
 * holds the state directories' lock and the PID file from start to end.
 */
export async function runServe(
  flags: ServeFlags,
  logger: Logger,
  output?: ConsoleOutput,
  /** The console shows the info log: the stage, deployment and stop lines are in it already. */
  infoLogShown = false,
): Promise<void> {
  const ownLines = infoLogShown ? undefined : output
  const images = imagesToServe(flags)
  const seeder = seederConfigFrom(flags)
  const tls = serverTlsFrom(flags)
  const server = new ImageServer({
    images,
    seeder,
    install: installRoutesConfigFrom(flags),
    tracker: {
      ...(flags.announceInterval === undefined
        ? {}
        : { announceIntervalSeconds: flags.announceInterval }),
      ...(flags.maxPeersPerSwarm === undefined ? {} : { maxPeersPerSwarm: flags.maxPeersPerSwarm }),
      ...(flags.statusPostsPerSecond === undefined
        ? {}
        : { statusPostsPerSecond: flags.statusPostsPerSecond }),
      ...(flags.deploymentGap === undefined ? {} : { deploymentGapSeconds: flags.deploymentGap }),
      ...(flags.deploymentsKept === undefined ? {} : { deploymentsKept: flags.deploymentsKept }),
      ...(flags.dashboardTokenFile === undefined
        ? {}
        : { dashboardTokenFile: flags.dashboardTokenFile }),
      ...(flags.rackMap === undefined ? {} : { rackMap: flags.rackMap }),
    },
    trackerEnabled: flags.tracker,
    address: flags.address,
    port: flags.port,
    ...(flags.advertiseAddress ? { advertiseAddress: flags.advertiseAddress } : {}),
    ...(tls ? { tls } : {}),
    update: flags.updateImage,
    logger,
    ...(ownLines
      ? {
          onStage: (image: string, stage: string) => ownLines.line(`${image}: ${stage}`),
          onDeployment: (event: DeploymentEvent) => {
            const line = deploymentConsoleLine(event)
            if (line !== undefined) ownLines.line(line)
          },
        }
      : {}),
  })
  const lock = await lockStateDirectories(seeder, 'serve')
  let pidFile: PidFile
  try {
    pidFile = await PidFile.claim(flags.pidFile)
  } catch (err) {
    await lock.release()
    throw err
  }
  const stopping = new AbortController()
  const stopped = new Promise<NodeJS.Signals>((resolve) => {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      process.once(signal, () => {
        stopping.abort()
        resolve(signal)
      })
    }
  })
  try {
    const url = await Promise.race([server.listen(stopping.signal), stopped])
    if (output && !stopping.signal.aborted && typeof url === 'string') {
      await printServeSummary(output, {
        url,
        images: server.published,
        bootDir: flags.bootDir,
        ...(flags.bootImage === undefined ? {} : { bootImage: flags.bootImage }),
        pid: process.pid,
      })
    }
    const signal = await stopped
    logger.info({ signal }, `${signal}: stopping`)
    ownLines?.line(`${signal}: stopping`)
  } finally {
    await server.close()
    await pidFile.release()
    await lock.release()
    logger.info('image server stopped')
    ownLines?.line('image server stopped')
  }
}
