import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { type ImageManifest, isImageSwarmError } from '@imageswarm/core'
import { afterEach, describe, expect, it } from 'vitest'
import { chooseStaging } from '../src/staging.js'

const run = promisify(execFile)
const isRoot = process.getuid?.() === 0
const MiB = 1024 * 1024

const made: string[] = []
const mounts: string[] = []
afterEach(async () => {
  for (const mount of mounts.splice(0)) await run('umount', [mount])
  for (const dir of made.splice(0)) await rm(dir, { recursive: true, force: true })
})

async function workDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'imageswarm-staging-'))
  made.push(dir)
  return dir
}

/** A tmpfs of `bytes`, to run out of space on purpose. */
async function smallFilesystem(dir: string, bytes: number): Promise<string> {
  await mkdir(dir, { recursive: true })
  await run('mount', ['-t', 'tmpfs', '-o', `size=${bytes}`, 'tmpfs', dir])
  mounts.push(dir)
  return dir
}

const manifest = (size: number) =>
  ({ name: 'node', archiveFile: 'image-node.tar.zst', size }) as ImageManifest

async function stagingError(promise: Promise<unknown>) {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  )
  if (!isImageSwarmError(err)) throw new Error(`expected an ImageSwarmError, got ${String(err)}`)
  return err
}

describe.skipIf(!isRoot)('chooseStaging on filesystems too small (root: mounts tmpfs)', () => {
  it('is E_NO_SPACE with the numbers when the given staging cannot hold the archive', async () => {
    const dir = await workDir()
    const staging = await smallFilesystem(join(dir, 'staging'), 4 * MiB)
    const err = await stagingError(chooseStaging(staging, join(dir, 'a'), manifest(16 * MiB), 0))
    expect(err.code).toBe('E_NO_SPACE')
    expect(err.message).toBe(
      `staging directory ${staging} has 4.0 MiB free; the archive needs 16.0 MiB`,
    )
    expect(err.hint).toMatch(/BITTORRENT_STAGING= \/ --staging/)
    expect(await readdir(staging)).toEqual([])
  })

  it('counts what an interrupted download already holds', async () => {
    const dir = await workDir()
    const staging = await smallFilesystem(join(dir, 'staging'), 8 * MiB)
    await writeFile(join(staging, 'image-node.tar.zst'), Buffer.alloc(6 * MiB, 1))
    // 2 MiB free, 6 MiB of the 7 MiB archive already there.
    const choice = await chooseStaging(staging, join(dir, 'a'), manifest(7 * MiB), 0)
    expect(choice).toEqual({ dir: staging, kind: 'given', removeAfter: false })
  })

  it('stages on the target disk when memory is free but the tmpfs is too small', async () => {
    const dir = await workDir()
    const memory = await smallFilesystem(join(dir, 'tmpfs'), 1 * MiB)
    const target = join(dir, 'a')
    const choice = await chooseStaging('auto', target, manifest(4 * MiB), 0, memory)
    expect(choice).toEqual({
      dir: join(target, 'tmp', 'imageswarm-node'),
      kind: 'target-disk',
      removeAfter: true,
    })
    // The directory tried in the tmpfs is not left behind.
    expect(await readdir(memory)).toEqual([])
  })

  it('is E_NO_SPACE naming the target disk when neither can hold the archive', async () => {
    const dir = await workDir()
    const memory = await smallFilesystem(join(dir, 'tmpfs'), 1 * MiB)
    const target = await smallFilesystem(join(dir, 'a'), 2 * MiB)
    const err = await stagingError(chooseStaging('auto', target, manifest(4 * MiB), 0, memory))
    expect(err.code).toBe('E_NO_SPACE')
    expect(err.path).toBe(join(target, 'tmp', 'imageswarm-node'))
  })
})

describe('chooseStaging by name: tmpfs or target', () => {
  it('stages where it is told, whatever memory is free', async () => {
    const dir = await workDir()
    const memory = join(dir, 'tmpfs')
    const target = join(dir, 'a')
    expect(await chooseStaging('tmpfs', target, manifest(MiB), 0, memory)).toEqual({
      dir: join(memory, 'imageswarm-node'),
      kind: 'memory',
      removeAfter: true,
    })
    expect(await chooseStaging('target', target, manifest(MiB), 64 * 1024 * MiB, memory)).toEqual({
      dir: join(target, 'tmp', 'imageswarm-node'),
      kind: 'target-disk',
      removeAfter: true,
    })
  })

  it.skipIf(!isRoot)('is E_NO_SPACE when the tmpfs asked for cannot hold the archive', async () => {
    const dir = await workDir()
    const memory = await smallFilesystem(join(dir, 'tmpfs'), 1 * MiB)
    const err = await stagingError(
      chooseStaging('tmpfs', join(dir, 'a'), manifest(4 * MiB), 0, memory),
    )
    expect(err.code).toBe('E_NO_SPACE')
    expect(err.path).toBe(join(memory, 'imageswarm-node'))
  })
})
