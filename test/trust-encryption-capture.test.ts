// Encrypted archives on the wire (issue 17): the image's marker string never appears in a
// packet capture of the swarm. The server and two install clients run in a network
// namespace of the test's own, so its loopback carries their traffic and nothing else
// (HTTP: manifest, torrent, group keys, web seed; the tracker; the peer wire), and tcpdump
// records all of it on that `lo`. The two clients install at once from a throttled server,
// so they trade ciphertext pieces with each other. Needs root, iproute2 and tcpdump.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { readGroupKey } from '@imageswarm/core'
import { compareTrees } from '@imageswarm/core/testing'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { whyNoNamespaces } from '../scripts/bench-swarm/lib/netns.mjs'
import { runInstall, startServer } from '../scripts/lib/deployment.mjs'
import {
  type EncryptedImageLayout,
  MARKER,
  makeEncryptedImageLayout,
} from './helpers/encrypted-image.js'
import type { Server } from './helpers/server-fixture.js'
import { clientDirs } from './helpers/workspace.js'

function whyNoCapture(): string | undefined {
  const noNamespaces = whyNoNamespaces()
  if (noNamespaces) return noNamespaces
  try {
    execFileSync('tcpdump', ['--version'], { stdio: 'ignore', timeout: 10_000 })
    return undefined
  } catch {
    return 'tcpdump is missing (Debian package tcpdump; scripts/setup.sh --test)'
  }
}
const skipReason = whyNoCapture()
if (skipReason) console.warn(`packet capture test skipped: ${skipReason}`)

const NETNS = `isc-enc-${process.pid}`
/** What every BitTorrent connection starts with: pstrlen 19, then the protocol name. */
const HANDSHAKE = Buffer.from('\x13BitTorrent protocol', 'latin1')

interface Totals {
  downloaded: number
  downloadedFromServer: number
}

/**
 * tcpdump writing every packet on the namespace's `lo` to `file` as it comes (-U), resolved
 * once it says it is listening. Stopped by its PID (`ip netns exec` execs tcpdump); `stop()`
 * gives the number of packets the kernel dropped (tcpdump's closing statistics). Its buffer
 * (-B, in KiB) holds more than the whole swarm's traffic: with the default 2 MiB, a loaded
 * machine dropped a few 64 KiB loopback packets, and a dropped packet is one not searched.
 */
async function startCapture(
  file: string,
): Promise<{ process: ChildProcess; stop(): Promise<number> }> {
  const child = spawn(
    'ip',
    [
      'netns',
      'exec',
      NETNS,
      'tcpdump',
      '-i',
      'lo',
      '-n',
      '-U',
      '-s',
      '0',
      '-B',
      '131072',
      '-w',
      file,
    ],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  )
  // 'close': the process ended and its stderr, with the statistics, has been read.
  const exited = once(child, 'close')
  const stderr: string[] = []
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`tcpdump not listening after 30 s: ${stderr.join('\n')}`)),
        30_000,
      )
      createInterface({ input: child.stderr! }).on('line', (line) => {
        stderr.push(line)
        // "tcpdump: listening on lo, link-type EN10MB (Ethernet), snapshot length 262144 bytes"
        if (line.includes('listening on')) {
          clearTimeout(timer)
          resolve()
        }
      })
      child.once('exit', (code) => {
        clearTimeout(timer)
        reject(new Error(`tcpdump exited with ${code}: ${stderr.join('\n')}`))
      })
    })
  } catch (err) {
    if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, 'SIGTERM')
    await exited
    throw err
  }
  return {
    process: child,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, 'SIGTERM')
      await exited
      const dropped = stderr
        .map((line) => /^(\d+) packets dropped by kernel/.exec(line))
        .find(Boolean)
      if (!dropped) throw new Error(`tcpdump gave no statistics: ${stderr.join('\n')}`)
      return Number(dropped[1])
    },
  }
}

describe.skipIf(skipReason !== undefined)('an encrypted image on the wire', () => {
  let image: EncryptedImageLayout | undefined
  let server: Server | undefined
  let capture: Awaited<ReturnType<typeof startCapture>> | undefined
  let namespaceMade = false

  beforeAll(async () => {
    image = await makeEncryptedImageLayout(
      'imageswarm-encrypt-capture-',
      ['compute'],
      [
        ['n1', 'compute'],
        ['n2', 'compute'],
      ],
    )
    execFileSync('ip', ['netns', 'add', NETNS], { timeout: 20_000 })
    namespaceMade = true
    execFileSync('ip', ['-n', NETNS, 'link', 'set', 'lo', 'up'], { timeout: 20_000 })
  })

  afterAll(async () => {
    await capture?.stop().catch(() => undefined)
    await server?.stop()
    if (namespaceMade) execFileSync('ip', ['netns', 'del', NETNS], { timeout: 20_000 })
    await image?.layout.remove()
  })

  it('never carries the marker: two clients trade ciphertext, and the capture holds their BitTorrent traffic', async () => {
    const { layout, keys, groupKeys, secrets, serveArgs } = image!
    const pcap = join(layout.dir, 'swarm.pcap')
    capture = await startCapture(pcap)
    // Throttled, so that neither client gets everything from the server before they meet.
    server = await startServer({
      images: ['node'],
      ...layout,
      netns: NETNS,
      args: [...serveArgs, '--upload-limit', '2M'],
    })
    const manifest = JSON.parse(
      await readFile(join(layout.torrentsDir, 'image-node.manifest.json'), 'utf8'),
    ) as { size: number; encryption?: unknown }
    expect(manifest.encryption).toBeDefined()

    const installs = (['n1', 'n2'] as const).map((node, i) => {
      const dirs = clientDirs(layout, i + 1, 'capture')
      return {
        dirs,
        result: runInstall({
          server: server!.url,
          image: 'node',
          ...dirs,
          netns: NETNS,
          seedTime: 0,
          args: ['--trust-root', join(keys, 'root.pub'), '--node-secret-file', secrets[node]!],
        }),
      }
    })
    const results = await Promise.all(installs.map((install) => install.result))
    for (const [i, result] of results.entries()) {
      expect(result.failed?.error, JSON.stringify(result.logs.slice(-8))).toBeUndefined()
      expect(result.code).toBe(0)
      expect(
        await compareTrees(join(layout.imagesDir, 'node'), installs[i]!.dirs.target, {
          skipPaths: ['etc/imageswarm'],
        }),
      ).toEqual([])
    }
    const fromPeers = results.reduce((sum, result) => {
      const totals = result.installed.totals as Totals
      return sum + totals.downloaded - totals.downloadedFromServer
    }, 0)
    expect(fromPeers, 'ciphertext bytes the clients had from each other').toBeGreaterThan(0)

    await server.stop()
    const dropped = await capture.stop()
    capture = undefined
    const bytes = await readFile(pcap)
    // Not vacuous: every packet was captured, both clients' copies crossed the interface,
    // and over the peer wire. (The marker is 31 bytes: had it crossed in the clear, a TCP
    // segment boundary inside it would hide it from this search with a chance of about
    // 31 in 65,483 per copy.)
    expect(dropped).toBe(0)
    expect(bytes.length).toBeGreaterThan(2 * manifest.size)
    expect(bytes.includes(HANDSHAKE)).toBe(true)
    // Payloads are captured whole: the HTTP requests, in the clear, are there to be found.
    expect(bytes.includes('GET /images/node/manifest.json')).toBe(true)
    expect(bytes.includes(MARKER)).toBe(false)
    // The group key went out over plain HTTP, sealed to each node: neither its bytes nor
    // their base64 crossed the wire.
    expect(bytes.includes('GET /keys/groups/compute')).toBe(true)
    const groupKey = await readGroupKey(groupKeys, 'compute')
    expect(groupKey).toBeDefined()
    expect(bytes.includes(groupKey!.key)).toBe(false)
    expect(bytes.includes(groupKey!.key.toString('base64'))).toBe(false)
    console.info(
      `capture: ${bytes.length} B of packets for two copies of a ${manifest.size} B ciphertext; ${fromPeers} B traded between the clients; marker and group key absent`,
    )
  })
})
