import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { errnoOf, ImageSwarmError } from '@imageswarm/core'

/** Where a running server records its PID, for `imageswarm stop` / `si_stopbttrack`. */
export const DEFAULT_PID_FILE = '/run/imageswarm/serve.pid'

/** Records this process as the running server; refuses if another one is alive. */
export async function claimPidFile(path: string): Promise<void> {
  const other = await readPid(path)
  if (other !== undefined && other !== process.pid && isAlive(other)) {
    throw new ImageSwarmError('E_SERVER_RUNNING', `an image server already runs (pid ${other})`, {
      operation: 'start server',
      path,
      hint: 'stop it first (imageswarm stop / si_stopbttrack), or give another --pid-file',
    })
  }
  await mkdir(dirname(path), { recursive: true })
  await writeFile(path, `${process.pid}\n`)
}

export async function releasePidFile(path: string): Promise<void> {
  if ((await readPid(path)) === process.pid) await rm(path, { force: true })
}

/** Stops the server recorded in the PID file: SIGTERM, then waits for it to exit. */
export async function stopServer(path: string, timeoutSeconds = 30): Promise<number> {
  const pid = await readPid(path)
  if (pid === undefined || !isAlive(pid)) {
    await rm(path, { force: true })
    throw new ImageSwarmError('E_SERVER_NOT_RUNNING', 'no image server is running', {
      operation: 'stop server',
      path,
      hint: 'nothing to stop; if a server runs with another --pid-file, give that one',
    })
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
