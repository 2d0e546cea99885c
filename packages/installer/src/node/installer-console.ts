import { readFileSync } from 'node:fs'
import { formatMiB } from '@imageswarm/client'
import type { InstallEvent } from '@imageswarm/core'

/** Download progress is said this often on the console (a serial line at 115200 baud). */
const PROGRESS_INTERVAL_MS = 15_000

/** The installer's console: one short line per step, as /init's (`imageswarm: [UPTIME] …`). */
export interface InstallerConsole {
  say(text: string): void
}

/** Seconds since the node booted (/proc/uptime), the clock /init's lines carry. */
export function readUptime(): string {
  try {
    return (readFileSync('/proc/uptime', 'utf8').split(' ')[0] as string).trim()
  } catch {
    return process.uptime().toFixed(2)
  }
}

/**
 * Lines on the installer's stdout, which /init's console is (the serial console with
 * `console=ttyS0`).
 */
export function createInstallerConsole(
  write: (text: string) => void = (text) => process.stdout.write(text),
  uptime: () => string = readUptime,
): InstallerConsole {
  return {
    say(text) {
      for (const line of text.split('\n')) write(`imageswarm: [${uptime()}] ${line}\n`)
    },
  }
}

/**
 * Says the client's progress on the console: each state, where the archive is staged,
 * download progress every 15 s, the totals at the end of each stage.
 */
export function createProgressReporter(
  console: InstallerConsole,
  now: () => number = Date.now,
  /** Image modes disk and ram mount the image instead of extracting it. */
  mounting = false,
): (event: InstallEvent) => void {
  let lastProgress = 0
  let seedingSaid = false
  return (event) => {
    switch (event.type) {
      case 'manifest':
        console.say(
          `image ${event.manifest.name}: ${formatMiB(event.manifest.size)} ${event.manifest.format === 'squashfs' ? 'SquashFS image' : `${event.manifest.compression} archive`}, infohash ${event.manifest.infoHash}`,
        )
        break
      case 'staging':
        console.say(`staging the archive in ${event.dir}`)
        break
      case 'state':
        if (event.state === 'downloading') console.say('downloading from the swarm')
        if (event.state === 'extracting')
          console.say(mounting ? 'mounting the image' : 'extracting the image')
        break
      case 'download-progress': {
        if (now() - lastProgress < PROGRESS_INTERVAL_MS) break
        lastProgress = now()
        const { downloaded, downloadedFromServer, uploaded } = event.totals
        const percent = Math.min(100, (100 * downloaded) / Math.max(event.size, 1))
        console.say(
          `downloading: ${percent.toFixed(0)} % of ${formatMiB(event.size)}, ${formatMiB(event.downloadRate)}/s, ${event.peers} peers, ${formatMiB(downloadedFromServer)} from the server, ${formatMiB(uploaded)} uploaded`,
        )
        break
      }
      case 'webseed-fallback':
        console.say(`also downloading from the server's web seed: ${event.reason}`)
        break
      case 'download-complete': {
        const { downloaded, downloadedFromServer, uploaded } = event.totals
        console.say(
          `downloaded in ${event.seconds.toFixed(1)} s: ${formatMiB(downloaded - downloadedFromServer)} from peers, ${formatMiB(downloadedFromServer)} from the server, ${formatMiB(uploaded)} uploaded`,
        )
        break
      }
      case 'verified':
        console.say(`archive verified (sha256) in ${event.seconds.toFixed(1)} s`)
        break
      case 'extracted':
        console.say(
          `${mounting ? 'mounted at' : 'extracted into'} ${event.target} in ${event.seconds.toFixed(1)} s`,
        )
        break
      case 'seeding':
        if (!seedingSaid && event.leechers > 0) {
          seedingSaid = true
          console.say(`seeding to ${event.leechers} nodes still downloading`)
        }
        break
      default:
        break
    }
  }
}
