import { readFile } from 'node:fs/promises'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { networkInterfaces } from 'node:os'
import { ServerConnection } from '@imageswarm/client'
import {
  type DashboardServers,
  deltaSwarmName,
  errnoOf,
  type GroupKey,
  ImageSwarmError,
  type Logger,
  parseInfoHash,
  pinsOf,
  readCertificatePem,
  readGroupKeys,
  type ServerDescription,
  WIRE,
} from '@imageswarm/core'
import {
  GroupKeyRoutes,
  handleImageRequest,
  handleKeyListRequest,
  handleMirrorRequest,
  ImageCatalog,
  ImageMirror,
  ImageSeeder,
  InstallRoutes,
  type InstallRoutesConfig,
  ManifestSigner,
  type PublishedImage,
  publishImage,
  resolveInstallRoutesConfig,
  type SeederConfig,
  ServerRegistry,
  ServerWatch,
  SignatureRenewal,
  sendError,
  sendJson,
} from '@imageswarm/seeder'
import {
  clientAddress,
  createTracker,
  type DeploymentEvent,
  resolveTrackerConfig,
  type Tracker,
  type TrackerConfig,
} from '@imageswarm/tracker'
import { describeDeploymentEvent } from './serve-console.js'

/** How often the published archives are checked for a change in place: an fstat each. */
const ARCHIVE_CHECK_MS = 10_000

export interface ImageServerOptions {
  images: readonly string[]
  seeder: SeederConfig
  /** Boot files, node config, overrides, post-install scripts; default: SystemImager's directories. */
  install?: InstallRoutesConfig
  tracker?: Partial<TrackerConfig>
  /** False serves images without a tracker: announces fail and clients use the web seed. */
  trackerEnabled?: boolean
  /** Address to listen on; `0.0.0.0` listens everywhere. */
  address: string
  port: number
  /** The address clients are told to use; default: `address`, or this host's first LAN address. */
  advertiseAddress?: string
  /**
   * HTTPS for every endpoint on the same port (`--tls-cert`, `--tls-key`: PEM files, e.g.
   * from `imageswarm key tls-generate`); without it, plain HTTP for a trusted install network.
   */
  tls?: ServerTlsFiles
  update: boolean
  logger: Logger
  /** Each image's publishing stage as it starts (a person's console shows them). */
  onStage?: (image: string, stage: string) => void
  /** A deployment's beginning, end and finished nodes (see `TrackerOptions.onDeployment`). */
  onDeployment?: (event: DeploymentEvent) => void
}

/** The server's certificate and its private key, PEM files. */
export interface ServerTlsFiles {
  cert: string
  key: string
}

/**
 * The image server: one HTTP (or, with `tls`, HTTPS) endpoint in front of the tracker
 * (announce, scrape) and the seeder's routes (image list, manifests, torrents, archives as
 * web seeds), plus the BitTorrent seeder itself. Built first, then listening
 * (`listen()`); it answers while its images are still being published (503 with
 * `Retry-After` for those).
 */
export class ImageServer {
  readonly #options: ImageServerOptions
  readonly #tracker: Tracker
  readonly #catalog: ImageCatalog
  /** The servers serving the same images (mirrors, the primary): every torrent lists them. */
  readonly #registry: ServerRegistry
  /** With `seeder.mirrorOf`: keeps this server a copy of the primary's images. */
  #mirror: ImageMirror | undefined
  /** Checks the other servers every few seconds: a dead one's share of the first copy is
   * taken over (see PieceShare). */
  #watch: ServerWatch | undefined
  readonly #http: Server | HttpsServer
  #install: InstallRoutes | undefined
  #url: string | undefined
  #seeder: ImageSeeder | undefined
  #archiveWatch: NodeJS.Timeout | undefined
  /** With `seeder.keys`: signs every manifest, serves the key list (docs/trust.md). */
  #signer: ManifestSigner | undefined
  #renewal: SignatureRenewal | undefined
  /** With `seeder.groupKeys`: `GET /keys/groups/NAME` for nodes that prove their secret. */
  readonly #groupKeys: GroupKeyRoutes | undefined
  /** Over HTTPS: the seeder's announces to this server's own tracker, pinned to its own
   * certificate (the advertised address need not be one of the certificate's names). */
  #self: ServerConnection | undefined

  get #trackerEnabled(): boolean {
    return this.#options.trackerEnabled !== false
  }

  constructor(options: ImageServerOptions) {
    this.#options = options
    // The web seed's bytes are held to the same --upload-limit as the seeder's.
    const imageRoutesLogger = options.logger.child({ component: 'image routes' })
    this.#registry = new ServerRegistry({
      self: () => this.#url,
      ownImages: () => this.#catalog.published.map((image) => image.manifest.infoHash),
    })
    this.#catalog = new ImageCatalog({
      uploadLimit: options.seeder.swarm.uploadLimit,
      logger: imageRoutesLogger,
      serversFor: (infoHash) => this.#registry.serversFor(infoHash),
    })
    for (const image of options.images) this.#catalog.expect(image)
    this.#tracker = createTracker({
      config: options.tracker ?? {},
      logger: options.logger.child({ component: 'tracker' }),
      // The server's own upload count (BitTorrent and web seed), fresher than its
      // announces, for the dashboard.
      serverUpload: () => this.#serverUploads(),
      onDeployment: (event) => this.#deploymentEvent(event),
      servers: () => this.#dashboardServers(),
    })
    const handle = (req: IncomingMessage, res: ServerResponse) => {
      try {
        if (this.#trackerEnabled && this.#tracker.handle(req, res)) return
        // The dashboard (/, /assets/*, /api/*, /metrics), with or without the tracker.
        if (this.#tracker.handleDashboard(req, res)) return
        if (handleImageRequest(this.#catalog, req, res, imageRoutesLogger)) return
        // A mirror serves its primary's key list, as it serves its primary's manifests.
        if (handleKeyListRequest(this.#signer ?? this.#mirror?.keyListSource, req, res)) return
        if (handleMirrorRequest(this.#registry, req, res, options.logger)) return
        if (this.#groupKeys?.handle(req, res)) return
        if (this.#install?.handle(req, res)) return
        if (req.url === WIRE.health) return sendJson(res, 200, { ok: true })
        if (req.url === WIRE.server) return this.#describe(res)
        sendError(
          res,
          404,
          new ImageSwarmError('E_UNKNOWN_IMAGE', `no such endpoint: ${req.url}`, {
            hint: `see ${WIRE.images} for the published images`,
          }),
        )
      } catch (err) {
        options.logger.error({ err, url: req.url }, 'request failed')
        if (!res.headersSent) res.writeHead(500).end()
      }
    }
    // One port, one set of routes, either way; the certificate is loaded in listen().
    this.#http = options.tls ? createHttpsServer(handle) : createServer(handle)
    this.#http.keepAliveTimeout = 65_000
    this.#groupKeys =
      options.seeder.groupKeys === undefined
        ? undefined
        : new GroupKeyRoutes({
            dir: options.seeder.groupKeys,
            logger: options.logger.child({ component: 'group keys' }),
          })
  }

  /**
   * Loads `--tls-cert`/`--tls-key` into the HTTPS server, refusing a file that cannot be
   * read, is not PEM or does not belong to the other (E_KEY_FILE_INVALID); warns when the
   * key list this server serves does not pin the certificate (nodes with a root key would
   * refuse it).
   */
  async #loadCertificate(files: ServerTlsFiles): Promise<{ sha256: string }> {
    const [cert, key] = await Promise.all([
      readTlsFile(files.cert, 'certificate'),
      readTlsFile(files.key, 'private key'),
    ])
    const { sha256, validTo } = readCertificatePem(cert, files.cert)
    try {
      const https = this.#http as HttpsServer
      https.setSecureContext({ cert, key })
    } catch (err) {
      throw new ImageSwarmError(
        'E_KEY_FILE_INVALID',
        `${files.key} and ${files.cert} cannot serve HTTPS together: ${err instanceof Error ? err.message : String(err)}`,
        {
          operation: 'load TLS certificate',
          path: files.key,
          hint: 'give the private key that belongs to the certificate (imageswarm key tls-generate writes both)',
          cause: err,
        },
      )
    }
    const pins = this.#signer ? pinsOf(this.#signer.keyList) : []
    this.#options.logger.info({ cert: files.cert, sha256, validTo }, 'serving HTTPS')
    if (this.#signer && !pins.includes(sha256)) {
      this.#options.logger.warn(
        { sha256, pins, keyListVersion: this.#signer.keyList.version },
        'the key list does not pin this certificate: nodes with a root key refuse it (imageswarm key tls-pin --keys DIR --cert FILE, then publish the key list)',
      )
    }
    return { sha256 }
  }

  /** `GET /server.json`: where the seeder listens, so clients dial the server themselves
   * and trust that connection alone as the server (see `ServerDescription`). */
  #describe(res: ServerResponse): void {
    if (!this.#seeder) {
      res.setHeader('retry-after', '1')
      sendError(
        res,
        503,
        new ImageSwarmError('E_IMAGE_PUBLISHING', 'the seeder is starting', {
          hint: 'ask again in a second',
        }),
      )
      return
    }
    const description: ServerDescription = { seeder: { port: this.#seeder.torrentPort } }
    sendJson(res, 200, description)
  }

  /** Every event in the structured log; a person's console gets what `onDeployment` shows. */
  #deploymentEvent(event: DeploymentEvent): void {
    const { deployment } = event
    const message = describeDeploymentEvent(event)
    const fields = {
      image: deployment.image,
      deployment: deployment.id,
      ...(event.kind === 'ended'
        ? { summary: deployment }
        : { node: event.node.node, mac: event.node.mac, address: event.node.address }),
      ...(event.kind === 'node-finished'
        ? { seconds: event.node.seconds, error: event.node.error }
        : {}),
    }
    if (event.kind === 'node-finished' && event.node.state === 'failed') {
      this.#options.logger.warn(fields, message)
    } else this.#options.logger.info(fields, message)
    this.#options.onDeployment?.(event)
  }

  /** What the server uploaded per image: BitTorrent (the seeder) plus HTTP (the web seed). */
  #serverUploads(): { infoHash: string; uploaded: number }[] {
    const seeded = new Map(
      (this.#seeder?.stats() ?? []).map((stats) => [stats.infoHash, stats.uploaded]),
    )
    return this.#catalog.webSeedUploads().map(({ infoHash, uploaded }) => ({
      infoHash,
      uploaded: uploaded + (seeded.get(infoHash) ?? 0),
    }))
  }

  /**
   * Listens, then publishes and seeds every image; resolves with the server's base URL.
   * While an image is being published its routes answer 503 (`E_IMAGE_PUBLISHING`).
   */
  async listen(signal?: AbortSignal): Promise<string> {
    const { logger, seeder } = this.#options
    // Before listening: a key directory that cannot sign stops the server here.
    if (seeder.keys !== undefined) {
      this.#signer = await ManifestSigner.open({
        keys: seeder.keys,
        manifestLifetime: seeder.manifestLifetime,
        logger: logger.child({ component: 'signing' }),
      })
      this.#renewal = new SignatureRenewal({
        catalog: this.#catalog,
        signer: this.#signer,
        logger: logger.child({ component: 'signing' }),
      })
    }
    // Before listening: --encrypt without a usable group key stops the server here.
    const encryption = seeder.encrypt ? await encryptionFor(seeder) : undefined
    if (encryption && !this.#options.tls) {
      logger.warn(
        { groups: encryption.groupKeys.map((key) => key.group) },
        "encrypting archives over plain HTTP (no --tls-cert): group keys go out sealed to each node's secret, but node configs, status posts and the server's identity are not protected: keep the install network trusted, or serve with --tls-cert",
      )
    }
    // Before listening: a disks layout the installer cannot apply stops the server here
    // (E_LAYOUT_INVALID naming the file), not on every node that would use it.
    // The tracker's rule for a node's address: X-Forwarded-For only with trustProxy.
    const trustProxy = resolveTrackerConfig(this.#options.tracker ?? {}).trustProxy
    this.#install = await InstallRoutes.create({
      config: this.#options.install ?? resolveInstallRoutesConfig({}),
      catalog: this.#catalog,
      archiveDir: seeder.tarballsDir,
      serverUrl: () => this.#url,
      nodeAddress: (req) => clientAddress(req, trustProxy),
      logger: logger.child({ component: 'install routes' }),
      // Node configs are signed with the manifests' key (docs/trust.md).
      ...(this.#signer ? { signer: this.#signer } : {}),
    })
    // Before listening: a certificate or key that cannot be used stops the server here.
    const certificate = this.#options.tls
      ? await this.#loadCertificate(this.#options.tls)
      : undefined
    await new Promise<void>((resolve, reject) => {
      this.#http.once('error', (err) => reject(listenError(err, this.#options)))
      this.#http.listen(this.#options.port, this.#options.address, () => resolve())
    })
    const port = (this.#http.address() as AddressInfo).port
    // The .torrent's announce and web seed URLs derive from this: https with --tls-cert.
    const url = `${certificate ? 'https' : 'http'}://${formatHost(this.advertisedAddress())}:${port}`
    this.#url = url
    if (certificate) {
      this.#self = new ServerConnection(url)
      this.#self.pin([certificate.sha256])
    }
    logger.info(
      {
        url,
        listen: `${this.#options.address}:${port}`,
        ...(certificate ? { tlsCertificate: certificate.sha256 } : {}),
      },
      'image server listening',
    )
    this.#seeder = await ImageSeeder.start({
      settings: seeder.swarm,
      torrentPort: seeder.torrentPort,
      // One --upload-limit for the server: BitTorrent and the web seed draw on one budget.
      uploadBucket: this.#catalog.uploadBudget?.bucket,
      ...(this.#self?.dispatcher ? { dispatcher: this.#self.dispatcher } : {}),
      // Servers of the same image split its first copy, in the same order everywhere.
      shareOf: (infoHash) => {
        const servers = this.#registry.serversFor(infoHash).sort()
        const position = servers.indexOf(url)
        return position === -1 ? { position: 0, count: 1 } : { position, count: servers.length }
      },
      logger: logger.child({ component: 'seeder' }),
    })
    // Manifests are signed again at half their lifetime, and when the key list changes;
    // from the first one published on, as packing the others may take longer than that.
    this.#renewal?.start()
    for (const image of new Set(this.#options.images)) {
      let published: PublishedImage | undefined
      try {
        published = await publishImage({
          image,
          config: seeder,
          serverUrl: url,
          update: this.#options.update,
          logger: logger.child({ component: 'publish', image }),
          onStage: (stage) => {
            this.#catalog.advance(image, stage)
            this.#options.onStage?.(image, stage)
          },
          ...(signal ? { signal } : {}),
          ...(this.#signer ? { signer: this.#signer } : {}),
          ...(encryption ? { encryption } : {}),
        })
        this.#catalog.advance(image, 'starting to seed it')
        const { manifest } = published
        this.#tracker.publish(manifest.infoHash, manifest.name, manifest.size)
        await this.#seeder.seed(published)
        // Each delta to this version is a torrent of its own, shared by the nodes updating
        // from the same version.
        for (const delta of published.versions?.deltas ?? []) {
          const { descriptor } = delta
          this.#tracker.publish(
            parseInfoHash(descriptor.infoHash),
            deltaSwarmName(manifest.name, descriptor.from, descriptor.to),
            descriptor.size,
          )
          await this.#seeder.seedDelta(manifest.name, delta)
        }
      } catch (err) {
        this.#catalog.abandon(image)
        await published?.archive.close()
        throw err
      }
      // Last: a node that gets the manifest finds the tracker and the seeder ready.
      this.#catalog.add(published)
    }
    this.#watch = new ServerWatch({
      registry: this.#registry,
      logger: logger.child({ component: 'servers' }),
    })
    this.#watch.start()
    if (seeder.mirrorOf !== undefined) {
      this.#mirror = new ImageMirror({
        config: { ...seeder, mirrorOf: seeder.mirrorOf },
        self: () => this.#url,
        seeder: this.#seeder,
        catalog: this.#catalog,
        registry: this.#registry,
        serve: (image) => this.#serveMirrored(image),
        logger: logger.child({ component: 'mirror' }),
      })
      await this.#mirror.start()
      logger.info(
        { primary: this.#mirror.primary, intervalSeconds: seeder.mirrorInterval },
        'mirroring the primary',
      )
    }
    // The seeder serves from the same held files without checking them: an archive
    // rewritten in place is logged within this interval even if no web seed asks for it.
    this.#archiveWatch = setInterval(() => void this.#catalog.checkArchives(), ARCHIVE_CHECK_MS)
    this.#archiveWatch.unref()
    logger.info(
      { images: this.published.map((image) => image.manifest.name), url },
      'serving images',
    )
    return url
  }

  /** The dashboard's list of servers: this one, its primary (a mirror), the mirrors. */
  #dashboardServers(): DashboardServers {
    const primary = this.#options.seeder.mirrorOf
    return {
      servers: this.#registry.list().servers.map((entry) => ({
        ...entry,
        role:
          entry.url === this.#url ? 'this server' : entry.url === primary ? 'primary' : 'mirror',
      })),
    }
  }

  /** A mirrored image (or a new manifest of one) into service, the version it replaces out. */
  async #serveMirrored(image: PublishedImage): Promise<void> {
    const seeder = this.#seeder
    if (!seeder) throw new Error('internal error: mirroring before the seeder started')
    const { manifest } = image
    const previous = this.#catalog.get(manifest.name)
    this.#tracker.publish(manifest.infoHash, manifest.name, manifest.size)
    await seeder.seed(image)
    // The old version's swarm reads its archive, which the catalog closes when it is replaced.
    const replaced = previous && previous.manifest.infoHash !== manifest.infoHash
    if (replaced) await seeder.unseed(previous.manifest.infoHash)
    this.#catalog.add(image)
    if (replaced) this.#tracker.unpublish(previous.manifest.infoHash)
  }

  get published(): readonly PublishedImage[] {
    return this.#catalog.published
  }

  stats() {
    return { tracker: this.#tracker.stats(), seeder: this.#seeder?.stats() ?? [] }
  }

  advertisedAddress(): string {
    const { advertiseAddress, address } = this.#options
    if (advertiseAddress) return advertiseAddress
    if (address !== '0.0.0.0' && address !== '::') return address
    return firstLanAddress() ?? '127.0.0.1'
  }

  async close(): Promise<void> {
    clearInterval(this.#archiveWatch)
    this.#watch?.stop()
    await this.#mirror?.stop()
    await this.#renewal?.stop()
    this.#http.closeAllConnections()
    await new Promise<void>((resolve) => this.#http.close(() => resolve()))
    await this.#seeder?.close()
    await this.#self?.close()
    await this.#tracker.close()
    await this.#install?.close()
    await this.#catalog.close()
  }
}

/**
 * The groups every archive is encrypted for (`--encrypt --group-keys DIR`): the current
 * group keys in DIR; none is a usage error (an archive nobody can open).
 */
export async function encryptionFor(
  seeder: SeederConfig,
): Promise<{ groupKeys: readonly GroupKey[] }> {
  const dir = seeder.groupKeys
  const groupKeys = dir === undefined ? [] : await readGroupKeys(dir)
  if (groupKeys.length === 0) {
    throw new ImageSwarmError('E_USAGE', `--encrypt: no group keys in ${dir ?? '--group-keys'}`, {
      path: '--group-keys',
      hint: 'make one with imageswarm key group add NAME --group-keys DIR',
    })
  }
  return { groupKeys }
}

export function firstLanAddress(): string | undefined {
  for (const addresses of Object.values(networkInterfaces())) {
    for (const info of addresses ?? []) {
      if (info.family === 'IPv4' && !info.internal) return info.address
    }
  }
  return undefined
}

function formatHost(address: string): string {
  return address.includes(':') ? `[${address}]` : address
}

async function readTlsFile(path: string, what: string): Promise<Buffer> {
  try {
    return await readFile(path)
  } catch (err) {
    throw new ImageSwarmError(
      'E_KEY_FILE_INVALID',
      `TLS ${what} ${path} cannot be read (${errnoOf(err) ?? String(err)})`,
      {
        operation: 'load TLS certificate',
        path,
        hint: 'give --tls-cert and --tls-key as PEM files (imageswarm key tls-generate --output DIR writes DIR/tls.crt and DIR/tls.key)',
        cause: err,
      },
    )
  }
}

function listenError(err: NodeJS.ErrnoException, options: ImageServerOptions): ImageSwarmError {
  const where = `${options.address}:${options.port}`
  const hint =
    err.code === 'EADDRINUSE'
      ? 'another server uses that port: stop it (imageswarm stop) or choose --port'
      : 'check --address and --port'
  return new ImageSwarmError('E_SERVER_RUNNING', `cannot listen on ${where}: ${err.code}`, {
    operation: 'listen',
    path: where,
    hint,
    cause: err,
  })
}
