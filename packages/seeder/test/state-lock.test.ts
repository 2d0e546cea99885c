import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  processStartTicks,
  STATE_LOCK_FILE,
  StateLock,
  stateDirectoriesOf,
} from '../src/state-lock.js'

let dir: string
let dirs: ReturnType<typeof stateDirectoriesOf>
const locks: StateLock[] = []
const children: ReturnType<typeof spawn>[] = []

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'seeder-lock-'))
  dirs = stateDirectoriesOf({
    tarballsDir: join(dir, 'tarballs'),
    torrentsDir: join(dir, 'torrents'),
  })
})

afterEach(async () => {
  for (const lock of locks.splice(0)) await lock.release()
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await once(child, 'exit')
    }
  }
  await rm(dir, { recursive: true, force: true })
})

async function acquire(command = 'serve'): Promise<StateLock> {
  const lock = await StateLock.acquire(dirs, command)
  locks.push(lock)
  return lock
}

describe('StateLock', () => {
  it('records its holder and refuses a second holder, naming the directory and the PID', async () => {
    await acquire()
    const record = `${process.pid} ${await processStartTicks(process.pid)}\n`
    expect(await readFile(join(dir, 'tarballs', STATE_LOCK_FILE), 'utf8')).toBe(record)
    expect(await readFile(join(dir, 'torrents', STATE_LOCK_FILE), 'utf8')).toBe(record)
    const refused = StateLock.acquire(dirs, 'publish')
    await expect(refused).rejects.toMatchObject({
      code: 'E_SERVER_RUNNING',
      exitCode: 13,
      path: join(dir, 'tarballs', STATE_LOCK_FILE),
      message: expect.stringContaining(
        `${join(dir, 'tarballs')}, for archives (--tarballs-dir), is in use by another imageswarm process (pid ${process.pid})`,
      ),
      hint: expect.stringContaining('give this publish other --tarballs-dir and --torrents-dir'),
    })
  })

  it('names the torrents directory when only that one is held', async () => {
    const only = await StateLock.acquire([dirs[1]!], 'serve')
    locks.push(only)
    await expect(StateLock.acquire(dirs, 'serve')).rejects.toMatchObject({
      code: 'E_SERVER_RUNNING',
      path: join(dir, 'torrents', STATE_LOCK_FILE),
    })
    // The tarballs lock taken on the way was let go.
    await only.release()
    locks.splice(0)
    await acquire()
  })

  it('can be taken again once released, and locks one directory given twice once', async () => {
    const lock = await StateLock.acquire(dirs, 'serve')
    await lock.release()
    const same = { tarballsDir: join(dir, 'state'), torrentsDir: join(dir, 'state') }
    locks.push(await StateLock.acquire(stateDirectoriesOf(same), 'serve'))
    locks.push(await StateLock.acquire(dirs, 'serve'))
  })

  it('removes its lock files on release, so the directories hold only what was published', async () => {
    const lock = await StateLock.acquire(dirs, 'publish')
    await lock.release()
    expect(await readdir(join(dir, 'tarballs'))).toEqual([])
    expect(await readdir(join(dir, 'torrents'))).toEqual([])
  })

  it('is refused by a foreign holder, and free the moment that holder is killed', async () => {
    const file = join(dir, 'tarballs', STATE_LOCK_FILE)
    await mkdir(join(dir, 'tarballs'), { recursive: true })
    // A process that takes the lock as the shell does and keeps it (sleep inherits it).
    const holder = spawn(
      'sh',
      ['-c', `exec 9>>'${file}'; flock -n 9 && echo held && exec sleep 60`],
      {
        stdio: ['ignore', 'pipe', 'ignore'],
      },
    )
    children.push(holder)
    await once(holder.stdout, 'data')
    await expect(StateLock.acquire(dirs, 'serve')).rejects.toMatchObject({
      code: 'E_SERVER_RUNNING',
      message: expect.stringContaining('is in use by another process:'),
      hint: expect.stringContaining(`fuser -v ${file}`),
    })
    // Killed without a chance to clean up: its lock file stays, with its record.
    await writeFile(file, `${holder.pid} 1\n`)
    holder.kill('SIGKILL')
    await once(holder, 'exit')
    locks.push(await StateLock.acquire(dirs, 'serve'))
    expect(await readFile(file, 'utf8')).toBe(
      `${process.pid} ${await processStartTicks(process.pid)}\n`,
    )
  })
})
