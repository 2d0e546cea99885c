import { access } from 'node:fs/promises'
import { join } from 'node:path'
import { formatMiB } from '@imageswarm/client'
import type { PublishedImage } from '@imageswarm/seeder'
import type { DeploymentEvent, DeploymentNode } from '@imageswarm/tracker'
import type { ConsoleOutput } from './console-output.js'
import { textTable } from './text-table.js'

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
  // A column no image has (no versions kept) is left out; the others line up.
  const shown = (rows[0] ?? []).flatMap((_, column) =>
    rows.some((row) => row[column] !== '') ? [column] : [],
  )
  const table = textTable(
    shown.map(() => ({ title: '' })),
    rows.map((row) => shown.map((column) => row[column]!)),
  ).slice(1)
  output.line(`serving ${images.length} image${images.length === 1 ? '' : 's'} at ${url}`)
  for (const line of table) output.line(`  ${line}`)
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
 * What happened to a deployment, in a line of the log (the record carries the image):
 * it began, a node installed or failed, it finished.
 */
export function describeDeploymentEvent(event: DeploymentEvent): string {
  const { deployment } = event
  const prefix = `deployment ${deployment.id}`
  switch (event.kind) {
    case 'began':
      return `${prefix} began (first node ${nodeName(event.node)})`
    case 'node-finished': {
      const { node } = event
      const after = `after ${Math.round(node.seconds ?? 0)} s`
      if (node.state !== 'failed') return `${prefix}: node ${nodeName(node)} installed ${after}`
      const reason = node.error ? `${node.error.code}: ${node.error.message}` : 'no reason given'
      return `${prefix}: node ${nodeName(node)} failed ${after} (${reason})`
    }
    case 'ended':
      return `${prefix} finished: ${deployment.text}`
  }
}

/**
 * `serve`'s own console line for a deployment: when it begins and when it ends. A node
 * that fails is a warning of the log, which the console shows anyway; an installed node is
 * counted, not listed (a rack would be 40 lines).
 */
export function deploymentConsoleLine(event: DeploymentEvent): string | undefined {
  if (event.kind === 'node-finished') return undefined
  return `${event.deployment.image}: ${describeDeploymentEvent(event)}`
}

/** How a person knows a node: its host name, MAC and address, as many as it reported. */
function nodeName(node: DeploymentNode): string {
  const known = [node.node, node.mac, node.address].filter((part) => part !== null)
  return known.length > 0 ? known.join(' ') : node.peerId
}
