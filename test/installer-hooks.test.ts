import { existsSync } from 'node:fs'
import { mkdir, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { ClientConfigSchema, type InstallOptions, installImage } from '@imageswarm/client'
import {
  type ImageManifest,
  ImageSwarmError,
  INCOMPLETE_MARKER,
  type InstallEvent,
} from '@imageswarm/core'
import { compareTrees, INSTALL_RECORD_SKIP } from '@imageswarm/core/testing'
import { describe, expect, it } from 'vitest'
import { startServer } from '../scripts/lib/deployment.mjs'
import { useServerFixture } from './helpers/server-fixture.js'
import { addSampleImage, clientDirs, makeServerLayout } from './helpers/workspace.js'

const env = useServerFixture()

async function serve() {
  env.layout = await makeServerLayout()
  await addSampleImage(env.layout, 'node')
  env.server = await startServer({ images: ['node'], ...env.layout })
  return env.server.url
}

/** Runs the install in this process, recording its events and the hooks' calls in order. */
async function install(
  server: string,
  hooks: Pick<InstallOptions, 'prepareTarget' | 'configureTarget'> = {},
) {
  const dirs = clientDirs(env.layout!, 1)
  const timeline: string[] = []
  const events: InstallEvent[] = []
  const config = ClientConfigSchema.parse({
    server,
    image: 'node',
    staging: dirs.staging,
    target: dirs.target,
    seedTimeSeconds: 0,
    report: true,
  })
  const outcome = await installImage({
    config,
    onEvent: (event) => {
      events.push(event)
      if (event.type === 'state') timeline.push(`state ${event.state}`)
      if (['manifest', 'staging', 'extracted', 'installed', 'failed'].includes(event.type)) {
        timeline.push(event.type)
      }
    },
    ...(hooks.prepareTarget
      ? {
          prepareTarget: async (manifest: ImageManifest) => {
            timeline.push('prepareTarget')
            return hooks.prepareTarget!(manifest)
          },
        }
      : {}),
    ...(hooks.configureTarget
      ? {
          configureTarget: async (target: string, manifest: ImageManifest) => {
            timeline.push('configureTarget')
            return hooks.configureTarget!(target, manifest)
          },
        }
      : {}),
  }).then(
    (result) => ({ result, error: undefined }),
    (error: unknown) => ({ result: undefined, error }),
  )
  return { ...outcome, timeline, events }
}

/** The node as the server's dashboard recorded it from its status posts. */
async function dashboardNode(server: string) {
  const { nodes } = (await (await fetch(`${server}/api/images/node/nodes`)).json()) as {
    nodes: {
      state: string
      source: string
      phaseSeconds: Record<string, number>
      error: { code: string } | null
    }[]
  }
  return nodes.find((node) => node.source === 'status')
}

describe('the install pipeline’s hooks for the node installer', () => {
  it('without hooks, goes through the same states as ever', async () => {
    const server = await serve()
    const { result, error, timeline } = await install(server)
    expect(error).toBeUndefined()
    expect(result?.source).toBe('swarm')
    expect(timeline).toEqual([
      'manifest',
      'staging',
      'state downloading',
      'state verifying',
      'state extracting',
      'extracted',
      'state seeding',
      'state done',
      'installed',
    ])
  })

  it('partitions after the manifest, before the target is checked, and configures after extraction, before seeding and done', async () => {
    const server = await serve()
    const where = clientDirs(env.layout!, 1)
    let targetDuringPrepare: boolean | undefined
    let configuredRoot: string[] = []
    const { result, error, timeline } = await install(server, {
      prepareTarget: async (manifest) => {
        expect(manifest.name).toBe('node')
        targetDuringPrepare = existsSync(where.target)
        // What the installer leaves there: the root's filesystem, a mount point for another.
        await mkdir(join(where.target, 'boot/efi'), { recursive: true })
        return { force: true }
      },
      configureTarget: async (target) => {
        // The image is all there, the marker gone: the installer works on a whole root.
        expect(existsSync(join(target, INCOMPLETE_MARKER))).toBe(false)
        configuredRoot = await readdir(target)
      },
    })
    expect(error).toBeUndefined()
    expect(result?.target).toBe(where.target)
    expect(targetDuringPrepare).toBe(false)
    expect(configuredRoot).toContain('etc')
    expect(timeline).toEqual([
      'manifest',
      'state partitioning',
      'prepareTarget',
      'staging',
      'state downloading',
      'state verifying',
      'state extracting',
      'extracted',
      'state configuring',
      'configureTarget',
      'state seeding',
      'state done',
      'installed',
    ])
    expect(
      await compareTrees(join(env.layout!.imagesDir, 'node'), where.target, {
        skipPaths: ['boot', ...INSTALL_RECORD_SKIP],
      }),
    ).toEqual([])
    const node = await dashboardNode(server)
    expect(node?.state).toBe('done')
    expect(Object.keys(node?.phaseSeconds ?? {})).toEqual(
      expect.arrayContaining(['partitioning', 'configuring']),
    )
  })

  it('fails the install, never reporting it done, when configuring the new root fails', async () => {
    const server = await serve()
    const refusal = new ImageSwarmError(
      'E_IMAGE_NOT_BOOTABLE',
      'image node cannot boot this node: it has no kernel',
      {
        hint: 'add a kernel',
      },
    )
    const { error, timeline } = await install(server, {
      prepareTarget: async () => undefined,
      configureTarget: async () => {
        throw refusal
      },
    })
    expect(error).toBe(refusal)
    expect(timeline.slice(-4)).toEqual([
      'state configuring',
      'configureTarget',
      'state failed',
      'failed',
    ])
    expect(timeline).not.toContain('installed')
    const node = await dashboardNode(server)
    expect(node?.state).toBe('failed')
    expect(node?.error?.code).toBe('E_IMAGE_NOT_BOOTABLE')
  })

  it('downloads nothing when partitioning fails', async () => {
    const server = await serve()
    const refusal = new ImageSwarmError(
      'E_DISK_TOO_SMALL',
      'disk /dev/vda has 1024 MiB; its layout needs 2052 MiB',
    )
    const { error, timeline, events } = await install(server, {
      prepareTarget: async () => {
        throw refusal
      },
    })
    expect(error).toBe(refusal)
    expect(timeline).toEqual([
      'manifest',
      'state partitioning',
      'prepareTarget',
      'state failed',
      'failed',
    ])
    expect(events.some((event) => event.type === 'download-progress')).toBe(false)
  })
})
