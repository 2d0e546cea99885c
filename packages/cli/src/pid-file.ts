import { type FileHandle, mkdir, open, readdir, readFile, rm, stat } from 'node:fs/promises'
import { dirname } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { errnoOf, ImageSwarmError } from '@imageswarm/core'

/** Where a running server records its PID, for `imageswarm stop` / `si_stopbttrack`. */
export const DEFAULT_PID_FILE = '/run/imageswarm/serve.pid'

/**
 * The running server's PID file: the PID alone on one line (what `kill $(cat FILE)`
 * and service managers expect), and held open by the server for as long as it runs.
 * That open descriptor is how `stop` and the next `serve` tell the server from an
 * unrelated process that was given the same PID after the server died: only the
 * server holds this file open.
 */
export class PidFile {
  readonly path: string
  readonly #handle: FileHandle

  private constructor(path: string, handle: FileHandle) {
    this.path = path
    this.#handle = handle
  }

  /**
   * Records this process as the running server; refuses (E_SERVER_RUNNING) if the
   * file names a server that still runs. A file left by a server that is gone is
   * overwritten.
   */
  static async claim(path: string): Promise<PidFile> {
    const recorded = await readPid(path)
    if (recorded !== undefined && recorded !== process.pid) {
      const state = await serverState(recorded, path)
      if (state !== 'gone') {
        throw new ImageSwarmError(
          'E_SERVER_RUNNING',
          `an image server already runs (pid ${recorded}, PID file ${path})`,
          {
            operation: 'start server',
            path,
            hint: 'stop it first (imageswarm stop / si_stopbttrack), or give another --pid-file',
          },
        )
      }
    }
    await mkdir(dirname(path), { recursive: true })
    const handle = await open(path, 'w')
    try {
      await handle.writeFile(`${process.pid}\n`)
    } catch (err) {
      await handle.close()
      throw err
    }
    return new PidFile(path, handle)
  }

  /** Removes the file if it still names this process, and lets go of it. */
  async release(): Promise<void> {
    if ((await readPid(this.path).catch(() => undefined)) === process.pid) {
      await rm(this.path, { force: true })
    }
    await this.#handle.close()
  }
}

/**
 * Stops the server recorded in the PID file: SIGTERM, then waits for it to exit. A PID
 * that is not (any more) the server's, because the server is gone and the PID was given
 * to another process, is never signalled: the stale file is removed and the answer is
 * E_SERVER_NOT_RUNNING.
 */
export async function stopServer(path: string, timeoutSeconds = 30): Promise<number> {
  const pid = await readPid(path)
  if (pid === undefined) {
    throw new ImageSwarmError('E_SERVER_NOT_RUNNING', 'no image server is running', {
      operation: 'stop server',
      path,
      hint: `there is no PID file ${path}; if a server runs with another --pid-file, give that one`,
    })
  }
  const state = await serverState(pid, path)
  if (state === 'gone') {
    // Another server may have claimed the file since it was read: remove only our reading.
    if ((await readPid(path)) === pid) await rm(path, { force: true })
    throw new ImageSwarmError(
      'E_SERVER_NOT_RUNNING',
      `no image server is running: PID file ${path} named pid ${pid}, which is not an image server now`,
      {
        operation: 'stop server',
        path,
        hint: 'the server had stopped without removing it (a crash or kill -9); the stale file was removed and nothing was signalled',
      },
    )
  }
  if (state === 'unknown') {
    throw new ImageSwarmError(
      'E_SERVER_RUNNING',
      `cannot tell whether pid ${pid} is the image server: this user may not inspect or signal it`,
      {
        operation: 'stop server',
        path,
        hint: 'run imageswarm stop as the user that runs the server (root)',
      },
    )
  }
  process.kill(pid, 'SIGTERM')
  const deadline = Date.now() + timeoutSeconds * 1000
  while (isAlive(pid)) {
    if (Date.now() > deadline) {
      throw new ImageSwarmError(
        'E_SERVER_RUNNING',
        `server ${pid} did not stop in ${timeoutSeconds} s`,
        {
          operation: 'stop server',
          path,
          hint: `kill it by hand: kill -9 ${pid}`,
        },
      )
    }
    await sleep(100)
  }
  return pid
}

/**
 * Whether `pid` is the server that wrote the PID file at `path`: `running` when it holds
 * the file open, `gone` when there is no such process or it does not, `unknown` when this
 * user may not look at its descriptors.
 */
async function serverState(pid: number, path: string): Promise<'running' | 'gone' | 'unknown'> {
  if (!isAlive(pid)) return 'gone'
  let file: { dev: number; ino: number }
  try {
    file = await stat(path)
  } catch {
    return 'gone'
  }
  let fds: string[]
  try {
    fds = await readdir(`/proc/${pid}/fd`)
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return 'gone'
    return 'unknown'
  }
  for (const fd of fds) {
    const target = await stat(`/proc/${pid}/fd/${fd}`).catch(() => undefined)
    if (target && target.dev === file.dev && target.ino === file.ino) return 'running'
  }
  return 'gone'
}

async function readPid(path: string): Promise<number | undefined> {
  try {
    const pid = Number.parseInt(await readFile(path, 'utf8'), 10)
    return Number.isInteger(pid) && pid > 0 ? pid : undefined
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return undefined
    throw err
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return errnoOf(err) === 'EPERM'
  }
}
