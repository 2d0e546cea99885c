import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import {
  ImageServers,
  type InstallResult,
  installImage,
  loadTrustRoot,
  type RequestSettings,
  readTrustFloor,
} from '@imageswarm/client'
import {
  type DiskLayout,
  type ImageManifest,
  ImageSwarmError,
  isImageSwarmError,
  type Logger,
  type NodeConfigBinding,
  type NodeInstallConfig,
  type TransferTotals,
} from '@imageswarm/core'
import { describeDisks, listDisks } from './block-devices.js'
import type { BootloaderPlan } from './boot-requirements.js'
import { configureTarget, syncDisks } from './configure-target.js'
import {
  type BlockDisk,
  chooseInstallDisk,
  defaultLayout,
  type Firmware,
} from './default-layout.js'
import type { DhcpLease } from './dhcp-lease.js'
import { prepareDisks } from './disks.js'
import { mountOrder } from './filesystems.js'
import type { NodeInstallerSettings } from './installer-config.js'
import { createProgressReporter, type InstallerConsole } from './installer-console.js'
import { MountStack } from './mount-stack.js'
import { fetchNodeConfig, type NodeConfigTrustOptions } from './node-config.js'

export interface NodeInstallOptions {
  settings: NodeInstallerSettings
  console: InstallerConsole
  logger: Logger
  /** What /init's DHCP client recorded (MAC, host name, domain, address). */
  lease: DhcpLease
  firmware: Firmware
  /** Scratch space outside the target (override archives): /run/imageswarm/installer. */
  workDir: string
  signal?: AbortSignal
  /** The node's disks; default: /sys/block. */
  disks?: readonly BlockDisk[]
}

export interface NodeInstallResult {
  image: string
  hostname: string | undefined
  layoutName: string
  seconds: number
  totals: TransferTotals
  /** With a trust root: the serial installed and what its signature was checked under;
   * also recorded in the root's /etc/imageswarm/installed.json. */
  trust?: InstallResult['trust']
}

/** What the partitioning step found and made, for the steps after it. */
interface Prepared {
  node: NodeInstallConfig
  layout: DiskLayout
  layoutName: string
  hostname: string | undefined
  domain: string | undefined
  bootloader: BootloaderPlan
  uuids: Map<string, string>
  /** With a trust root: the signed digests every override and server script is checked against. */
  digests: Pick<NodeConfigBinding, 'overrideSha256' | 'postInstallSha256'> | undefined
}

/**
 * The whole install of a bare node, inside the client's install pipeline so the dashboard
 * follows it from start to end: manifest and .torrent, then (`partitioning`) the node's
 * config from the server and its disks partitioned, formatted and mounted under the
 * target; the download and extraction; (`configuring`) fstab, host name, machine-id,
 * overrides, GRUB and post-install scripts; seeding while others download; `done`. Then the
 * target's filesystems are unmounted (staging, which may be on them, is gone by then) and
 * synced. On failure, everything it mounted is unmounted before the error goes on.
 */
export async function installNode(options: NodeInstallOptions): Promise<NodeInstallResult> {
  const { settings, console, logger, lease } = options
  const { client, installer } = settings
  const named = installer.hostname ?? lease.hostname
  const config = { ...client, ...(client.node || !named ? {} : { node: named }) }
  // Shared with the client's install: the node config, overrides and scripts come from the
  // first server that answers, the one that gave the manifest first; once the install
  // verified the key list, over the certificates it pins (over HTTPS).
  const servers = new ImageServers(client.server, { logger })
  const request: RequestSettings = {
    connectTimeoutSeconds: client.connectTimeoutSeconds,
    ...(options.signal ? { signal: options.signal } : {}),
    onRetry: (attempt, err) =>
      logger.warn({ attempt, err: String(err) }, 'image server not reachable yet; retrying'),
  }
  const mounts = new MountStack(logger)
  let prepared: Prepared | undefined
  // A bug in a step (not an ImageSwarmError) is reported as one, not as a failed download.
  let internal: unknown
  const step =
    <A extends unknown[], R>(body: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      try {
        return await body(...args)
      } catch (err) {
        if (!isImageSwarmError(err)) internal = err
        throw err
      }
    }

  const prepareTarget = step(async (manifest: ImageManifest) => {
    const trust = await nodeConfigTrust(config, manifest, logger)
    const query = {
      image: manifest.name,
      mac: lease.mac,
      hostname: named,
      layout: installer.disksLayout,
    }
    const {
      value: { config: node, source, signed },
      server,
    } = await servers.firstAnswer({ what: 'node config' }, request, (to) =>
      fetchNodeConfig(query, to, trust),
    )
    if (signed) {
      console.say(
        `node config signed by key ${signed.signingKeyId} (key list version ${signed.keyListVersion}), for this node's MAC and serial ${manifest.serial}; overrides and post-install scripts are checked against it`,
      )
    }
    const serverName = node.hostname ?? undefined
    const hostname = installer.hostname ?? shortName(serverName) ?? lease.hostname
    const domain = lease.domain ?? domainOf(serverName)
    console.say(
      source === 'server'
        ? `node config: host name ${hostname ?? 'none'}, groups ${node.groups.join(' ') || 'none'}, layout ${node.layoutName ?? 'default'}, overrides ${node.overrides.join(' ') || 'none'}, ${node.postInstall.length} post-install scripts`
        : `the server has no node config (${server} is an older imageswarm): default layout, host name ${hostname ?? 'none'}, no overrides or post-install scripts`,
    )
    let layout = node.layout
    const layoutName = node.layoutName ?? 'default'
    const disks = options.disks ?? (await listDisks())
    if (!layout) {
      const disk = chooseInstallDisk(disks)
      if (!disk) {
        throw new ImageSwarmError(
          'E_DISK_MISSING',
          `no disk to install onto: no fixed, writable disk among ${describeDisks(disks)}`,
          {
            operation: 'choose the disk',
            path: '/sys/block',
            hint: 'give the node a disk (a driver missing from the ramdisk? imageswarm.modules=), or name one in a disk layout on the server',
          },
        )
      }
      layout = defaultLayout(disk.device, options.firmware)
      console.say(
        `default layout on ${disk.device}: gpt, BIOS boot 1 MiB${options.firmware === 'uefi' ? ', EFI system 256 MiB' : ''}, ext4 / on the rest`,
      )
    }
    const made = await prepareDisks({
      layout,
      layoutName,
      target: client.target,
      firmware: options.firmware,
      console,
      logger,
      mounts,
      disks,
    })
    const digests = signed && node.signed
    prepared = { node, layout, layoutName, hostname, domain, ...made, digests }
    // Mount points of other filesystems, or a kept one, are in the target before the image.
    const filled =
      mountOrder(layout.filesystems).length > 1 || layout.filesystems.some((fs) => !fs.format)
    return { force: filled }
  })

  const configure = step(async (target: string, manifest: { name: string }) => {
    const made = prepared as Prepared
    await configureTarget({
      target,
      image: manifest.name,
      layout: made.layout,
      layoutName: made.layoutName,
      uuids: made.uuids,
      bootloader: made.bootloader,
      node: made.node,
      hostname: made.hostname,
      domain: made.domain,
      variables: {
        hostname: made.hostname,
        domain: made.domain,
        image: manifest.name,
        server: servers.current,
        groups: made.node.groups,
        overrides: made.node.overrides,
        layoutName: made.layoutName,
        postAction: installer.postAction,
        device: lease.interface,
        mac: lease.mac,
        ip: lease.ip,
        prefix: lease.prefix,
        router: lease.router,
      },
      servers,
      request,
      ...(made.digests ? { digests: made.digests } : {}),
      workDir: options.workDir,
      mounts,
      console,
      logger,
    })
  })

  // Image mode disk or ram: no partitioning, no bootloader; the client mounts the image at
  // the target and /init boots it there (boot_mounted_image).
  const mounted = client.imageMode !== 'extract'
  const configureMounted = step(async (target: string) => {
    if (named === undefined) return
    // Into the overlay's writable layer, as a deployed system would have it.
    await writeFile(join(target, 'etc/hostname'), `${shortName(named) ?? named}\n`)
  })
  try {
    const result = await installImage({
      config,
      logger,
      onEvent: createProgressReporter(console, Date.now, client.imageMode !== 'extract'),
      ...(options.signal ? { signal: options.signal } : {}),
      ...(mounted
        ? { configureTarget: configureMounted }
        : { prepareTarget, configureTarget: configure }),
      servers,
    })
    for (const problem of await mounts.unmountAll()) console.say(`unmounting: ${problem}`)
    await syncDisks(logger)
    if (mounted) {
      console.say(
        `image ${result.manifest.name} mounted read-only at ${client.target} under a ${client.overlay === 'tmpfs' ? 'tmpfs' : client.overlay} layer (image mode ${client.imageMode})`,
      )
    }
    const made: Pick<Prepared, 'hostname' | 'layoutName'> = prepared ?? {
      hostname: shortName(named),
      layoutName: `none (image mode ${client.imageMode})`,
    }
    return {
      image: result.manifest.name,
      hostname: made.hostname,
      layoutName: made.layoutName,
      seconds: result.seconds,
      totals: result.totals,
      ...(result.trust ? { trust: result.trust } : {}),
    }
  } catch (err) {
    for (const problem of await mounts.unmountAll()) console.say(`unmounting: ${problem}`)
    throw internal ?? err
  } finally {
    await servers.close()
  }
}

/**
 * With a trust root, what the node config is checked against: the same root and floor the
 * client checked the image's key list and manifest against, and the serial it verified.
 * Without one, undefined: the node config is taken unsigned, as before, and the log says so.
 */
async function nodeConfigTrust(
  config: Parameters<typeof loadTrustRoot>[0],
  manifest: ImageManifest,
  logger: Logger,
): Promise<NodeConfigTrustOptions | undefined> {
  const root = await loadTrustRoot(config)
  if (!root) {
    logger.warn(
      { image: manifest.name },
      'the node config (disk layout, overrides, post-install scripts) is not signature-checked: this node has no trust root',
    )
    return undefined
  }
  // The client refuses an unsigned manifest when there is a trust root, so this is a bug.
  if (manifest.serial === undefined) {
    throw new Error(
      'a trust root is configured, yet the manifest handed to the installer has no serial',
    )
  }
  return { root, floor: await readTrustFloor(config, logger), serial: manifest.serial, logger }
}

/** `node1.lab.example` → `node1`. */
function shortName(name: string | undefined): string | undefined {
  return name?.split('.')[0] || undefined
}

/** `node1.lab.example` → `lab.example`. */
function domainOf(name: string | undefined): string | undefined {
  const dot = name?.indexOf('.') ?? -1
  return name && dot > 0 ? name.slice(dot + 1) : undefined
}
