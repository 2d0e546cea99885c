import { formatMiB } from '@imageswarm/client'
import { formatDuration, type InstallEvent, type TransferTotals } from '@imageswarm/core'
import type { ConsoleOutput } from './console-output.js'

export interface InstallRendererOptions {
  /** Every event as one JSON line on stdout, for machines (`--json`). */
  json: boolean
  /** Where a person's lines and the bar go. */
  console: ConsoleOutput
  /** This node's name, in every JSON event (the dashboard's name for it). */
  node: string
}

/** Off a terminal (serial console, log file), progress is a line this often. */
const LINE_INTERVAL_MS = 5000
/** No time left is shown before the download has run this long: the first rates mislead. */
const ETA_AFTER_MS = 3000

/**
 * Renders an install's or an update's events. `json`: each event as one line on stdout
 * with its time and the node. Otherwise a person's view on stderr: a few lines of what
 * happened and, on a terminal, a progress bar that ends at 100 %; off one, a progress
 * line every 5 s. A failure is not printed here: the CLI prints the error once, with
 * its hint.
 */
export function createInstallRenderer(
  options: InstallRendererOptions,
): (event: InstallEvent) => void {
  if (options.json) {
    return (event) =>
      process.stdout.write(
        `${JSON.stringify({ time: new Date().toISOString(), node: options.node, ...event })}\n`,
      )
  }
  const output = options.console
  let lastLine = 0
  let downloadStarted: number | undefined
  const periodic = (text: string) => {
    if (Date.now() - lastLine < LINE_INTERVAL_MS) return
    lastLine = Date.now()
    output.line(text)
  }
  return (event) => {
    switch (event.type) {
      case 'manifest':
        output.line(
          `image ${event.manifest.name}: ${formatMiB(event.manifest.size)} ${event.manifest.compression} archive, infohash ${event.manifest.infoHash}`,
        )
        break
      case 'staging':
        output.line(`staging in ${event.dir}`)
        break
      case 'download-progress': {
        const { downloaded } = event.totals
        downloadStarted ??= Date.now()
        const percent = Math.min(100, (100 * downloaded) / Math.max(event.size, 1))
        const rates = `${rate(event.downloadRate)} down, ${rate(event.uploadRate)} up, ${event.peers} ${event.peers === 1 ? 'peer' : 'peers'}`
        if (output.tty) {
          const eta = timeLeft(event.size - downloaded, event.downloadRate, downloadStarted)
          output.progress('downloading', {
            value: downloaded,
            total: event.size,
            detail: `${rates} | ${eta}`,
          })
        } else {
          periodic(
            `downloading ${percent.toFixed(1)}% (${formatMiB(downloaded)} of ${formatMiB(event.size)}) ${rates}`,
          )
        }
        break
      }
      case 'piece-rejected':
        output.line(
          `piece ${event.index} failed its hash check and was discarded${event.banned.length ? `; dropped peer ${event.banned.join(', ')}` : ''}`,
        )
        break
      case 'webseed-fallback':
        output.line(`using the server's web seed: ${event.reason}`)
        break
      case 'download-complete':
        output.endProgress({ complete: true, detail: `done in ${event.seconds.toFixed(1)} s` })
        output.line(`downloaded in ${event.seconds.toFixed(1)} s (${describeTotals(event.totals)})`)
        break
      case 'verified':
        output.line(`archive sha256 verified in ${event.seconds.toFixed(1)} s`)
        break
      case 'extract-progress':
        if (output.tty) {
          output.progress('extracting ', {
            value: event.bytes,
            total: event.size,
            detail: formatMiB(event.bytes),
          })
        } else {
          periodic(`extracting ${((100 * event.bytes) / Math.max(event.size, 1)).toFixed(1)}%`)
        }
        break
      case 'extracted':
        output.endProgress({ complete: true })
        output.line(`extracted into ${event.target} in ${event.seconds.toFixed(1)} s`)
        break
      case 'seeding':
        periodic(
          `seeding for ${event.leechers} node(s) still downloading, ${formatMiB(event.totals.uploaded)} uploaded`,
        )
        break
      case 'installed':
        output.line(
          `installed into ${event.target} in ${event.seconds.toFixed(1)} s (${describeTotals(event.totals)})`,
        )
        break
      case 'update-plan': {
        const { plan } = event
        const from = plan.from === undefined ? 'no recorded version' : `version ${plan.from}`
        output.line(
          plan.source === 'none'
            ? `the root holds version ${plan.to} of ${plan.image}: nothing to update`
            : `updating ${plan.image} from ${from} to ${plan.to}: ${plan.write} to write, ${plan.remove} to remove, from the ${plan.source === 'delta' ? 'delta' : plan.source === 'image' ? `full image (${plan.reason})` : 'server by file'}${plan.byFile > 0 ? `, ${plan.byFile} by file` : ''}`,
        )
        break
      }
      case 'updated':
        output.endProgress({ complete: true })
        output.line(
          `updated ${event.target} to version ${event.version} in ${event.seconds.toFixed(1)} s (${describeTotals(event.totals)})`,
        )
        break
      case 'failed':
        output.endProgress({ complete: false })
        break
      case 'state':
        break
    }
  }
}

/** `ETA 1m20s` from the current rate, or `ETA --` while the rate means little yet. */
function timeLeft(bytes: number, bytesPerSecond: number, started: number): string {
  if (Date.now() - started < ETA_AFTER_MS || bytesPerSecond <= 0) return 'ETA --'
  return `ETA ${formatDuration(Math.ceil(Math.max(0, bytes) / bytesPerSecond))}`
}

function describeTotals(totals: TransferTotals): string {
  const fromPeers = totals.downloaded - totals.downloadedFromServer
  return `${formatMiB(totals.downloadedFromServer)} from the server, ${formatMiB(fromPeers)} from peers, ${formatMiB(totals.uploaded)} uploaded to peers`
}

function rate(bytesPerSecond: number): string {
  return `${(bytesPerSecond / 1024 / 1024).toFixed(1)} MiB/s`
}
