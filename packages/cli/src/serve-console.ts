import { access } from 'node:fs/promises'
import { join } from 'node:path'
import { formatMiB } from '@imageswarm/client'
import type { PublishedImage } from '@imageswarm/seeder'
import type { DeploymentEvent, DeploymentNode } from '@imageswarm/tracker'
import type { ConsoleOutput } from './console-output.js'

/** What `serve` tells a person once it serves: its images, the dashboard, what nodes boot with. */
export interface ServeSummary {
  url: string
  images: readonly PublishedImage[]
  bootDir: string
  bootImage?: string
  pid: number
}

/**
 * A few lines instead of the log: each image on one line, then the addresses an
 * administrator types next (the dashboard, the kernel command line, the iPXE script).
 */
export async function printServeSummary(output: ConsoleOutput, summary: ServeSummary) {
  const { url, images } = summary
  const rows = images.map(({ manifest, packed, versions, manifestSignature }) => [
    manifest.name,
    versions ? `version ${versions.list.newest}` : '',
    formatMiB(manifest.size),
    manifest.compression + (manifest.encryption ? ', encrypted' : ''),
    manifestSignature ? 'signed' : 'unsigned',
    `infohash ${manifest.infoHash.slice(0, 12)}`,
    packed ? 'packed now' : 'unchanged since last run',
  ])
  const widths = rows[0]?.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)))
  output.line(`serving ${images.length} image${images.length === 1 ? '' : 's'} at ${url}`)
  for (const row of rows) {
    output.line(
      `  ${row
        .map((cell, column) => cell.padEnd(widths?.[column] ?? 0))
        .filter((cell) => cell.trim() !== '')
        .join('  ')}`,
    )
  }
  output.line(`dashboard:  ${url}/`)
  const image = summary.bootImage ?? (images.length === 1 ? images[0]?.manifest.name : undefined)
  output.line(`nodes boot with:  imageswarm.server=${url} imageswarm.image=${image ?? 'NAME'}`)
  if (await hasBootFiles(summary.bootDir)) {
    output.line(`network boot:  iPXE chain ${url}/boot/ipxe  (docs/network-boot.md)`)
  }
  output.line(`stop with Ctrl-C, or imageswarm stop (pid ${summary.pid})`)
}

async function hasBootFiles(dir: string): Promise<boolean> {
  try {
    await Promise.all([access(join(dir, 'vmlinuz')), access(join(dir, 'initrd.img'))])
    return true
  } catch {
    return false
  }
}

/**
 * A deployment as `serve` shows it on the console: a line when it begins, one per node
 * that fails (an installed node is counted, not listed: a rack is 40 lines otherwise), and
 * the summary when it ends. The log (`everyNode`) has a line for each installed node too.
 */
export function describeDeploymentEvent(
  event: DeploymentEvent,
  { everyNode = false } = {},
): string | undefined {
  const { deployment } = event
  const prefix = `${deployment.image}: deployment ${deployment.id}`
  switch (event.kind) {
    case 'began':
      return `${prefix} began (first node ${nodeName(event.node)})`
    case 'node-finished': {
      const { node } = event
      const after = `after ${Math.round(node.seconds ?? 0)} s`
      if (node.state !== 'failed') {
        return everyNode ? `${prefix}: node ${nodeName(node)} installed ${after}` : undefined
      }
      const reason = node.error ? `${node.error.code}: ${node.error.message}` : 'no reason given'
      return `${prefix}: node ${nodeName(node)} failed ${after} (${reason})`
    }
    case 'ended':
      return `${prefix} finished: ${deployment.text}`
  }
}

/** How a person knows a node: its host name, MAC and address, as many as it reported. */
function nodeName(node: DeploymentNode): string {
  const known = [node.node, node.mac, node.address].filter((part) => part !== null)
  return known.length > 0 ? known.join(' ') : node.peerId
}
