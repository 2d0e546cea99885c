import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { makePeerId, type SwarmSettings, SwarmSettingsSchema } from '@imageswarm/core'
import createTorrent from 'create-torrent'
import parseTorrent from 'parse-torrent'
import { ArchiveSwarm, SwarmHost, type SwarmTorrent } from '../src/index.js'

export const PIECE = 256 * 1024

/** An archive of random bytes in a fresh directory, and its torrent. */
export async function makeArchive(bytes: number, announce: string[] = []) {
  const dir = await mkdtemp(join(tmpdir(), 'imageswarm-swarm-test-'))
  const data = randomBytes(bytes)
  const path = join(dir, 'image.tar.zst')
  await writeFile(path, data)
  const torrentFile = await new Promise<Uint8Array>((resolve, reject) =>
    createTorrent(
      data,
      { name: 'image.tar.zst', pieceLength: PIECE, announceList: [announce], private: true },
      (err, torrent) => (err ? reject(err) : resolve(torrent)),
    ),
  )
  const torrent: SwarmTorrent = await parseTorrent(torrentFile)
  return { dir, path, data, torrent, cleanup: () => rm(dir, { recursive: true, force: true }) }
}

export interface Node {
  peerId: string
  host: SwarmHost
  swarm: ArchiveSwarm
  path: string
  address: string
  close(): Promise<void>
}

/** A seeder or a client on loopback, each with its own port, as separate machines have. */
export async function startNode(options: {
  torrent: SwarmTorrent
  path: string
  role: 'server' | 'client'
  settings?: Partial<SwarmSettings>
  existing?: 'held' | 'scan'
  /** The image server a client trusts: the node (or listening peer) at this port on
   * loopback. The client dials it at start. */
  imageServerPort?: number
  /** Several image servers (a primary and its mirrors), each at one of these ports. */
  imageServerPorts?: number[]
  nodeName?: string
}): Promise<Node> {
  const host = await SwarmHost.listen(0, '127.0.0.1')
  const peerId = makePeerId(options.role)
  const swarm = await ArchiveSwarm.start({
    torrent: options.torrent,
    path: options.path,
    peerId,
    host,
    settings: SwarmSettingsSchema.parse(options.settings ?? {}),
    existing: options.existing ?? (options.role === 'server' ? 'held' : 'scan'),
    firstCopy: options.role === 'server' && (options.settings?.firstCopy ?? true),
    nodeName: options.nodeName,
    imageServers: [
      ...(options.imageServerPort ? [options.imageServerPort] : []),
      ...(options.imageServerPorts ?? []),
    ].map((port) => ({ host: '127.0.0.1', port })),
  })
  return {
    peerId,
    host,
    swarm,
    path: options.path,
    address: `127.0.0.1:${host.port}`,
    async close() {
      await swarm.close()
      await host.close()
    },
  }
}

export function finished(swarm: ArchiveSwarm, timeoutMs = 60_000): Promise<void> {
  if (swarm.done) return Promise.resolve()
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('download did not finish')), timeoutMs)
    swarm.once('done', () => {
      clearTimeout(timer)
      resolve()
    })
  })
}
