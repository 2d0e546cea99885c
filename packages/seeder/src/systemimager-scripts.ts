import type { BigIntStats } from 'node:fs'
import { type FileHandle, lstat, readdir, readFile, realpath, stat } from 'node:fs/promises'
import { join, sep } from 'node:path'
import {
  errnoOf,
  ImageSwarmError,
  type Logger,
  type NodeInstallConfig,
  NodeInstallConfigSchema,
  silentLogger,
} from '@imageswarm/core'
import { type ClusterTable, lookUpClusterNode, parseClusterTxt } from './cluster-txt.js'
import { DisksLayouts } from './disks-layouts.js'
import { isAbsent, openNoFollow } from './held-file.js'
import { hostnameFromHosts, shortHostname } from './hosts-file.js'
import { chooserCandidates, type NodeClasses, selectPostInstallScripts } from './node-classes.js'
import { OVERRIDE_NAME, type OverrideArchives } from './override-archives.js'

/** A group or override name NodeInstallConfig carries (a file name, never `..`). */
const CLASS_NAME = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/

/** A post-install script's name: `NN<class>.<description>`, no path. */
const POST_INSTALL_NAME = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,254}$/

/** What a node says of itself when it asks for its install config. */
export interface NodeRequest {
  /** The image on its kernel command line (imageswarm.image, IMAGENAME, si.image-name). */
  image: string | undefined
  /** Its DHCP host name. */
  hostname: string | undefined
  /** The layout it names (si.disks-layout, imageswarm.disks-layout). */
  layout: string | undefined
  /** Where the request came from: looked up in scripts/hosts when DHCP gave no name. */
  address: string
}

/** The images a node may install, and the one a node installs when nothing names one. */
export interface ImageChoice {
  served: readonly string[]
  bootImage: string | undefined
}

/**
 * SystemImager's scripts directory (`/var/lib/systemimager/scripts`) and overrides, as the
 * image server reads them to tell each node what to do (`NodeInstallConfig`):
 *
 * - host name: DHCP's, else `hosts` (the server's /etc/hosts, copied there by
 *   si_clusterconfig) by the node's address;
 * - groups and overrides: `cluster.txt`;
 * - disks layout: `disks-layouts/` (read and checked at start), by name, else by the first
 *   of HOSTNAME, groups, BASE_HOSTNAME, IMAGENAME, `default`;
 * - overrides: image, the groups' overrides (the global ones first), HOSTNAME (SystemImager
 *   4's order: the last wins), those whose directories exist;
 * - post-install scripts: `post-install/NN<class>.<description>` by class (all, IMAGENAME,
 *   BASE_HOSTNAME, groups, HOSTNAME).
 *
 * cluster.txt and hosts are read again whenever they change (an lstat per request).
 */
export class SystemImagerScripts {
  readonly scriptsDir: string
  readonly layouts: DisksLayouts
  readonly #overrides: OverrideArchives
  readonly #logger: Logger
  readonly #textFiles = new Map<string, { identity: string; text: string }>()

  private constructor(
    scriptsDir: string,
    layouts: DisksLayouts,
    overrides: OverrideArchives,
    logger: Logger,
  ) {
    this.scriptsDir = scriptsDir
    this.layouts = layouts
    this.#overrides = overrides
    this.#logger = logger
  }

  /** Reads and checks every disks layout: throws E_LAYOUT_INVALID for the first bad one. */
  static async load(options: {
    scriptsDir: string
    overrides: OverrideArchives
    logger?: Logger
  }): Promise<SystemImagerScripts> {
    const logger = options.logger ?? silentLogger()
    const layouts = await DisksLayouts.load(join(options.scriptsDir, 'disks-layouts'), logger)
    return new SystemImagerScripts(options.scriptsDir, layouts, options.overrides, logger)
  }

  /** The node's short host name: DHCP's, else the one scripts/hosts gives its address. */
  async hostnameOf(request: Pick<NodeRequest, 'hostname' | 'address'>): Promise<string | null> {
    if (request.hostname !== undefined) return shortHostname(request.hostname)
    const hosts = await this.#readText('hosts')
    const name = hosts === undefined ? undefined : hostnameFromHosts(hosts, request.address)
    return name !== undefined && CLASS_NAME.test(name) ? name : null
  }

  async clusterTable(): Promise<ClusterTable> {
    return parseClusterTxt((await this.#readText('cluster.txt')) ?? '')
  }

  /**
   * The image a node installs: the one it asks for, else the one cluster.txt gives its
   * host name, else `bootImage`, else the server's only image. An image the server does
   * not serve is E_UNKNOWN_IMAGE, never replaced by another.
   */
  async imageFor(
    request: Pick<NodeRequest, 'image' | 'hostname' | 'address'>,
    choice: ImageChoice,
  ): Promise<{ image: string; hostname: string | null }> {
    const hostname = await this.hostnameOf(request)
    const fromCluster = lookUpClusterNode(await this.clusterTable(), hostname).image
    const served = choice.served
    const node = hostname ?? `the node at ${request.address}`
    const serves = served.length
      ? `this server serves ${served.join(', ')}`
      : 'this server serves no image'
    if (request.image !== undefined) {
      if (served.includes(request.image)) return { image: request.image, hostname }
      throw new ImageSwarmError(
        'E_UNKNOWN_IMAGE',
        `${node} asks for image ${request.image}: ${serves}`,
        {
          path: request.image,
          hint: 'fix imageswarm.image= (or IMAGENAME=) on its kernel command line, or publish that image',
        },
      )
    }
    if (fromCluster !== undefined) {
      if (served.includes(fromCluster)) return { image: fromCluster, hostname }
      throw new ImageSwarmError(
        'E_UNKNOWN_IMAGE',
        `${join(this.scriptsDir, 'cluster.txt')} gives ${node} image ${fromCluster}: ${serves}`,
        {
          path: join(this.scriptsDir, 'cluster.txt'),
          hint: `publish ${fromCluster} (imageswarm serve --image ${fromCluster}), or change the node's group in cluster.xml and run si_clusterconfig -u`,
        },
      )
    }
    if (choice.bootImage !== undefined) return { image: choice.bootImage, hostname }
    if (served.length === 1) return { image: served[0]!, hostname }
    throw new ImageSwarmError(
      'E_UNKNOWN_IMAGE',
      `which image ${node} installs is not known: ${serves}`,
      {
        hint: 'name it for the node in scripts/cluster.txt (host:group:image:override, from si_clusterconfig), or start imageswarm serve with --boot-image NAME',
      },
    )
  }

  /** Everything the installer on a node needs to know of it (`GET /install/node.json`). */
  async resolve(request: NodeRequest, choice: ImageChoice): Promise<NodeInstallConfig> {
    const { image, hostname } = await this.imageFor(request, choice)
    const cluster = lookUpClusterNode(await this.clusterTable(), hostname)
    const groups = this.#names(cluster.groups, 'group')
    const classes: NodeClasses = { hostname, groups, image }

    let layoutName: string | null = null
    let layout: NodeInstallConfig['layout'] = null
    if (request.layout !== undefined) {
      const named = this.layouts.find(request.layout, true)
      if (!named) {
        throw new ImageSwarmError(
          'E_LAYOUT_INVALID',
          `${hostname ?? request.address} asks for disks layout ${request.layout}, which is not in ${this.layouts.dir}`,
          {
            path: request.layout,
            hint: `the layouts there: ${this.layouts.files.join(', ') || 'none'}; fix si.disks-layout= on the node's kernel command line, or add the file and restart imageswarm serve`,
          },
        )
      }
      ;({ file: layoutName, layout } = named)
    } else {
      for (const candidate of chooserCandidates(classes)) {
        const found = this.layouts.find(candidate)
        if (found) {
          ;({ file: layoutName, layout } = found)
          break
        }
      }
    }

    // SystemImager 4: OVERRIDES="$IMAGENAME $GROUP_OVERRIDES $HOSTNAME", applied in turn.
    // Applying X, Y, X leaves what Y, X leaves (overrides add and replace, never remove):
    // each is kept once, at its last place.
    const wanted = this.#names(
      [image, ...cluster.groupOverrides, ...(hostname ? [hostname] : [])],
      'override',
    )
    const lastPlaces = wanted.filter((name, i) => wanted.lastIndexOf(name) === i)
    const present = await Promise.all(lastPlaces.map((name) => this.#overrides.exists(name)))
    const overrides = lastPlaces.filter((_, i) => present[i])

    const postInstall = selectPostInstallScripts(await this.#postInstallFiles(), classes)

    return NodeInstallConfigSchema.parse({
      image,
      hostname,
      groups,
      layoutName,
      layout,
      overrides,
      postInstall,
    })
  }

  /**
   * Opens a post-install script to send it: a regular file in `post-install/` (a symlink
   * is followed only to a regular file inside that directory). Throws E_IMAGE_NOT_FOUND.
   */
  async openPostInstall(name: string): Promise<{ handle: FileHandle; stats: BigIntStats }> {
    const dir = join(this.scriptsDir, 'post-install')
    const real = POST_INSTALL_NAME.test(name) ? await resolveInside(dir, name) : undefined
    const notFound = new ImageSwarmError(
      'E_IMAGE_NOT_FOUND',
      `no post-install script ${name} in ${dir}`,
      {
        operation: 'serve post-install script',
        path: name,
        hint: 'node.json lists the scripts of each node; a script must be a regular file in that directory',
      },
    )
    if (real === undefined) throw notFound
    const handle = await openNoFollow(real).catch((err: unknown) => {
      if (isAbsent(err)) throw notFound
      throw err
    })
    const stats = await handle.stat({ bigint: true })
    if (!stats.isFile()) {
      await handle.close()
      throw notFound
    }
    return { handle, stats }
  }

  /** The files a node may run: regular files (or links to one inside the directory). */
  async #postInstallFiles(): Promise<string[]> {
    const dir = join(this.scriptsDir, 'post-install')
    const names = await readdir(dir).catch((err: unknown) => {
      if (isAbsent(err)) return []
      throw err
    })
    const usable = await Promise.all(
      names.map(
        async (name) =>
          POST_INSTALL_NAME.test(name) && (await resolveInside(dir, name)) !== undefined,
      ),
    )
    return names.filter((_, i) => usable[i])
  }

  /** Names a node config can carry; others (with spaces, slashes, `..`) are logged and left out. */
  #names(names: readonly string[], what: string): string[] {
    return names.filter((name) => {
      const ok = CLASS_NAME.test(name) && OVERRIDE_NAME.test(name)
      if (!ok) this.#logger.warn({ [what]: name }, `${what} name left out: not a file name`)
      return ok
    })
  }

  /** A small file of the scripts directory, read again when it changes; undefined if absent. */
  async #readText(name: string): Promise<string | undefined> {
    const path = join(this.scriptsDir, name)
    // Followed: scripts/hosts may be a link to /etc/hosts.
    const st = await stat(path, { bigint: true }).catch((err: unknown) => {
      if (isAbsent(err)) return undefined
      throw err
    })
    if (st === undefined) {
      this.#textFiles.delete(name)
      return undefined
    }
    const identity = `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`
    const cached = this.#textFiles.get(name)
    if (cached?.identity === identity) return cached.text
    const text = await readFile(path, 'utf8').catch((err: unknown) => {
      if (isAbsent(err)) return undefined
      throw new ImageSwarmError(
        'E_CONFIG_INVALID',
        `cannot read ${path}: ${errnoOf(err) ?? String(err)}`,
        {
          path,
          hint: 'check the file and its permissions',
          cause: err,
        },
      )
    })
    if (text === undefined) return undefined
    this.#textFiles.set(name, { identity, text })
    return text
  }
}

/**
 * The real path of `dir/name` when it is a regular file inside `dir` (following links,
 * which may not lead out of it); else undefined.
 */
async function resolveInside(dir: string, name: string): Promise<string | undefined> {
  try {
    const [realDir, real] = await Promise.all([realpath(dir), realpath(join(dir, name))])
    if (!real.startsWith(realDir + sep)) return undefined
    const st = await lstat(real)
    return st.isFile() ? real : undefined
  } catch {
    return undefined
  }
}
