import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, openSync, writeSync } from 'node:fs'
import { dirname } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { formatMiB } from '@imageswarm/client'
import {
  createLogger,
  exitCodeFor,
  ImageSwarmError,
  isImageSwarmError,
  type Logger,
  PROC_CMDLINE,
  readKernelCmdline,
  silentLogger,
} from '@imageswarm/core'
import type { Firmware } from './default-layout.js'
import { DHCP_LEASE_FILE, readDhcpLease } from './dhcp-lease.js'
import { type PostAction, resolveNodeInstallerSettings } from './installer-config.js'
import { createInstallerConsole, type InstallerConsole } from './installer-console.js'
import { installNode } from './node-installer.js'

/** The installer's structured log: JSON lines, every command and its output. */
export const INSTALLER_LOG = '/run/imageswarm/installer.log'

/** Scratch space in memory (the ramdisk's /run), never on the disks being installed. */
export const INSTALLER_WORK_DIR = '/run/imageswarm/installer'

/**
 * How long to wait for the kernel to reboot or power off once asked: busybox's `reboot -f`
 * returns at once and the machine goes down a moment later. If it has not after this, the
 * installer exits 0 and /init does the post action its own way.
 */
const POST_ACTION_WAIT_MS = 60_000

export interface InstallerMainOptions {
  /** Default /proc/cmdline. */
  cmdline?: string
  env?: NodeJS.ProcessEnv
  console?: InstallerConsole
  logFile?: string
  leaseFile?: string
  workDir?: string
  /** Default: UEFI when /sys/firmware/efi exists. */
  firmware?: Firmware
  /** Default true: reboot or power off when the install is done. */
  performPostAction?: boolean
}

/**
 * `imageswarm-installer`, what /init runs on a bare node: reads its settings from the
 * kernel command line, installs the node (installNode), then does the post action. Each
 * step says one `imageswarm: [UPTIME] …` line on stdout (the console); everything else
 * goes to /run/imageswarm/installer.log. Returns the exit code: 0, or the failure's (an
 * ImageSwarmError's, 70 for a bug), after saying what failed and what to do.
 */
export async function installerMain(options: InstallerMainOptions = {}): Promise<number> {
  const console = options.console ?? createInstallerConsole()
  const logger = openLog(options.logFile ?? INSTALLER_LOG, console)
  const interrupt = new AbortController()
  const onSignal = (signal: NodeJS.Signals) =>
    interrupt.abort(
      new ImageSwarmError('E_INTERRUPTED', `installer interrupted by ${signal}`, {
        hint: 'reboot the node to install again from the start',
      }),
    )
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    const kernel = await readKernelCmdline(options.cmdline ?? PROC_CMDLINE)
    const settings = resolveNodeInstallerSettings(kernel, options.env ?? process.env)
    for (const note of settings.notes) console.say(note)
    logger.info(
      {
        client: settings.client,
        installer: settings.installer,
        sources: settings.installerSources,
      },
      'settings',
    )
    const firmware = options.firmware ?? (existsSync('/sys/firmware/efi') ? 'uefi' : 'bios')
    const lease = await readDhcpLease(options.leaseFile ?? DHCP_LEASE_FILE)
    const from = settings.client.server.join(', ')
    console.say(
      settings.client.imageMode === 'extract'
        ? `installing image ${settings.client.image} from ${from} onto this node (${firmware === 'uefi' ? 'UEFI' : 'BIOS'}, post action ${settings.installer.postAction})`
        : `running image ${settings.client.image} from ${from} on this node, mounted from ${settings.client.imageMode === 'ram' ? 'RAM' : 'its image cache'} (image mode ${settings.client.imageMode})`,
    )
    const result = await installNode({
      settings,
      console,
      logger,
      lease,
      firmware,
      workDir: options.workDir ?? INSTALLER_WORK_DIR,
      signal: interrupt.signal,
    })
    const { downloaded, downloadedFromServer, uploaded } = result.totals
    console.say(
      `installed image ${result.image} on ${result.hostname ?? 'this node'} in ${result.seconds.toFixed(1)} s (layout ${result.layoutName}; ${formatMiB(downloaded - downloadedFromServer)} from peers, ${formatMiB(downloadedFromServer)} from the server, ${formatMiB(uploaded)} uploaded)`,
    )
    if (result.trust) {
      console.say(
        `signed image: serial ${result.trust.serial}, signing key ${result.trust.signingKeyId}, key list version ${result.trust.keyListVersion} (checked in ${result.trust.seconds.toFixed(2)} s; recorded in /etc/imageswarm/installed.json)`,
      )
    }
    if (settings.client.imageMode !== 'extract') {
      // A mounted image: /init boots it (boot_mounted_image), no reboot.
      console.say(`booting the mounted image (image mode ${settings.client.imageMode})`)
      return 0
    }
    if (options.performPostAction !== false) {
      await postAction(settings.installer.postAction, console, logger)
    }
    return 0
  } catch (err) {
    reportFailure(err, console, logger)
    return exitCodeFor(err)
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}

/**
 * reboot and poweroff: done here (`reboot -f`, busybox's in the ramdisk: the disks are
 * unmounted and synced already); if that cannot run or the machine is still up a minute
 * later, the installer returns and /init does it. shell: returns, and /init opens one.
 */
async function postAction(
  action: PostAction,
  console: InstallerConsole,
  logger: Logger,
): Promise<void> {
  if (action === 'shell') {
    console.say('post action shell: leaving the node to /init’s shell')
    return
  }
  console.say(action === 'reboot' ? 'rebooting into the installed system' : 'powering off')
  const started = await new Promise<boolean>((resolve) => {
    const child = spawn(action, ['-f'], { stdio: 'ignore' })
    child.once('error', (err) => {
      logger.warn({ err: String(err), action }, 'post action could not start; /init does it')
      resolve(false)
    })
    child.once('exit', (code) => resolve(code === 0))
  })
  if (started) await sleep(POST_ACTION_WAIT_MS)
  console.say(`${action} -f did not take the node down; /init does the post action`)
}

function reportFailure(err: unknown, console: InstallerConsole, logger: Logger): void {
  if (isImageSwarmError(err)) {
    console.say(`error ${err.code}: ${err.message}`)
    if (err.hint) console.say(`  hint: ${err.hint}`)
    logger.error({ err: err.toJSON() }, 'install failed')
    return
  }
  const detail = err instanceof Error ? (err.stack ?? err.message) : String(err)
  console.say(`internal error, please report it with this output:\n${detail}`)
  logger.error({ err: detail }, 'internal error')
}

/** JSON lines to the log file; if it cannot be opened, nothing (and the console says so). */
function openLog(path: string, console: InstallerConsole): Logger {
  try {
    mkdirSync(dirname(path), { recursive: true })
    const fd = openSync(path, 'a')
    return createLogger({
      name: 'installer',
      destination: { write: (line: string) => void writeSync(fd, line) },
    })
  } catch (err) {
    console.say(`cannot write the log ${path} (${String(err)}): logging nothing`)
    return silentLogger()
  }
}
