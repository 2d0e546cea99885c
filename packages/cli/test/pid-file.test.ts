import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { PidFile, stopServer } from '../src/pid-file.js'

let dir: string
let path: string
const children: ReturnType<typeof spawn>[] = []

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cli-pid-file-'))
  path = join(dir, 'serve.pid')
})

afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await once(child, 'exit')
    }
  }
  await rm(dir, { recursive: true, force: true })
})

/** `sleep 60`, started by this test; with `holding`, it keeps the PID file open as a server does. */
async function bystander(holding = false) {
  const file = holding ? await open(path, 'a') : undefined
  const child = spawn('sleep', ['60'], {
    stdio: ['ignore', 'ignore', 'ignore', file?.fd ?? 'ignore'],
  })
  children.push(child)
  await once(child, 'spawn')
  await file?.close()
  return child
}

describe('the PID file', () => {
  it('never signals a process that does not hold it: stale, removed, E_SERVER_NOT_RUNNING', async () => {
    const other = await bystander()
    await writeFile(path, `${other.pid}\n`)
    await expect(stopServer(path)).rejects.toMatchObject({
      code: 'E_SERVER_NOT_RUNNING',
      exitCode: 13,
      message: expect.stringContaining(`named pid ${other.pid}, which is not an image server now`),
    })
    expect(other.exitCode).toBeNull()
    expect(other.signalCode).toBeNull()
    await expect(stat(path)).rejects.toThrow(/ENOENT/)
  })

  it('is taken over from a process that does not hold it, and released by its owner', async () => {
    const other = await bystander()
    await writeFile(path, `${other.pid}\n`)
    const pidFile = await PidFile.claim(path)
    expect(await readFile(path, 'utf8')).toBe(`${process.pid}\n`)
    await pidFile.release()
    await expect(stat(path)).rejects.toThrow(/ENOENT/)
  })

  it('refuses a second server while the recorded one holds it, and stop signals that one', async () => {
    await writeFile(path, '')
    const server = await bystander(true)
    await writeFile(path, `${server.pid}\n`)
    await expect(PidFile.claim(path)).rejects.toMatchObject({
      code: 'E_SERVER_RUNNING',
      message: expect.stringContaining(`pid ${server.pid}`),
    })
    const exited = once(server, 'exit')
    expect(await stopServer(path)).toBe(server.pid)
    expect(await exited).toEqual([null, 'SIGTERM'])
  })

  it('says no server runs when there is no PID file', async () => {
    await expect(stopServer(path)).rejects.toMatchObject({ code: 'E_SERVER_NOT_RUNNING' })
  })
})
