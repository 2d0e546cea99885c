import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PieceHasher } from '@imageswarm/core'
import createTorrent from 'create-torrent'
import parseTorrent from 'parse-torrent'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createImageTorrent, torrentForServers } from '../src/torrent-file.js'

let dir: string
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'seeder-torrent-'))
})
afterEach(async () => {
  await rm(dir, { recursive: true, force: true })
})

/** What create-torrent 6 writes for the file, hashing it itself. */
function referenceTorrent(
  path: string,
  options: { name: string; pieceLength: number; announce: string; webSeed: string; created: Date },
): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    createTorrent(
      path,
      {
        name: options.name,
        pieceLength: options.pieceLength,
        private: true,
        announceList: [[options.announce]],
        urlList: [options.webSeed],
        createdBy: 'imageswarm',
        creationDate: options.created,
      },
      (err, torrent) => (err ? reject(err) : resolve(torrent)),
    )
  })
}

describe('createImageTorrent', () => {
  it('writes the bytes create-torrent writes, from piece hashes computed elsewhere', async () => {
    const pieceLength = 16384
    // A last piece shorter than the others, as archives almost always have.
    const archive = randomBytes(7 * pieceLength + 999)
    const path = join(dir, 'image-node.tar.zst')
    await writeFile(path, archive)
    const pieces = new PieceHasher(pieceLength)
    pieces.update(archive)
    const options = {
      name: 'image-node.tar.zst',
      pieceLength,
      announce: 'http://10.0.0.1:6969/announce',
      webSeed: 'http://10.0.0.1:6969/images/node/image-node.tar.zst',
      created: new Date('2026-11-22T10:00:00.500Z'),
    }

    const torrent = createImageTorrent({
      ...options,
      length: archive.length,
      pieces: pieces.digest(),
    })

    expect(Buffer.from(torrent)).toEqual(Buffer.from(await referenceTorrent(path, options)))
    const parsed = await parseTorrent(torrent)
    expect(parsed.private).toBe(true)
    expect(parsed.length).toBe(archive.length)
    expect(parsed.pieces).toHaveLength(8)
  })

  it('refuses piece hashes that do not cover the archive', () => {
    const pieces = new PieceHasher(16384)
    pieces.update(Buffer.alloc(16384))
    expect(() =>
      createImageTorrent({
        name: 'image-node.tar.zst',
        length: 2 * 16384,
        pieceLength: 16384,
        pieces: pieces.digest(),
        announce: 'http://10.0.0.1:6969/announce',
        webSeed: 'http://10.0.0.1:6969/images/node/image-node.tar.zst',
        created: new Date(),
      }),
    ).toThrow(/1 piece hashes for 2 pieces/)
  })
})

describe('torrentForServers', () => {
  it('lists every server in one tier and as web seeds, keeping the infohash', async () => {
    const path = join(dir, 'image-node.tar.zst')
    const data = randomBytes(40_000)
    await writeFile(path, data)
    const hasher = new PieceHasher(16_384)
    hasher.update(data)
    const torrent = createImageTorrent({
      name: 'image-node.tar.zst',
      length: data.length,
      pieceLength: 16_384,
      pieces: hasher.digest(),
      announce: 'http://10.0.0.1:6969/announce',
      webSeed: 'http://10.0.0.1:6969/images/node/image-node.tar.zst',
      created: new Date('2026-01-01T00:00:00Z'),
    })
    const servers = ['http://10.0.0.2:6969', 'http://10.0.0.1:6969', 'https://mirror.example:8443']
    const listed = await parseTorrent(
      torrentForServers(torrent, servers, 'node', 'image-node.tar.zst'),
    )
    const original = await parseTorrent(torrent)
    expect(listed.infoHash).toBe(original.infoHash)
    expect(listed.private).toBe(true)
    expect(listed.announce).toEqual(servers.map((server) => `${server}/announce`))
    expect(listed.urlList).toEqual(
      servers.map((server) => `${server}/images/node/image-node.tar.zst`),
    )
  })

  it('keeps the torrent as published when no server is listed', () => {
    const torrent = new Uint8Array([1, 2, 3])
    expect(torrentForServers(torrent, [], 'node', 'image-node.tar.zst')).toBe(torrent)
  })
})
