import { formatMiB } from '@imageswarm/client'
import type { InstallEvent, TransferTotals } from '@imageswarm/core'
import { SingleBar } from 'cli-progress'

export type OutputMode = 'bar' | 'lines' | 'json'

/** A bar on a terminal, plain periodic lines on a serial console or in a log. */
export function chooseOutputMode(json: boolean): OutputMode {
  if (json) return 'json'
  return process.stderr.isTTY ? 'bar' : 'lines'
}

const LINE_INTERVAL_MS = 5000

/**
 * Renders an install's events. `json` writes every event as one line on stdout; the
 * other modes write human text on stderr, next to the logs.
 */
export function createInstallRenderer(mode: OutputMode): (event: InstallEvent) => void {
  if (mode === 'json') {
    return (event) => process.stdout.write(`${JSON.stringify(event)}\n`)
  }
  let bar: SingleBar | undefined
  let lastLine = 0
  const say = (text: string) => {
    if (bar) bar.stop()
    bar = undefined
    process.stderr.write(`${text}\n`)
  }
  return (event) => {
    switch (event.type) {
      case 'manifest':
        say(
          `image ${event.manifest.name}: ${formatMiB(event.manifest.size)} ${event.manifest.compression} archive, infohash ${event.manifest.infoHash}`,
        )
        break
      case 'staging':
        say(`staging in ${event.dir}`)
        break
      case 'download-progress': {
        const { downloaded } = event.totals
        const percent = Math.min(100, (100 * downloaded) / Math.max(event.size, 1))
        if (mode === 'bar') {
          if (!bar) {
            bar = new SingleBar({
              format:
                'downloading [{bar}] {percentage}% | {rate} down | {up} up | {peers} peers | ETA {eta_formatted}',
              stream: process.stderr,
              hideCursor: true,
            })
            bar.start(event.size, 0, { rate: '', up: '', peers: 0 })
          }
          bar.update(Math.min(downloaded, event.size), {
            rate: rate(event.downloadRate),
            up: rate(event.uploadRate),
            peers: event.peers,
          })
        } else if (Date.now() - lastLine >= LINE_INTERVAL_MS) {
          lastLine = Date.now()
          say(
            `downloading ${percent.toFixed(1)}% (${formatMiB(downloaded)} of ${formatMiB(event.size)}) ${rate(event.downloadRate)} down, ${rate(event.uploadRate)} up, ${event.peers} peers`,
          )
        }
        break
      }
      case 'piece-rejected':
        say(
          `piece ${event.index} failed its hash check and was discarded${event.banned.length ? `; dropped peer ${event.banned.join(', ')}` : ''}`,
        )
        break
      case 'webseed-fallback':
        say(`using the server's web seed: ${event.reason}`)
        break
      case 'download-complete':
        say(`downloaded in ${event.seconds.toFixed(1)} s (${describeTotals(event.totals)})`)
        break
      case 'verified':
        say(`archive sha256 verified in ${event.seconds.toFixed(1)} s`)
        break
      case 'extract-progress':
        if (mode === 'lines' && Date.now() - lastLine >= LINE_INTERVAL_MS) {
          lastLine = Date.now()
          say(`extracting ${((100 * event.bytes) / Math.max(event.size, 1)).toFixed(1)}%`)
        }
        break
      case 'extracted':
        say(`extracted into ${event.target} in ${event.seconds.toFixed(1)} s`)
        break
      case 'seeding':
        if (Date.now() - lastLine >= LINE_INTERVAL_MS) {
          lastLine = Date.now()
          say(
            `seeding for ${event.leechers} node(s) still downloading, ${formatMiB(event.totals.uploaded)} uploaded`,
          )
        }
        break
      case 'installed':
        say(
          `installed into ${event.target} in ${event.seconds.toFixed(1)} s (${describeTotals(event.totals)})`,
        )
        break
      case 'update-plan': {
        const { plan } = event
        const from = plan.from === undefined ? 'no recorded version' : `version ${plan.from}`
        say(
          plan.source === 'none'
            ? `the root holds version ${plan.to} of ${plan.image}: nothing to update`
            : `updating ${plan.image} from ${from} to ${plan.to}: ${plan.write} to write, ${plan.remove} to remove, from the ${plan.source === 'delta' ? 'delta' : plan.source === 'image' ? `full image (${plan.reason})` : 'server by file'}${plan.byFile > 0 ? `, ${plan.byFile} by file` : ''}`,
        )
        break
      }
      case 'updated':
        say(
          `updated ${event.target} to version ${event.version} in ${event.seconds.toFixed(1)} s (${describeTotals(event.totals)})`,
        )
        break
      case 'failed':
        say(`failed: ${event.error.message}`)
        break
      case 'state':
        break
    }
  }
}

function describeTotals(totals: TransferTotals): string {
  const fromPeers = totals.downloaded - totals.downloadedFromServer
  return `${formatMiB(totals.downloadedFromServer)} from the server, ${formatMiB(fromPeers)} from peers, ${formatMiB(totals.uploaded)} uploaded to peers`
}

function rate(bytesPerSecond: number): string {
  return `${(bytesPerSecond / 1024 / 1024).toFixed(1)} MiB/s`
}
