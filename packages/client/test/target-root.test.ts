import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { INCOMPLETE_MARKER, isImageSwarmError, parseInfoHash } from '@imageswarm/core'
import { afterEach, describe, expect, it } from 'vitest'
import { markIncomplete, prepareTargetRoot, readIncompleteMarker } from '../src/target-root.js'

const OLD = { name: 'node', infoHash: parseInfoHash('1'.repeat(40)) }
const NEW = { name: 'node', infoHash: parseInfoHash('2'.repeat(40)) }

const made: string[] = []
afterEach(async () => {
  for (const dir of made.splice(0)) await rm(dir, { recursive: true, force: true })
})

async function makeTarget(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'imageswarm-target-'))
  made.push(dir)
  return join(dir, 'a')
}

/** What an install of OLD killed during extraction leaves: its marker and some of its files. */
async function interruptedInstall(target: string, targetWasEmpty = true) {
  await mkdir(join(target, 'lost+found'), { recursive: true })
  await mkdir(join(target, 'tmp', 'imageswarm-node'), { recursive: true })
  await writeFile(join(target, 'tmp', 'imageswarm-node', 'image-node.tar.zst'), 'partial')
  await markIncomplete(target, { image: OLD.name, infoHash: OLD.infoHash, targetWasEmpty })
  await mkdir(join(target, 'etc'))
  await writeFile(join(target, 'etc', 'only-in-the-old-image'), 'old')
  await writeFile(join(target, 'tmp', 'left-by-the-image'), 'x')
  await symlink('/etc/passwd', join(target, 'link-out'))
}

async function prepareError(promise: Promise<unknown>) {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  )
  if (!isImageSwarmError(err)) throw new Error(`expected an ImageSwarmError, got ${String(err)}`)
  return err
}

describe('prepareTargetRoot', () => {
  it('takes an empty target and records that it was empty', async () => {
    const target = await makeTarget()
    expect(await prepareTargetRoot(target, false, NEW)).toEqual({ targetWasEmpty: true })
    await mkdir(join(target, 'lost+found'))
    await mkdir(join(target, 'tmp', 'imageswarm-node'), { recursive: true })
    expect(await prepareTargetRoot(target, false, NEW)).toEqual({ targetWasEmpty: true })
  })

  it('refuses a target with files unless forced, and records a forced one as not empty', async () => {
    const target = await makeTarget()
    await mkdir(join(target, 'etc'), { recursive: true })
    const err = await prepareError(prepareTargetRoot(target, false, NEW))
    expect(err.code).toBe('E_TARGET_NOT_EMPTY')
    expect(await prepareTargetRoot(target, true, NEW)).toEqual({ targetWasEmpty: false })
  })

  it('records the archive in the marker', async () => {
    const target = await makeTarget()
    await mkdir(target)
    await markIncomplete(target, { image: 'node', infoHash: OLD.infoHash, targetWasEmpty: true })
    const marker = await readIncompleteMarker(target)
    expect(marker).toEqual({
      found: true,
      install: {
        image: 'node',
        infoHash: OLD.infoHash,
        started: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
        targetWasEmpty: true,
      },
    })
    expect(await readFile(join(target, INCOMPLETE_MARKER), 'utf8')).toMatch(
      /imageswarm started installing an image here and has not finished/,
    )
  })

  it('extracts over an interrupted install of the same archive, removing nothing', async () => {
    const target = await makeTarget()
    await interruptedInstall(target)
    const prepared = await prepareTargetRoot(target, false, OLD)
    expect(prepared.resumed?.infoHash).toBe(OLD.infoHash)
    expect(prepared.targetWasEmpty).toBe(true)
    expect(await readFile(join(target, 'etc', 'only-in-the-old-image'), 'utf8')).toBe('old')
  })

  it('removes what an interrupted install of another archive wrote, keeping lost+found and our staging', async () => {
    const target = await makeTarget()
    await interruptedInstall(target)
    const prepared = await prepareTargetRoot(target, false, NEW)
    expect(prepared.startedOver?.previous?.infoHash).toBe(OLD.infoHash)
    expect(prepared.startedOver?.removed.sort()).toEqual([
      'etc',
      'link-out',
      'tmp/* (but our staging)',
    ])
    expect(prepared.targetWasEmpty).toBe(true)
    expect((await readdir(target)).sort()).toEqual(['lost+found', 'tmp'])
    expect(await readdir(join(target, 'tmp'))).toEqual(['imageswarm-node'])
    // The partial archive stays: the download checks its pieces and keeps what matches.
    expect(await readdir(join(target, 'tmp', 'imageswarm-node'))).toEqual(['image-node.tar.zst'])
    // The link was removed, not what it pointed to.
    expect(await readFile('/etc/passwd', 'utf8')).not.toBe('')
    // Nothing of the old install is left to resume: the next run sees an empty target.
    expect(await readIncompleteMarker(target)).toEqual({ found: false })
    expect(await prepareTargetRoot(target, false, NEW)).toEqual({ targetWasEmpty: true })
  })

  it('starts over from a marker that records no archive (an older client’s)', async () => {
    const target = await makeTarget()
    await mkdir(join(target, 'usr', 'bin'), { recursive: true })
    await writeFile(
      join(target, INCOMPLETE_MARKER),
      'imageswarm started installing an image here at 2024-05-01T12:00:00.000Z and has not finished.\n',
    )
    const prepared = await prepareTargetRoot(target, false, NEW)
    expect(prepared.startedOver).toEqual({ removed: ['usr'] })
    expect(await readdir(target)).toEqual([])
  })

  it('refuses, even forced, an interrupted install of another archive that was forced over files', async () => {
    const target = await makeTarget()
    await interruptedInstall(target, false)
    for (const force of [false, true]) {
      const err = await prepareError(prepareTargetRoot(target, force, NEW))
      expect(err.code).toBe('E_TARGET_NOT_EMPTY')
      expect(err.message).toMatch(
        /holds an interrupted install of image node \(infohash 1{40}, started .*\), forced over files that were there; image node is now infohash 2{40}/,
      )
      expect(err.hint).toMatch(/make the filesystem again/)
    }
    expect(await readFile(join(target, 'etc', 'only-in-the-old-image'), 'utf8')).toBe('old')
  })
})
