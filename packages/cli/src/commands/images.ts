import { archivePath, VERSION_FILES, type VersionList } from '@imageswarm/core'
import type { SwarmSummary } from '@imageswarm/tracker'
import type { Command } from 'commander'
import {
  addDashboardClientOptions,
  DashboardClient,
  type DashboardClientFlags,
} from '../dashboard-client.js'
import { formatBytes, textTable } from '../text-table.js'

export interface ImagesFlags extends DashboardClientFlags {
  json: boolean
}

/** Registers `imageswarm images`. */
export function addImagesCommand(program: Command): void {
  addDashboardClientOptions(
    program
      .command('images')
      .description(
        'list the images a server publishes: versions, sizes, nodes and the last deployment',
      ),
  ).action(async (flags: ImagesFlags) => runImages(flags))
}

/** An image's swarm summary, and its versions where the server keeps them. */
export interface ImageListing extends SwarmSummary {
  /** The newest version and how many the server keeps; null for an image without versions. */
  versions: { newest: number; kept: number } | null
}

/**
 * `imageswarm images`: the server's published images with their versions and swarms at a
 * glance, from its JSON API (`GET /api/images`, and each image's
 * `/images/NAME/versions`), as a table or (`--json`) as the API gives it, with `versions`.
 */
export async function runImages(flags: ImagesFlags): Promise<void> {
  const api = await DashboardClient.open(flags)
  const { images: summaries } = await api.get<{ images: SwarmSummary[] }>('/api/images')
  const images: ImageListing[] = await Promise.all(
    summaries.map(async (summary) => {
      const list = await api.tryGet<VersionList>(archivePath(summary.image, VERSION_FILES.versions))
      return {
        ...summary,
        versions: list === undefined ? null : { newest: list.newest, kept: list.versions.length },
      }
    }),
  )
  if (flags.json) {
    process.stdout.write(`${JSON.stringify(images, null, 2)}\n`)
    return
  }
  if (images.length === 0) {
    process.stdout.write(`no image is published on ${api.server}\n`)
    return
  }
  process.stdout.write(`${imagesTable(images).join('\n')}\n`)
}

/** The table `imageswarm images` prints, one line per image. */
export function imagesTable(images: readonly ImageListing[]): string[] {
  const rows = [...images]
    .sort((a, b) => a.image.localeCompare(b.image, undefined, { numeric: true }))
    .map((s) => {
      const installed = s.states.seeding + s.states.done
      const deployment = s.deployment
      return [
        s.image,
        s.versions === null ? '-' : `${s.versions.newest} (${s.versions.kept} kept)`,
        formatBytes(s.size),
        String(s.nodes),
        `${installed}/${s.nodes}`,
        String(s.states.failed),
        String(s.stale),
        `${s.seeders}/${s.leechers}`,
        s.offload === null ? '-' : `${Math.round(s.offload * 100)}%`,
        deployment === null ? '-' : `#${deployment.id} ${deployment.state}: ${deployment.text}`,
      ]
    })
  return textTable(
    [
      { title: 'IMAGE' },
      { title: 'VERSION' },
      { title: 'SIZE', numeric: true },
      { title: 'NODES', numeric: true },
      { title: 'INSTALLED', numeric: true },
      { title: 'FAILED', numeric: true },
      { title: 'STALE', numeric: true },
      { title: 'SEED/LEECH', numeric: true },
      { title: 'FROM PEERS', numeric: true },
      { title: 'LAST DEPLOYMENT' },
    ],
    rows,
  )
}
