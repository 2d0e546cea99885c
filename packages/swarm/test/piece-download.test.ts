import { describe, expect, it } from 'vitest'
import { type BlockRequest, PieceDownload } from '../src/piece-download.js'
import { BLOCK_LENGTH, LARGE_BLOCK_LENGTH } from '../src/torrent.js'

// The block bookkeeping alone: peers are plain names, nothing goes over a socket.
type FakePeer = string
const IMAGESWARM: FakePeer = 'imageswarm peer'
const OTHER_IMAGESWARM: FakePeer = 'another imageswarm peer'
const FOREIGN: FakePeer = 'libtorrent peer'
const PIECE_LENGTH = 1024 * 1024

function piece(length = PIECE_LENGTH) {
  const data = Buffer.alloc(length)
  return new PieceDownload<FakePeer>(0, length, data)
}

/** The bytes a request should bring: each byte is its offset in the piece, mod 251. */
function bytesFor(request: BlockRequest<FakePeer>): Uint8Array {
  const data = new Uint8Array(request.length)
  for (let i = 0; i < data.length; i++) data[i] = (request.offset + i) % 251
  return data
}

function ask(download: PieceDownload<FakePeer>, peer: FakePeer, blockLength: number) {
  const request = download.nextFree(peer, blockLength)
  if (!request) throw new Error(`nothing free for ${peer}`)
  download.asked(request)
  return request
}

describe('PieceDownload', () => {
  it('asks imageswarm peers for aligned 128 KiB blocks and foreign peers for 16 KiB', () => {
    const download = piece()
    const large = ask(download, IMAGESWARM, LARGE_BLOCK_LENGTH)
    expect([large.offset, large.length]).toEqual([0, LARGE_BLOCK_LENGTH])
    const small = ask(download, FOREIGN, BLOCK_LENGTH)
    expect([small.offset, small.length]).toEqual([LARGE_BLOCK_LENGTH, BLOCK_LENGTH])
    // The next large block stops at the 256 KiB boundary, so later ones stay aligned.
    const rest = ask(download, OTHER_IMAGESWARM, LARGE_BLOCK_LENGTH)
    expect([rest.offset, rest.length]).toEqual([
      LARGE_BLOCK_LENGTH + BLOCK_LENGTH,
      LARGE_BLOCK_LENGTH - BLOCK_LENGTH,
    ])
    expect(ask(download, IMAGESWARM, LARGE_BLOCK_LENGTH).offset).toBe(2 * LARGE_BLOCK_LENGTH)
  })

  it('ends the last request at the end of a short piece', () => {
    const download = piece(3 * BLOCK_LENGTH + 100)
    const request = ask(download, IMAGESWARM, LARGE_BLOCK_LENGTH)
    expect([request.count, request.length]).toEqual([4, 3 * BLOCK_LENGTH + 100])
    expect(download.nextFree(FOREIGN, BLOCK_LENGTH)).toBeUndefined()
  })

  it('lets a foreign peer finish a piece begun in large blocks by a peer that stalls', () => {
    const download = piece()
    // The imageswarm peer was asked for the first two large blocks and never answers.
    const stalled = [
      ask(download, IMAGESWARM, LARGE_BLOCK_LENGTH),
      ask(download, IMAGESWARM, LARGE_BLOCK_LENGTH),
    ]
    // The foreign peer takes every free unit, 16 KiB at a time.
    let request = download.nextFree(FOREIGN, BLOCK_LENGTH)
    while (request) {
      expect(request.length).toBe(BLOCK_LENGTH)
      download.asked(request)
      expect(download.received(request, bytesFor(request))).toEqual([])
      request = download.nextFree(FOREIGN, BLOCK_LENGTH)
    }
    expect(download.complete).toBe(false)
    // Endgame: it takes over the stalled large blocks in 16 KiB parts. The last part of
    // each makes that large request useless: it is returned, to be cancelled.
    const cancelled: BlockRequest<FakePeer>[] = []
    let duplicate = download.duplicable(FOREIGN, BLOCK_LENGTH)
    while (duplicate) {
      expect(duplicate.length).toBe(BLOCK_LENGTH)
      download.asked(duplicate)
      cancelled.push(...(download.received(duplicate, bytesFor(duplicate)) ?? []))
      duplicate = download.duplicable(FOREIGN, BLOCK_LENGTH)
    }
    expect(cancelled).toEqual(stalled)
    expect(download.complete).toBe(true)
    expect([...download.contributors]).toEqual([FOREIGN])
    const whole = bytesFor({ peer: FOREIGN, first: 0, count: 64, offset: 0, length: PIECE_LENGTH })
    expect(download.data.equals(Buffer.from(whole))).toBe(true)
  })

  it('does not offer a peer its own request to duplicate, nor a part asked of two', () => {
    const download = piece(2 * BLOCK_LENGTH)
    const first = ask(download, IMAGESWARM, LARGE_BLOCK_LENGTH)
    expect(download.duplicable(IMAGESWARM, LARGE_BLOCK_LENGTH)).toBeUndefined()
    const copy = download.duplicable(FOREIGN, BLOCK_LENGTH)!
    download.asked(copy)
    const second = download.duplicable(OTHER_IMAGESWARM, LARGE_BLOCK_LENGTH)!
    // The first unit is asked of two already; the second only of the imageswarm peer.
    expect([second.offset, second.length]).toEqual([BLOCK_LENGTH, BLOCK_LENGTH])
    expect(first.count).toBe(2)
  })

  it('frees the units of a failed request unless another request covers them', () => {
    const download = piece(2 * BLOCK_LENGTH)
    const large = ask(download, IMAGESWARM, LARGE_BLOCK_LENGTH)
    const copy = download.duplicable(FOREIGN, BLOCK_LENGTH)!
    download.asked(copy)
    download.failed(large)
    // Unit 0 is still asked of the foreign peer; unit 1 is free again.
    const next = download.nextFree(OTHER_IMAGESWARM, LARGE_BLOCK_LENGTH)!
    expect([next.offset, next.length]).toEqual([BLOCK_LENGTH, BLOCK_LENGTH])
    download.failed(copy)
    expect(download.nextFree(OTHER_IMAGESWARM, LARGE_BLOCK_LENGTH)?.offset).toBe(0)
  })

  it('keeps the bytes that arrived first and counts a late duplicate as nothing new', () => {
    const download = piece(2 * BLOCK_LENGTH)
    const large = ask(download, IMAGESWARM, LARGE_BLOCK_LENGTH)
    const part = download.duplicable(FOREIGN, BLOCK_LENGTH)!
    download.asked(part)
    expect(download.received(part, new Uint8Array(BLOCK_LENGTH).fill(1))).toEqual([])
    // The large block brings unit 0 again (ignored) and unit 1 (kept).
    expect(download.received(large, new Uint8Array(2 * BLOCK_LENGTH).fill(2))).toEqual([])
    expect(download.data[0]).toBe(1)
    expect(download.data[BLOCK_LENGTH]).toBe(2)
    expect(download.complete).toBe(true)
    expect(download.received(part, new Uint8Array(BLOCK_LENGTH))).toBeUndefined()
    expect([...download.contributors].sort()).toEqual([FOREIGN, IMAGESWARM].sort())
  })
})
