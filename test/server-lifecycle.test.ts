import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { readdir, readFile, stat } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'
import { CLI, startServer } from '../scripts/lib/deployment.mjs'
import {
  addSampleImage,
  freePort,
  makeServerLayout,
  type ServerLayout,
  serverEnv,
} from './helpers/workspace.js'

const BIN = fileURLToPath(new URL('../packages/cli/bin/', import.meta.url))

let layout: ServerLayout | undefined
const children: ReturnType<typeof spawn>[] = []

afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await once(child, 'exit')
    }
  }
  await layout?.remove()
  layout = undefined
})

async function run(bin: string, args: string[], env: NodeJS.ProcessEnv) {
  const child = spawn(process.execPath, [bin, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  children.push(child)
  let output = ''
  child.stdout.on('data', (chunk) => (output += chunk))
  child.stderr.on('data', (chunk) => (output += chunk))
  const [code] = await once(child, 'exit')
  return { code: code as number, output }
}

describe('the server’s life cycle and SystemImager’s command names', () => {
  it('stops cleanly on `imageswarm stop` and removes its PID file', async () => {
    layout = await makeServerLayout()
    await addSampleImage(layout, 'node')
    const server = await startServer({ images: ['node'], ...layout })
    expect(Number(await readFile(layout.pidFile, 'utf8'))).toBe(server.process.pid)

    const stop = await run(CLI, ['stop', '--pid-file', layout.pidFile], process.env)
    expect(stop.code).toBe(0)
    expect(await server.stop()).toBe(0)
    await expect(stat(layout.pidFile)).rejects.toThrow(/ENOENT/)

    const again = await run(CLI, ['stop', '--pid-file', layout.pidFile], process.env)
    expect(again.code).toBe(13)
    expect(again.output).toMatch(/E_SERVER_NOT_RUNNING/)
  })

  it('runs si_installbtimage, si_startbttrack and si_stopbttrack with their original flags', async () => {
    layout = await makeServerLayout()
    await addSampleImage(layout, 'alpha')
    await addSampleImage(layout, 'beta')
    const port = await freePort()
    // What a person sees: the human console, whatever log format the machine exported.
    const env = { ...serverEnv(layout, port), IMAGESWARM_LOG_FORMAT: 'human' }

    const installed = await run(
      `${BIN}si_installbtimage.js`,
      ['--images', 'alpha,beta', '--compress'],
      env,
    )
    expect(installed.code, installed.output).toBe(0)
    // Each archive, and each image's versions (issue 16: file index, link to the archive).
    expect((await readdir(layout.tarballsDir)).sort()).toEqual([
      'alpha.versions',
      'beta.versions',
      // --compress is gzip, as SystemImager made it.
      'image-alpha.tar.gz',
      'image-beta.tar.gz',
    ])

    const tracker = spawn(
      process.execPath,
      [`${BIN}si_startbttrack.js`, '--image_server', '127.0.0.1', '--image', 'alpha,beta'],
      { env, stdio: ['ignore', 'ignore', 'pipe'] },
    )
    children.push(tracker)
    let log = ''
    tracker.stderr.on('data', (chunk) => (log += chunk))
    // Bounded: 120 s, as startServer waits for a server.
    const deadline = Date.now() + 120_000
    // What a person sees: a line per image once both are served.
    while (
      !log.includes('stop with Ctrl-C') &&
      Date.now() < deadline &&
      tracker.exitCode === null
    ) {
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    expect(log).toContain('serving 2 images at http://127.0.0.1:')
    // The archives packed by si_installbtimage are reused, not packed again.
    expect(log.match(/^ {2}(alpha|beta) .*unchanged since last run$/gm)).toHaveLength(2)
    const list = (await (await fetch(`http://127.0.0.1:${port}/images`)).json()) as {
      images: { name: string }[]
    }
    expect(list.images.map((image) => image.name).sort()).toEqual(['alpha', 'beta'])

    const stopped = await run(`${BIN}si_stopbttrack.js`, [], env)
    expect(stopped.code, stopped.output).toBe(0)
    const [code] = tracker.exitCode === null ? await once(tracker, 'exit') : [tracker.exitCode]
    expect(code).toBe(0)
  })

  it('rejects an unknown SystemImager flag with a usage error', async () => {
    const result = await run(`${BIN}si_startbttrack.js`, ['--bogus'], process.env)
    expect(result.code).toBe(2)
    expect(result.output).toMatch(/E_USAGE: si_startbttrack: unknown option "--bogus"/)
  })
})
