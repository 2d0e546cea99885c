// The server's faults from issue 14, each tried as an attacker or a careless second
// administrator would: a node asking while the server still packs, a symlink or a rewrite
// planted under the archive it serves, a second server on the same directories, a stale
// PID file naming someone else's process, and a web seed fetch past the upload limit.
import { execFileSync, spawn } from 'node:child_process'
import { once } from 'node:events'
import { constants } from 'node:fs'
import { open, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { CLI, startServer } from '../scripts/lib/deployment.mjs'
import { useServerFixture } from './helpers/server-fixture.js'
import { addSampleImage, makeServerLayout, type ServerLayout } from './helpers/workspace.js'

const env = useServerFixture()
/** Processes this file starts besides the fixture's server, killed after each test. */
const children: ReturnType<typeof spawn>[] = []
/** FIFOs a server may still be blocked reading, released after each test. */
const fifos: string[] = []

afterEach(async () => {
  for (const fifo of fifos.splice(0)) {
    // A reader blocked on the FIFO gets end-of-file; no reader: ENXIO, nothing to do.
    const writer = await open(fifo, constants.O_WRONLY | constants.O_NONBLOCK).catch(
      () => undefined,
    )
    await writer?.close()
  }
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await once(child, 'exit')
    }
  }
})

/** Runs the CLI to completion: exit code and everything it printed. */
async function cli(args: string[], timeoutMs = 60_000) {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  children.push(child)
  let output = ''
  child.stdout.on('data', (chunk) => (output += chunk))
  child.stderr.on('data', (chunk) => (output += chunk))
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
  const [code] = await once(child, 'exit')
  clearTimeout(timer)
  return { code: code as number | null, output }
}

function layoutArgs(layout: ServerLayout): string[] {
  return [
    '--images-dir',
    layout.imagesDir,
    '--tarballs-dir',
    layout.tarballsDir,
    '--torrents-dir',
    layout.torrentsDir,
  ]
}

async function sampleLayout(): Promise<ServerLayout> {
  env.layout = await makeServerLayout('imageswarm-faults-server-')
  await addSampleImage(env.layout, 'node')
  return env.layout
}

async function startSampleServer(args: string[] = []) {
  const layout = await sampleLayout()
  env.server = await startServer({ images: ['node'], ...layout, args })
  return { layout, server: env.server }
}

/** Polls `probe` (bounded) until it returns a value; undefined if it never does. */
async function eventually<T>(probe: () => Promise<T | undefined>, attempts = 300, everyMs = 100) {
  for (let attempt = 0; attempt < attempts; attempt++) {
    const value = await probe()
    if (value !== undefined) return value
    await new Promise((resolve) => setTimeout(resolve, everyMs))
  }
  return undefined
}

describe('the image server under faults', () => {
  it('answers 503 with Retry-After and E_IMAGE_PUBLISHING while it packs an image, then serves it', async () => {
    const layout = await sampleLayout()
    // Packing reads the exclude file first: a FIFO holds it there until the test writes.
    const fifo = join(layout.dir, 'excludes.fifo')
    execFileSync('mkfifo', [fifo])
    fifos.push(fifo)
    let listening: (url: string) => void = () => undefined
    const urlKnown = new Promise<string>((resolve) => (listening = resolve))
    const starting = startServer({
      images: ['node'],
      ...layout,
      args: ['--exclude-file', fifo],
      onLog: (record: { msg?: string; url?: string }) => {
        if (record.msg === 'image server listening' && record.url) listening(record.url)
      },
    })
    starting.catch(() => undefined)
    const url = await urlKnown

    // It answers at once, and says what it is doing.
    const packing = await eventually(async () => {
      const response = await fetch(`${url}/images/node/manifest.json`)
      expect(response.status).toBe(503)
      expect(response.headers.get('retry-after')).toBe('5')
      const body = (await response.json()) as { error: { code: string; message: string } }
      expect(body.error.code).toBe('E_IMAGE_PUBLISHING')
      return body.error.message.includes('packing') ? body.error : undefined
    })
    expect(packing).toMatchObject({
      message: 'image node is being published (packing the image root)',
      hint: expect.stringContaining('ask again in 5 s'),
    })
    for (const file of ['image.torrent', 'image-node.tar.zst']) {
      const response = await fetch(`${url}/images/node/${file}`)
      expect(response.status).toBe(503)
      expect(response.headers.get('retry-after')).toBe('5')
      expect(await response.json()).toMatchObject({ error: { code: 'E_IMAGE_PUBLISHING' } })
    }
    expect(await (await fetch(`${url}/images`)).json()).toEqual({
      images: [],
      publishing: ['node'],
    })

    await writeFile(fifo, '# nothing to exclude\n')
    env.server = await starting
    const manifest = await fetch(`${url}/images/node/manifest.json`)
    expect(manifest.status).toBe(200)
    expect(await manifest.json()).toMatchObject({ name: 'node' })
    expect(await (await fetch(`${url}/images`)).json()).toMatchObject({ publishing: [] })
  })

  it('serves the published archive after a symlink to a secret replaces it, never the secret', async () => {
    const { layout, server } = await startSampleServer()
    const archivePath = join(layout.tarballsDir, 'image-node.tar.zst')
    const published = await readFile(archivePath)
    const secret = join(layout.dir, 'shadow')
    await writeFile(secret, 'root:$6$secret-hash-for-no-node:19000:0:99999:7:::\n'.repeat(20_000))
    await rm(archivePath)
    await symlink(secret, archivePath)

    const whole = Buffer.from(
      await (await fetch(`${server.url}/images/node/image-node.tar.zst`)).arrayBuffer(),
    )
    expect(whole.equals(published)).toBe(true)
    expect(whole.includes('secret-hash-for-no-node')).toBe(false)
    const range = await fetch(`${server.url}/images/node/image-node.tar.zst`, {
      headers: { range: 'bytes=0-65535' },
    })
    expect(range.status).toBe(206)
    expect(Buffer.from(await range.arrayBuffer()).equals(published.subarray(0, 65536))).toBe(true)
  })

  it('refuses an archive rewritten in place with E_SERVER_ARCHIVE_CHANGED and tells the operator to republish', async () => {
    const { layout, server } = await startSampleServer()
    const archivePath = join(layout.tarballsDir, 'image-node.tar.zst')
    const url = `${server.url}/images/node/image-node.tar.zst`
    const before = await fetch(url, { headers: { range: 'bytes=0-999' } })
    expect(before.status).toBe(206)
    expect((await before.arrayBuffer()).byteLength).toBe(1000)

    // Same size, one byte different, as a second packer writing into the file would leave it.
    const file = await open(archivePath, 'r+')
    const byte = Buffer.alloc(1)
    await file.read(byte, 0, 1, 5000)
    byte[0] = (byte[0] ?? 0) ^ 0xff
    await file.write(byte, 0, 1, 5000)
    await file.close()

    const refused = await fetch(url, { headers: { range: 'bytes=0-999' } })
    expect(refused.status).toBe(500)
    expect(await refused.json()).toMatchObject({
      error: { code: 'E_SERVER_ARCHIVE_CHANGED', hint: expect.stringContaining('republish') },
    })
    const logged = await eventually(async () =>
      server.logs.find(
        (record: { level?: number; msg?: string }) =>
          record.level === 50 && record.msg?.includes('republish the image'),
      ),
    )
    expect(logged).toMatchObject({ archive: archivePath, image: 'node' })
    // The rest of the server is untouched.
    expect((await fetch(`${server.url}/images/node/manifest.json`)).status).toBe(200)
  })

  it('refuses a second server and a publish on the same directories (exit 13); the first keeps serving; after SIGKILL a new one starts', async () => {
    const { layout, server } = await startSampleServer()
    const archivePath = join(layout.tarballsDir, 'image-node.tar.zst')
    const torrentPath = join(layout.torrentsDir, 'image-node.tar.zst.torrent')
    const before = [await stat(archivePath), await stat(torrentPath)]

    const second = await cli([
      'serve',
      '--image',
      'node',
      ...layoutArgs(layout),
      '--update-image',
      '--pid-file',
      join(layout.dir, 'second.pid'),
      '--address',
      '127.0.0.1',
      '--port',
      '0',
      '--torrent-port',
      '0',
    ])
    expect(second.code, second.output).toBe(13)
    expect(second.output).toContain('E_SERVER_RUNNING')
    expect(second.output).toContain(
      `directory ${layout.tarballsDir}, for archives (--tarballs-dir)`,
    )
    expect(second.output).toContain(`another imageswarm process (pid ${server.process.pid})`)
    expect(second.output).toMatch(/hint: stop it first \(imageswarm stop/)

    const publish = await cli([
      'publish',
      '--image',
      'node',
      ...layoutArgs(layout),
      '--update-image',
    ])
    expect(publish.code, publish.output).toBe(13)
    expect(publish.output).toContain('E_SERVER_RUNNING')

    // Nothing was rewritten, and the first server still serves.
    const after = [await stat(archivePath), await stat(torrentPath)]
    expect(after.map((s) => [s.ino, s.mtimeMs])).toEqual(before.map((s) => [s.ino, s.mtimeMs]))
    const manifest = await fetch(`${server.url}/images/node/manifest.json`)
    expect(manifest.status).toBe(200)

    // A crash leaves the lock file and the PID file behind; neither blocks the next start.
    await server.stop('SIGKILL')
    env.server = undefined
    env.server = await startServer({ images: ['node'], ...layout })
    expect(
      env.server.logs.some((record: { msg?: string }) =>
        record.msg?.includes('reusing its archive'),
      ),
    ).toBe(true)
    expect((await fetch(`${env.server.url}/images/node/manifest.json`)).status).toBe(200)
  })

  it('stop with a stale PID file signals nobody (exit 13) and removes it; serve starts over it', async () => {
    const layout = await sampleLayout()
    const bystander = spawn('sleep', ['60'], { stdio: 'ignore' })
    children.push(bystander)
    await writeFile(layout.pidFile, `${bystander.pid}\n`)

    const stop = await cli(['stop', '--pid-file', layout.pidFile])
    expect(stop.code, stop.output).toBe(13)
    expect(stop.output).toContain('E_SERVER_NOT_RUNNING')
    expect(stop.output).toContain(`named pid ${bystander.pid}, which is not an image server now`)
    expect(stop.output).not.toContain('image server stopped')
    expect(bystander.exitCode).toBeNull()
    expect(bystander.signalCode).toBeNull()
    expect(() => process.kill(bystander.pid!, 0)).not.toThrow()
    await expect(stat(layout.pidFile)).rejects.toThrow(/ENOENT/)

    // The stale file again, under a server that starts: it is taken over.
    await writeFile(layout.pidFile, `${bystander.pid}\n`)
    env.server = await startServer({ images: ['node'], ...layout })
    expect(Number(await readFile(layout.pidFile, 'utf8'))).toBe(env.server.process.pid)
    const stopped = await cli(['stop', '--pid-file', layout.pidFile])
    expect(stopped.code, stopped.output).toBe(0)
    expect(await env.server.stop()).toBe(0)
    expect(bystander.exitCode).toBeNull()
  })

  it('counts web seed bytes, served under --upload-limit, into the dashboard’s from-server', async () => {
    const { server } = await startSampleServer(['--upload-limit', '2M'])
    const fromServer = async () => {
      const { images } = (await (await fetch(`${server.url}/api/images`)).json()) as {
        images: { image: string; fromServer: number; delivered: number }[]
      }
      return images.find((image) => image.image === 'node')
    }
    expect(await fromServer()).toMatchObject({ fromServer: 0 })

    const fetched = 3 * 1024 * 1024
    const response = await fetch(`${server.url}/images/node/image-node.tar.zst`, {
      headers: { range: `bytes=0-${fetched - 1}` },
    })
    expect(response.status).toBe(206)
    expect((await response.arrayBuffer()).byteLength).toBe(fetched)

    // The dashboard samples the server's count once a second.
    const counted = await eventually(async () => {
      const summary = await fromServer()
      return summary && summary.fromServer >= fetched ? summary : undefined
    })
    // No node took part: every byte came from the web seed.
    expect(counted).toMatchObject({ fromServer: fetched, delivered: fetched })
  })
})
