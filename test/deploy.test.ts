import { join } from 'node:path'
import { compareTrees, INSTALL_RECORD_SKIP, snapshotTree } from '@imageswarm/core/testing'
import { describe, expect, it } from 'vitest'
import { runInstall, startServer } from '../scripts/lib/deployment.mjs'
import { useServerFixture } from './helpers/server-fixture.js'
import { addSampleImage, clientDirs, makeServerLayout } from './helpers/workspace.js'

const env = useServerFixture()
describe('deploying an image over a real swarm on loopback', () => {
  it('installs one image into three clients, each target equal to the image, with peer-to-peer traffic', async () => {
    env.layout = await makeServerLayout()
    await addSampleImage(env.layout, 'compute')
    // A slow server uplink, as on a real install network: clients must trade pieces
    // rather than each fetching the whole archive from the server.
    env.server = await startServer({
      images: ['compute'],
      ...env.layout!,
      args: ['--upload-limit', '3M'],
    })

    const results = await Promise.all(
      [1, 2, 3].map((n) =>
        runInstall({
          server: env.server!.url,
          image: 'compute',
          ...clientDirs(env.layout!, n),
          seedTime: 30,
        }),
      ),
    )
    for (const result of results) {
      expect(result.failed?.error, JSON.stringify(result.logs.slice(-5))).toBeUndefined()
      expect(result.code).toBe(0)
      expect(result.installed).toBeDefined()
    }
    for (const n of [1, 2, 3]) {
      const differences = await compareTrees(
        join(env.layout.imagesDir, 'compute'),
        clientDirs(env.layout, n).target,
        { skipPaths: INSTALL_RECORD_SKIP },
      )
      expect(differences).toEqual([])
    }
    // The comparison saw a real tree, not two empty ones.
    expect((await snapshotTree(clientDirs(env.layout, 1).target)).size).toBeGreaterThan(200)
    const uploadedToPeers = results.reduce((sum, r) => sum + r.installed.totals.uploaded, 0)
    const fromPeers = results.reduce(
      (sum, r) => sum + r.installed.totals.downloaded - r.installed.totals.downloadedFromServer,
      0,
    )
    // Peer-to-peer really happened: clients sent each other archive bytes.
    expect(uploadedToPeers).toBeGreaterThan(0)
    expect(fromPeers).toBeGreaterThan(0)
  })

  it('serves two images at once to two groups of clients', async () => {
    env.layout = await makeServerLayout()
    await addSampleImage(env.layout, 'login')
    await addSampleImage(env.layout, 'storage')
    env.server = await startServer({ images: ['login', 'storage'], ...env.layout! })

    const groups = { login: [1, 2], storage: [1, 2] } as const
    const runs = Object.entries(groups).flatMap(([image, clients]) =>
      clients.map((n) =>
        runInstall({
          server: env.server!.url,
          image,
          ...clientDirs(env.layout!, n, image),
          seedTime: 10,
        }).then((result) => ({ image, n, result })),
      ),
    )
    for (const { image, n, result } of await Promise.all(runs)) {
      expect(result.code, JSON.stringify(result.failed)).toBe(0)
      const differences = await compareTrees(
        join(env.layout.imagesDir, image),
        clientDirs(env.layout, n, image).target,
        { skipPaths: INSTALL_RECORD_SKIP },
      )
      expect(differences).toEqual([])
    }
  })
})
