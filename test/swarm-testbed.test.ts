import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { runBench } from '../scripts/bench-swarm/lib/bench.mjs'
import { whyNoNamespaces } from '../scripts/bench-swarm/lib/netns.mjs'

// The swarm benchmark's testbed in small: one server and three client hosts, each in
// its own network namespace behind an htb-capped veth. Needs root and iproute2.
const skipReason = whyNoNamespaces()
if (skipReason) {
  console.warn(`swarm testbed test skipped: ${skipReason}`)
}

let workDir: string | undefined

afterAll(async () => {
  if (workDir) await rm(workDir, { recursive: true, force: true })
})

describe.skipIf(skipReason !== undefined)('the swarm testbed (network namespaces)', () => {
  it('deploys an image to three emulated hosts, each with a verified archive, with uploads between clients', async () => {
    workDir = await mkdtemp(join(tmpdir(), 'imageswarm-testbed-'))
    // 6 MiB at 40 Mbit/s: the server alone needs about 1.3 s per copy, so the clients
    // finish sooner when they trade pieces; the cap keeps the server from handing
    // everything out before clients meet each other.
    const [result] = await runBench({
      clients: [3],
      rate: '40mbit',
      size: 6 * 1024 * 1024,
      transports: ['imageswarm'],
      workDir,
      timeoutSeconds: 45,
    })
    expect(result).toBeDefined()
    if (!result) return
    expect(result.finished).toBe(3)
    for (const client of result.clients) {
      expect(client.code, `${client.name} exit code`).toBe(0)
      expect(client.verifiedAt, `${client.name} verified`).not.toBeNull()
      expect(client.sha256At, `${client.name} sha256 checked`).not.toBeNull()
      expect(client.extractedAt, `${client.name} extracted`).not.toBeNull()
    }
    const fromPeers = result.clients.reduce(
      (sum: number, c: { totals?: { downloaded: number; downloadedFromServer: number } }) =>
        sum + (c.totals ? c.totals.downloaded - c.totals.downloadedFromServer : 0),
      0,
    )
    expect(fromPeers, 'bytes clients got from other clients').toBeGreaterThan(0)
    expect(result.clientsSentBytes, 'bytes client hosts sent').toBeGreaterThan(
      result.archiveBytes / 4,
    )
  }, 60_000)
})
