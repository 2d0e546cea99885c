import type { IncomingMessage, ServerResponse } from 'node:http'
import { pipeline } from 'node:stream/promises'
import {
  BOOT_PATHS,
  ImageSwarmError,
  INSTALL_PATHS,
  type Logger,
  parseImageName,
  parseMac,
  silentLogger,
} from '@imageswarm/core'
import { BootFiles } from './boot-files.js'
import type { ImageCatalog } from './catalog.js'
import { type HeldFile, hashHandle } from './held-file.js'
import { PUBLISHING_RETRY_AFTER_SECONDS, sendBytes, sendError, sendJson } from './image-routes.js'
import type { InstallRoutesConfig } from './install-config.js'
import { renderFailureScript, renderIdentifyScript, renderInstallScript } from './ipxe-script.js'
import {
  type NodeConfigAnswer,
  type NodeConfigSigner,
  signNodeConfigAnswer,
} from './node-config-signing.js'
import { OverrideArchives } from './override-archives.js'
import { type ImageChoice, type NodeRequest, SystemImagerScripts } from './systemimager-scripts.js'
import { serveArchive } from './web-seed.js'

const OVERRIDE_ROUTE = /^\/install\/overrides\/([^/]+)\.tar$/
const POST_INSTALL_ROUTE = /^\/install\/post-install\/([^/]+)$/
const HOSTNAME = /^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$/
const LAYOUT_NAME = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/

export interface InstallRoutesOptions {
  config: InstallRoutesConfig
  /** The images the server publishes (and is publishing): what nodes may install. */
  catalog: ImageCatalog
  /** Where packed overrides go (the server's tarballs directory, which it holds locked). */
  archiveDir: string
  /** The server's base URL as nodes reach it (the advertised address); undefined before it listens. */
  serverUrl: () => string | undefined
  /**
   * The address a request came from, for scripts/hosts: the socket's peer by default; the
   * server passes the tracker's rule (X-Forwarded-For only with trustProxy).
   */
  nodeAddress?: (req: IncomingMessage) => string
  logger?: Logger
  /** See OverrideArchives; tests set 0. */
  fingerprintIntervalMs?: number
  /**
   * With `serve --keys`: signs every node config with the manifests' key, binding it to the
   * node's MAC, the image's serial and the digests of its overrides and scripts.
   */
  signer?: NodeConfigSigner
}

/** Bytes handed out by these routes since the server started, by kind. */
export interface InstallUploads {
  boot: number
  overrides: number
}

/**
 * What bare nodes fetch from the image server besides the image (core's BOOT_PATHS and
 * INSTALL_PATHS):
 *
 * | route | answer |
 * | --- | --- |
 * | `GET /boot/ipxe[?mac=&hostname=]` | iPXE script booting the installer for the node's image |
 * | `GET\|HEAD /boot/vmlinuz`, `/boot/initrd.img` | the installer's kernel and ramdisk (ranges, ETag) |
 * | `GET /install/node.json?image=&mac=&hostname=&layout=` | NodeInstallConfig (with `signed` from a signing server) |
 * | `GET /install/node.json.minisig?same query` | its minisign signature; 404 unsigned |
 * | `GET\|HEAD /install/overrides/NAME.tar` | the override directory as a tar archive |
 * | `GET /install/post-install/FILE` | a post-install script |
 *
 * Built with `create`, which reads and checks every disks layout (E_LAYOUT_INVALID) and
 * opens the boot files (a missing ramdisk is logged: its routes answer 404).
 */
export class InstallRoutes {
  readonly #options: InstallRoutesOptions
  readonly #logger: Logger
  readonly #boot: BootFiles
  readonly #overrides: OverrideArchives
  readonly #scripts: SystemImagerScripts
  readonly #uploads: InstallUploads = { boot: 0, overrides: 0 }

  private constructor(
    options: InstallRoutesOptions,
    boot: BootFiles,
    overrides: OverrideArchives,
    scripts: SystemImagerScripts,
  ) {
    this.#options = options
    this.#logger = options.logger ?? silentLogger()
    this.#boot = boot
    this.#overrides = overrides
    this.#scripts = scripts
  }

  static async create(options: InstallRoutesOptions): Promise<InstallRoutes> {
    const logger = options.logger ?? silentLogger()
    const { config } = options
    const served = servedImages(options.catalog)
    if (config.bootImage !== undefined && !served.includes(config.bootImage)) {
      throw new ImageSwarmError(
        'E_USAGE',
        `--boot-image ${config.bootImage} is not one of the images this server serves (${served.join(', ') || 'none'})`,
        {
          path: config.bootImage,
          hint: `add --image ${config.bootImage}, or name one of those`,
        },
      )
    }
    const overrides = new OverrideArchives({
      overridesDir: config.overridesDir,
      archiveDir: options.archiveDir,
      logger,
      ...(options.fingerprintIntervalMs === undefined
        ? {}
        : { fingerprintIntervalMs: options.fingerprintIntervalMs }),
    })
    const scripts = await SystemImagerScripts.load({
      scriptsDir: config.scriptsDir,
      overrides,
      logger,
    })
    const boot = await BootFiles.open(config.bootDir, logger)
    return new InstallRoutes(options, boot, overrides, scripts)
  }

  get uploads(): InstallUploads {
    return { ...this.#uploads }
  }

  /** Answers the request if it is for one of these routes; false otherwise. */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    const url = new URL(req.url ?? '/', 'http://server')
    const path = url.pathname
    if (!path.startsWith('/boot/') && !path.startsWith('/install/')) return false
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end()
      return true
    }
    this.#route(req, res, url).catch((err: unknown) => {
      if (err instanceof ImageSwarmError) {
        const status = statusOf(err)
        if (status >= 500)
          this.#logger.error(
            { url: req.url, err: err.message, hint: err.hint },
            'install route failed',
          )
        if (status === 503 && !res.headersSent) {
          res.setHeader('retry-after', String(PUBLISHING_RETRY_AFTER_SECONDS))
        }
        sendError(res, status, err)
        return
      }
      // An internal error, not the node's: logged in full, answered 500 without details.
      this.#logger.error({ err, url: req.url }, 'install route failed')
      if (res.headersSent) res.destroy()
      else res.writeHead(500).end()
    })
    return true
  }

  async #route(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const path = url.pathname
    if (path === BOOT_PATHS.kernel || path === BOOT_PATHS.initrd) {
      const set = await this.#bootSet()
      await this.#serveHeld(set[path === BOOT_PATHS.kernel ? 'kernel' : 'initrd'], req, res, 'boot')
      return
    }
    if (path === BOOT_PATHS.ipxe) {
      await this.#bootSet()
      sendScript(res, req, await this.#ipxeScript(req, url))
      return
    }
    if (path === INSTALL_PATHS.nodeSignature) {
      const answer = await this.#nodeConfig(nodeRequest(url, this.#address(req)))
      if (answer.signature === undefined) {
        throw new ImageSwarmError(
          'E_SIGNATURE_MISSING',
          `the node config for image ${answer.config.image} is not signed`,
          {
            path: INSTALL_PATHS.nodeSignature,
            hint: 'node configs are signed by a server started with --keys DIR, for images whose manifests it signed',
          },
        )
      }
      sendScript(res, req, answer.signature)
      return
    }
    if (path === INSTALL_PATHS.node) {
      const request = nodeRequest(url, this.#address(req))
      const answer = await this.#nodeConfig(request)
      const { config } = answer
      this.#logger.info(
        {
          node: config.hostname,
          address: request.address,
          image: config.image,
          groups: config.groups,
          layout: config.layoutName,
          overrides: config.overrides,
          postInstall: config.postInstall,
          signed: answer.signature !== undefined,
        },
        'node install config',
      )
      if (answer.bytes === undefined) sendJson(res, 200, config)
      else sendBytes(req, res, answer.bytes, 'application/json; charset=utf-8')
      return
    }
    const override = OVERRIDE_ROUTE.exec(path)
    if (override) {
      const file = await this.#overrides.archive(decode(override[1]!))
      await this.#serveHeld(file, req, res, 'overrides')
      return
    }
    const script = POST_INSTALL_ROUTE.exec(path)
    if (script) {
      await this.#sendPostInstall(decode(script[1]!), req, res)
      return
    }
    throw new ImageSwarmError('E_IMAGE_NOT_FOUND', `no such endpoint: ${path}`, {
      path,
      hint: `nodes fetch ${BOOT_PATHS.ipxe}, ${BOOT_PATHS.kernel}, ${BOOT_PATHS.initrd}, ${INSTALL_PATHS.node}, ${INSTALL_PATHS.nodeSignature}, /install/overrides/NAME.tar and /install/post-install/FILE`,
    })
  }

  /** The node's config, signed when the server signs (see signNodeConfigAnswer). */
  async #nodeConfig(request: NodeRequest & { mac: string | undefined }): Promise<NodeConfigAnswer> {
    const config = await this.#scripts.resolve(request, this.#choice())
    return signNodeConfigAnswer({
      config,
      mac: request.mac,
      manifest: this.#options.catalog.get(config.image)?.manifest,
      signer: this.#options.signer,
      // The archive nodes get: packed once per content of the directory, as they fetch it.
      overrideSha256: async (name) => (await this.#overrides.archive(name)).sha256,
      postInstallSha256: async (name) => {
        const { handle, stats } = await this.#scripts.openPostInstall(name)
        try {
          return await hashHandle(handle, Number(stats.size))
        } finally {
          await handle.close()
        }
      },
    })
  }

  async #bootSet() {
    const set = await this.#boot.current()
    if (set instanceof ImageSwarmError) throw set
    return set
  }

  /**
   * The script for a node: first one that makes it say who it is (MAC, DHCP host name),
   * then the install script for its image, or a script that shows why there is none.
   */
  async #ipxeScript(req: IncomingMessage, url: URL): Promise<string> {
    const server = this.#options.serverUrl()
    if (server === undefined) throw notListening()
    const mac = url.searchParams.get('mac')
    const hostname = url.searchParams.get('hostname')
    if (mac === null && hostname === null) return renderIdentifyScript(server)
    let request: NodeRequest & { mac: string | undefined }
    try {
      request = nodeRequest(url, this.#address(req))
    } catch (err) {
      if (err instanceof ImageSwarmError) return renderFailureScript(err)
      throw err
    }
    try {
      const { image, hostname: node } = await this.#scripts.imageFor(request, this.#choice())
      const macText = request.mac ?? 'unknown MAC'
      this.#logger.info({ node, mac: request.mac, address: request.address, image }, 'boot script')
      return renderInstallScript({
        serverUrl: server,
        image,
        bootAppend: this.#options.config.bootAppend,
        node: `${node ?? request.address} (${macText})`,
      })
    } catch (err) {
      if (!(err instanceof ImageSwarmError)) throw err
      this.#logger.warn(
        { mac: request.mac, address: request.address, err: err.message, hint: err.hint },
        'a node asked for its boot script: no image for it',
      )
      return renderFailureScript(err)
    }
  }

  async #serveHeld(
    file: HeldFile,
    req: IncomingMessage,
    res: ServerResponse,
    kind: keyof InstallUploads,
  ): Promise<void> {
    const release = file.acquire()
    try {
      await serveArchive(file, req, res, {
        uploadBudget: this.#options.catalog.uploadBudget,
        onSent: (bytes) => {
          this.#uploads[kind] += bytes
        },
        onChanged: (error) =>
          this.#logger.error(
            { file: file.path, err: error.message, hint: error.hint },
            'a served file changed in place',
          ),
        sendError,
        changedAnswer: (path) =>
          new ImageSwarmError(
            'E_SERVER_ARCHIVE_CHANGED',
            'the server’s copy of this file changed while it was served',
            {
              ...(path === undefined ? {} : { path }),
              hint: 'ask again: the server opens the new file',
            },
          ),
      })
    } finally {
      release()
    }
  }

  async #sendPostInstall(name: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const { handle, stats } = await this.#scripts.openPostInstall(name)
    try {
      res.writeHead(200, {
        'content-type': 'application/octet-stream',
        'content-length': Number(stats.size),
        'cache-control': 'no-cache',
      })
      if (req.method === 'HEAD' || stats.size === 0n) {
        res.end()
        return
      }
      const stream = handle.createReadStream({
        start: 0,
        end: Number(stats.size) - 1,
        autoClose: false,
      })
      // pipeline destroys the read stream whatever happens, so no read is pending when the
      // descriptor is closed below; a node hanging up is not the server's error.
      await pipeline(stream, res).catch((err: unknown) => {
        if (!res.writableFinished && res.destroyed) return
        throw err
      })
    } finally {
      await handle.close()
    }
  }

  #choice(): ImageChoice {
    return {
      served: servedImages(this.#options.catalog),
      bootImage: this.#options.config.bootImage,
    }
  }

  #address(req: IncomingMessage): string {
    if (this.#options.nodeAddress) return this.#options.nodeAddress(req)
    return (req.socket.remoteAddress ?? '').replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, '')
  }

  async close(): Promise<void> {
    await this.#boot.close()
    await this.#overrides.close()
  }
}

/** The images nodes may install: published, and being published (they wait for those). */
function servedImages(catalog: ImageCatalog): string[] {
  return [...catalog.published.map((image) => image.manifest.name), ...catalog.publishing]
}

/** The node's query parameters, checked: a malformed one is E_USAGE (400). */
function nodeRequest(url: URL, address: string): NodeRequest & { mac: string | undefined } {
  const param = (name: string) => {
    const value = url.searchParams.get(name)?.trim()
    return value === undefined || value === '' ? undefined : value
  }
  const image = param('image')
  const macText = param('mac')
  const mac = macText === undefined ? undefined : parseMac(macText)
  let hostname = param('hostname')
  const layout = param('layout')
  if (macText !== undefined && mac === undefined)
    throw badParameter('mac', macText, 'a MAC address, 52:54:00:12:34:56')
  // SystemImager 5 takes these for no name at all.
  if (hostname === 'localhost' || hostname === '(none)') hostname = undefined
  if (hostname !== undefined && !HOSTNAME.test(hostname)) {
    throw badParameter('hostname', hostname, 'a host name: letters, digits, - and .')
  }
  if (layout !== undefined && !LAYOUT_NAME.test(layout)) {
    throw badParameter(
      'layout',
      layout,
      'a file name in scripts/disks-layouts, with or without .xml',
    )
  }
  return {
    image: image === undefined ? undefined : parseImageName(image, 'image= parameter'),
    hostname,
    layout,
    address,
    mac,
  }
}

function badParameter(name: string, value: string, expected: string): ImageSwarmError {
  return new ImageSwarmError(
    'E_USAGE',
    `${name}=${JSON.stringify(value.slice(0, 80))} is not ${expected}`,
    {
      path: name,
      hint: `fix the ${name} parameter`,
    },
  )
}

function statusOf(error: ImageSwarmError): number {
  switch (error.code) {
    case 'E_USAGE':
    case 'E_IMAGE_NAME_INVALID':
      return 400
    case 'E_IMAGE_NOT_FOUND':
    case 'E_UNKNOWN_IMAGE':
    case 'E_SIGNATURE_MISSING':
      return 404
    // Not 404: a node takes a 404 for node.json as a server without node configs (one from
    // before them) and installs the default layout; a layout it named and the server does
    // not have must stop it instead.
    case 'E_LAYOUT_INVALID':
      return 422
    // Boot files being rebuilt, the server still starting: ask again shortly.
    case 'E_SERVER_ARCHIVE_CHANGED':
    case 'E_IMAGE_PUBLISHING':
      return 503
    default:
      // Packing an override failed (E_PACK_FAILED, E_NO_SPACE, E_TOOL_MISSING): the server's.
      return 500
  }
}

function sendScript(res: ServerResponse, req: IncomingMessage, script: string): void {
  sendBytes(req, res, Buffer.from(script, 'utf8'), 'text/plain; charset=utf-8')
}

function notListening(): ImageSwarmError {
  return new ImageSwarmError('E_IMAGE_PUBLISHING', 'the server is starting', {
    hint: `ask again in ${PUBLISHING_RETRY_AFTER_SECONDS} s`,
  })
}

function decode(segment: string): string {
  try {
    return decodeURIComponent(segment)
  } catch {
    return segment
  }
}
