import { spawn } from 'node:child_process'
import { constants } from 'node:fs'
import { type FileHandle, mkdir, open, readFile, realpath, stat, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { errnoOf, ImageSwarmError } from '@imageswarm/core'

/** The lock file in each state directory while it is held; it names the holder: `PID START`. */
export const STATE_LOCK_FILE = '.imageswarm.lock'

/** flock's exit code when another process holds the lock (EX_TEMPFAIL). */
const CONFLICT_EXIT_CODE = 75

/** Attempts to lock a file that keeps being replaced under us (see `lockFile`). */
const LOCK_ATTEMPTS = 5

/** A directory imageswarm writes archives, torrents or manifests into. */
export interface StateDirectory {
  dir: string
  /** What it holds, with its flag: `archives (--tarballs-dir)`. */
  what: string
}

/** The directories a seeder config writes into: what `serve` and `publish` lock. */
export function stateDirectoriesOf(config: {
  tarballsDir: string
  torrentsDir: string
}): StateDirectory[] {
  return [
    { dir: config.tarballsDir, what: 'archives (--tarballs-dir)' },
    { dir: config.torrentsDir, what: 'torrents (--torrents-dir)' },
  ]
}

/**
 * An exclusive lock on the server's state directories (tarballs and torrents), held by
 * `imageswarm serve` while it runs and by `imageswarm publish` while it packs: two
 * processes on the same directories would otherwise rewrite each other's archives and
 * `.torrent`s under the files the other serves.
 *
 * The lock is the kernel's `flock(2)` on `DIR/.imageswarm.lock`. Node has no flock, so
 * util-linux `flock` takes it on a descriptor this process opened and hands down (the
 * shell's `exec 9>file; flock -n 9`): a flock belongs to the open file, which this process
 * keeps, so it holds after the helper exits and the kernel drops it the moment this
 * process exits, however it exits (SIGKILL included). No stale lock outlives a crash,
 * and flock works across PID and mount namespaces. The file records the holder's PID and
 * start time, so a refusal can say who holds it, and is removed on release.
 *
 * @example
 *   const lock = await StateLock.acquire(stateDirectoriesOf(config), 'serve')
 *   try { ... } finally { await lock.release() }
 */
export class StateLock {
  readonly #held: readonly HeldFile[]

  private constructor(held: readonly HeldFile[]) {
    this.#held = held
  }

  /**
   * Locks every directory (created if missing) or throws `E_SERVER_RUNNING` naming the
   * directory, the PID holding it and what to do. `command` is what this process is
   * (`serve`, `publish`), for the message.
   */
  static async acquire(dirs: readonly StateDirectory[], command: string): Promise<StateLock> {
    const held: HeldFile[] = []
    try {
      const record = `${process.pid} ${await processStartTicks(process.pid)}\n`
      for (const target of await lockTargets(dirs)) {
        held.push(await lockFile(target, command, record))
      }
    } catch (err) {
      await new StateLock(held).release()
      throw err
    }
    return new StateLock(held)
  }

  /** Removes the lock files, while they are still ours, and lets go of the locks. */
  async release(): Promise<void> {
    for (const { file, handle } of this.#held) {
      if (await isLockedFile(handle, file)) await unlink(file).catch(() => undefined)
      await handle.close().catch(() => undefined)
    }
  }
}

interface LockTarget extends StateDirectory {
  file: string
}

interface HeldFile {
  file: string
  handle: FileHandle
}

/** One lock file per distinct directory: the same directory twice would refuse itself. */
async function lockTargets(dirs: readonly StateDirectory[]): Promise<LockTarget[]> {
  const targets = new Map<string, LockTarget>()
  for (const { dir, what } of dirs) {
    try {
      await mkdir(dir, { recursive: true })
    } catch (err) {
      throw new ImageSwarmError(
        'E_PACK_FAILED',
        `cannot create the directory for ${what}: ${dir}`,
        {
          operation: 'lock state directory',
          path: dir,
          hint: 'choose a writable directory',
          cause: err,
        },
      )
    }
    const real = await realpath(dir)
    if (!targets.has(real)) targets.set(real, { dir, what, file: join(real, STATE_LOCK_FILE) })
  }
  return [...targets.values()]
}

/**
 * Opens the lock file, has flock lock that open file and checks it is still the file at
 * the path: a holder removes it on release, so a lock taken on the removed file is let go
 * and taken again on the new one.
 */
async function lockFile(target: LockTarget, command: string, record: string): Promise<HeldFile> {
  for (let attempt = 0; attempt < LOCK_ATTEMPTS; attempt++) {
    const handle = await open(target.file, constants.O_RDWR | constants.O_CREAT, 0o644).catch(
      (err: unknown) => {
        throw cannotLock(target, errnoOf(err) ?? String(err), err)
      },
    )
    let locked: boolean
    try {
      locked = await flockDescriptor(handle, target)
    } catch (err) {
      await handle.close()
      throw err
    }
    if (!locked) {
      await handle.close()
      throw await lockHeld(target, command)
    }
    if (await isLockedFile(handle, target.file)) {
      await handle.truncate(0)
      await handle.write(record, 0)
      return { file: target.file, handle }
    }
    await handle.close()
  }
  throw cannotLock(target, `the lock file kept being replaced (${LOCK_ATTEMPTS} attempts)`)
}

/** `flock --nonblock 3` on our descriptor: true when locked, false when another holds it. */
function flockDescriptor(handle: FileHandle, target: LockTarget): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const helper = spawn(
      'flock',
      ['--nonblock', '--conflict-exit-code', String(CONFLICT_EXIT_CODE), '3'],
      { stdio: ['ignore', 'ignore', 'pipe', handle.fd] },
    )
    let stderr = ''
    helper.stderr?.setEncoding('utf8').on('data', (text: string) => {
      stderr += text
    })
    helper.once('error', (err) => {
      reject(
        errnoOf(err) === 'ENOENT'
          ? new ImageSwarmError('E_TOOL_MISSING', 'flock not found', {
              operation: 'find flock',
              path: 'flock',
              hint: "install the Debian package 'util-linux' (apt-get install util-linux)",
              cause: err,
            })
          : err,
      )
    })
    helper.once('close', (code, signal) => {
      if (code === 0) return resolve(true)
      if (code === CONFLICT_EXIT_CODE) return resolve(false)
      const how = code === null ? `was killed by ${signal}` : `exited with ${code}`
      reject(cannotLock(target, `flock ${how}: ${stderr.trim()}`))
    })
  })
}

/** Whether the path still names the file behind `handle`. */
async function isLockedFile(handle: FileHandle, file: string): Promise<boolean> {
  const [held, named] = await Promise.all([
    handle.stat().catch(() => undefined),
    stat(file).catch(() => undefined),
  ])
  return (
    held !== undefined && named !== undefined && held.dev === named.dev && held.ino === named.ino
  )
}

interface Holder {
  pid: number
  startTicks: string
}

async function readHolder(file: string): Promise<Holder | undefined> {
  const text = await readFile(file, 'utf8').catch(() => '')
  const [pid, startTicks] = text.trim().split(/\s+/)
  const number = Number(pid)
  if (!Number.isSafeInteger(number) || number <= 0 || !startTicks) return undefined
  return { pid: number, startTicks }
}

/**
 * A process's start time in clock ticks since boot (`/proc/PID/stat`, field 22): with the
 * PID, it names one process for as long as the machine runs, even once the PID is reused.
 */
export async function processStartTicks(pid: number): Promise<string> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
  // The command name (field 2) is in parentheses and may hold spaces and ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const ticks = fields[19]
  if (ticks === undefined) throw new Error(`/proc/${pid}/stat has no start time`)
  return ticks
}

async function lockHeld(target: LockTarget, command: string): Promise<ImageSwarmError> {
  const holder = await readHolder(target.file)
  // The record names the holder only while that very process runs (same start time).
  const running =
    holder !== undefined &&
    (await processStartTicks(holder.pid).catch(() => undefined)) === holder.startTicks
      ? holder
      : undefined
  const who = running ? `another imageswarm process (pid ${running.pid})` : 'another process'
  const elsewhere = `or give this ${command} other --tarballs-dir and --torrents-dir`
  return new ImageSwarmError(
    'E_SERVER_RUNNING',
    `directory ${target.dir}, for ${target.what}, is in use by ${who}: two servers on the same directories would rewrite each other's archives and .torrents`,
    {
      operation: `${command}: lock state directory`,
      path: target.file,
      hint: running
        ? `stop it first (imageswarm stop, si_stopbttrack, or kill ${running.pid}), ${elsewhere}`
        : `find it with fuser -v ${target.file}, ${elsewhere}`,
    },
  )
}

function cannotLock(target: LockTarget, why: string, cause?: unknown): ImageSwarmError {
  return new ImageSwarmError('E_PACK_FAILED', `cannot lock ${target.dir}: ${why}`, {
    operation: 'lock state directory',
    path: target.file,
    hint: `check that ${target.dir} is writable by this user`,
    ...(cause === undefined ? {} : { cause }),
  })
}
