import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import {
  chmod,
  copyFile,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { ImageServers } from '@imageswarm/client'
import { silentLogger } from '@imageswarm/core'
import { afterEach, describe, expect, it } from 'vitest'
import type { InstallerConsole } from '../src/node/installer-console.js'
import { runPostInstallScripts } from '../src/node/post-install.js'
import { rejected } from './helpers/thrown.js'

const run = promisify(execFile)
const isRoot = process.getuid?.() === 0

/** A static busybox: the new system's shell for `chroot`. */
async function staticBusybox(): Promise<string | undefined> {
  for (const path of ['/bin/busybox', '/usr/bin/busybox']) {
    if (!existsSync(path)) continue
    const { stdout, stderr } = await run('ldd', [path]).catch(
      (err: { stdout?: string; stderr?: string }) => ({
        stdout: err.stdout ?? '',
        stderr: err.stderr ?? '',
      }),
    )
    if (/not a dynamic executable|statically linked/.test(stdout + stderr)) return path
  }
  return undefined
}
const busybox = await staticBusybox()
const missing = !isRoot
  ? 'not root (chroot)'
  : !busybox
    ? 'no static busybox (busybox-static)'
    : undefined
if (missing) console.warn(`post-install runner tests skipped: ${missing}`)

const made: string[] = []
const servers: Server[] = []
afterEach(async () => {
  for (const server of servers.splice(0)) await new Promise((done) => server.close(done))
  for (const dir of made.splice(0)) await rm(dir, { recursive: true, force: true })
})

/** A tiny new system: busybox as /bin/sh and friends, /tmp and /etc. */
async function newSystem(): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'imageswarm-post-install-'))
  made.push(root)
  for (const dir of ['bin', 'tmp', 'etc/imageswarm/post-install.d'])
    await mkdir(join(root, dir), { recursive: true })
  await copyFile(busybox as string, join(root, 'bin/busybox'))
  await chmod(join(root, 'bin/busybox'), 0o755)
  for (const applet of ['sh', 'echo', 'cat']) await symlink('busybox', join(root, 'bin', applet))
  return root
}

/** The server's post-install scripts, by name (`GET /install/post-install/NAME`). */
async function serveScripts(scripts: Record<string, string>): Promise<string> {
  const server = createServer((req, res) => {
    const name = decodeURIComponent((req.url ?? '').replace('/install/post-install/', ''))
    const body = scripts[name]
    if (body === undefined) res.writeHead(404).end('{}')
    else res.writeHead(200).end(body)
  })
  servers.push(server)
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

function recordingConsole(): InstallerConsole & { lines: string[] } {
  const lines: string[] = []
  return { lines, say: (text) => lines.push(text) }
}

const variables = (server: string) => ({
  hostname: 'node7',
  image: 'compute',
  server,
  groups: ['rack1'],
  overrides: [],
  layoutName: 'default',
  postAction: 'reboot',
})

describe.skipIf(Boolean(missing))('post-install scripts, chrooted into the new system', () => {
  it('runs the image’s, then the server’s, with variables.txt, and removes /tmp/post-install', async () => {
    const root = await newSystem()
    await writeFile(
      join(root, 'etc/imageswarm/post-install.d/50-image'),
      '#!/bin/sh\n. /tmp/post-install/variables.txt\necho "image $HOSTNAME $BASE_HOSTNAME" >>/etc/ran\n',
      { mode: 0o755 },
    )
    await writeFile(
      join(root, 'etc/imageswarm/post-install.d/10-replaced'),
      '#!/bin/sh\necho image-copy >>/etc/ran\n',
      {
        mode: 0o755,
      },
    )
    const server = await serveScripts({
      '10all.first':
        '#!/bin/sh\n. /tmp/post-install/variables.txt\necho "server $IMAGENAME $GROUPNAMES" >>/etc/ran\n',
      '10-replaced': '#!/bin/sh\necho server-copy >>/etc/ran\n',
    })
    const console = recordingConsole()
    const ran = await runPostInstallScripts({
      target: root,
      serverScripts: ['10all.first', '10-replaced'],
      variables: variables(server),
      servers: new ImageServers([server]),
      request: { connectTimeoutSeconds: 5 },
      console,
      logger: silentLogger(),
    })
    expect(ran).toEqual(['50-image', '10all.first', '10-replaced'])
    expect(await readFile(join(root, 'etc/ran'), 'utf8')).toBe(
      'image node7 node\nserver compute rack1\nserver-copy\n',
    )
    expect(await readdir(join(root, 'tmp'))).toEqual([])
  })

  it('fetches the server’s scripts from the first image server that answers', async () => {
    const root = await newSystem()
    const probe = createServer()
    await new Promise<void>((done) => probe.listen(0, '127.0.0.1', done))
    const down = `http://127.0.0.1:${(probe.address() as AddressInfo).port}`
    await new Promise((done) => probe.close(done))
    const mirror = await serveScripts({ '10all.first': '#!/bin/sh\necho mirror >>/etc/ran\n' })
    const ran = await runPostInstallScripts({
      target: root,
      serverScripts: ['10all.first'],
      variables: variables(mirror),
      servers: new ImageServers([down, mirror]),
      request: { connectTimeoutSeconds: 600 },
      console: recordingConsole(),
      logger: silentLogger(),
    })
    expect(ran).toEqual(['10all.first'])
    expect(await readFile(join(root, 'etc/ran'), 'utf8')).toBe('mirror\n')
  })

  it('stops at a failing script with E_POST_INSTALL_FAILED (exit 16): which one, its status and last lines', async () => {
    const root = await newSystem()
    const server = await serveScripts({
      '20rack1.fails': `#!/bin/sh\n${Array.from({ length: 30 }, (_, i) => `echo line ${i}`).join('\n')}\necho oops >&2\nexit 3\n`,
      '30all.never': '#!/bin/sh\necho never >/etc/never\n',
    })
    const err = await rejected(
      runPostInstallScripts({
        target: root,
        serverScripts: ['20rack1.fails', '30all.never'],
        variables: variables(server),
        servers: new ImageServers([server]),
        request: { connectTimeoutSeconds: 5 },
        console: recordingConsole(),
        logger: silentLogger(),
      }),
    )
    expect(err.code).toBe('E_POST_INSTALL_FAILED')
    expect(err.exitCode).toBe(16)
    const lastLines = [...Array.from({ length: 14 }, (_, i) => `    line ${i + 16}`), '    oops']
    expect(err.message).toBe(
      `post-install script 20rack1.fails (from the server) exited with 3; its last lines:\n${lastLines.join('\n')}`,
    )
    expect(err.hint).toMatch(/^fix scripts\/post-install\/20rack1\.fails on the image server/)
    expect(existsSync(join(root, 'etc/never'))).toBe(false)
    expect(await readdir(join(root, 'tmp'))).toEqual([])
  })

  it('refuses a script the server lists but does not serve, and an image that has /tmp/post-install', async () => {
    const root = await newSystem()
    const server = await serveScripts({})
    const runGone = () =>
      runPostInstallScripts({
        target: root,
        serverScripts: ['10all.gone'],
        variables: variables(server),
        servers: new ImageServers([server]),
        request: { connectTimeoutSeconds: 5 },
        console: recordingConsole(),
        logger: silentLogger(),
      })
    expect((await rejected(runGone())).code).toBe('E_SERVER_RESPONSE')
    expect(await readdir(join(root, 'tmp'))).toEqual([])
    await mkdir(join(root, 'tmp/post-install'))
    expect((await rejected(runGone())).code).toBe('E_TARGET_NOT_EMPTY')
    // The image's own directory is left as it was.
    expect(existsSync(join(root, 'tmp/post-install'))).toBe(true)
  })
})
