import { spawn } from 'node:child_process'
import { once } from 'node:events'
import {
  appendFile,
  chmod,
  copyFile,
  link,
  mkdir,
  readFile,
  readlink,
  rm,
  writeFile,
} from 'node:fs/promises'
import { join } from 'node:path'
import { buildFidelityTree, compareTrees } from '@imageswarm/core/testing'
import { afterEach, describe, expect, it } from 'vitest'
import { CLI, runInstall, runUpdate, startServer } from '../scripts/lib/deployment.mjs'
import { useHttpServers } from './helpers/http-servers.js'
import { useServerFixture } from './helpers/server-fixture.js'
import { addSampleImage, clientDirs, makeServerLayout } from './helpers/workspace.js'

const env = useServerFixture()
const { startInterceptingProxy } = useHttpServers()
const processes: number[] = []
afterEach(() => {
  for (const pid of processes.splice(0)) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // Already gone.
    }
  }
})

/** What an update never compares: the node's own record and staging (default excludes). */
const NODE_OWNED = ['etc/imageswarm', 'var/lib/imageswarm']

type Update = Awaited<ReturnType<typeof runUpdate>>

function expectUpdated(result: Update) {
  expect(result.failed?.error, JSON.stringify(result.logs.slice(-8))).toBeUndefined()
  expect(result.code).toBe(0)
  expect(result.updated).toBeDefined()
}

async function imageRoot() {
  return join(env.layout!.imagesDir, 'node')
}

async function expectAtVersion(target: string, version: number) {
  const differences = await compareTrees(await imageRoot(), target, { skipPaths: NODE_OWNED })
  expect(differences).toEqual([])
  const record = JSON.parse(await readFile(join(target, 'etc/imageswarm/installed.json'), 'utf8'))
  expect(record).toMatchObject({ image: 'node', serial: version })
}

/** The image at version 1: the sample image, the fidelity tree, a program and a config. */
async function makeVersion1() {
  env.layout = await makeServerLayout('imageswarm-update-')
  const root = await imageRoot()
  await addSampleImage(env.layout, 'node')
  await buildFidelityTree(join(root, 'srv/fidelity'))
  await mkdir(join(root, 'usr/local/bin'), { recursive: true })
  // Every Debian root has /var/lib, where a node keeps its update staging.
  await mkdir(join(root, 'var/lib'), { recursive: true })
  await copyFile('/bin/sleep', join(root, 'usr/local/bin/napper'))
  await chmod(join(root, 'usr/local/bin/napper'), 0o755)
  await writeFile(join(root, 'etc/app.conf'), 'workers = 4\n')
}

/** Version 2: contents, modes, xattrs, a file added and one removed. */
async function changeToVersion2() {
  const root = await imageRoot()
  await writeFile(join(root, 'srv/fidelity/bin/tool'), '#!/bin/sh\necho tool v2\n')
  await chmod(join(root, 'srv/fidelity/etc/shadow'), 0o600)
  await mkdir(join(root, 'srv/new'), { recursive: true })
  await writeFile(join(root, 'srv/new/file.txt'), 'new in version 2\n')
  await rm(join(root, 'srv/fidelity/etc/empty'))
  await run('setfattr', ['-n', 'user.version', '-v', '2', join(root, 'srv/fidelity/etc/hostname')])
  await appendFile(join(root, 'usr/local/bin/napper'), Buffer.alloc(64, 2))
}

/**
 * Version 3: a config, a big file changed in its middle, a directory tree removed, a file
 * become a directory, a hard link added to a group whose contents change, a directory's
 * mode, and the program a running process executes.
 */
async function changeToVersion3() {
  const root = await imageRoot()
  await writeFile(join(root, 'etc/app.conf'), 'workers = 8\n')
  const big = join(root, 'usr/lib/libbig-0.so')
  const bytes = await readFile(big)
  bytes.fill(7, 1000, 5000)
  await writeFile(big, bytes)
  await rm(join(root, 'srv/new'), { recursive: true })
  await rm(join(root, 'srv/fidelity/bin/wall'))
  await mkdir(join(root, 'srv/fidelity/bin/wall'))
  await writeFile(join(root, 'srv/fidelity/bin/wall/README'), 'a directory now\n')
  await writeFile(join(root, 'srv/fidelity/bin/busybox'), 'busybox v3\n'.repeat(100))
  await link(join(root, 'srv/fidelity/bin/busybox'), join(root, 'srv/fidelity/bin/busybox-again'))
  await chmod(join(root, 'srv/fidelity/usr'), 0o700)
  await appendFile(join(root, 'usr/local/bin/napper'), Buffer.alloc(64, 3))
}

async function runCli(args: string[]): Promise<string> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
  const chunks: Buffer[] = []
  child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk))
  const [code] = await once(child, 'exit')
  expect(code).toBe(0)
  return Buffer.concat(chunks).toString('utf8')
}

async function run(command: string, args: string[]) {
  const child = spawn(command, args, { stdio: 'ignore' })
  const [code] = await once(child, 'exit')
  if (code !== 0) throw new Error(`${command} ${args.join(' ')} exited ${code}`)
}

/** Stops the server (if any) and serves the image root as it is now: a new version. */
async function serveAgain(keep = 3) {
  await env.server?.stop()
  env.server = await startServer({
    images: ['node'],
    ...env.layout!,
    args: ['--keep-versions', String(keep)],
  })
  return env.server
}

async function installNode(n: number) {
  const dirs = clientDirs(env.layout!, n)
  const result = await runInstall({
    server: env.server!.url,
    image: 'node',
    ...dirs,
    seedTime: 0,
    args: ['--no-report'],
  })
  expect(result.failed?.error, JSON.stringify(result.logs.slice(-8))).toBeUndefined()
  return dirs
}

function updateNode(
  dirs: { staging: string; target: string },
  extra: Record<string, unknown> = {},
) {
  return runUpdate({
    server: env.server!.url,
    image: 'node',
    ...dirs,
    seedTime: 0,
    args: ['--no-report'],
    ...extra,
  })
}

/** Nodes installed at versions 1 and 2, the server now at version 3. */
async function nodesAtVersions1And2(keep = 3) {
  await makeVersion1()
  await serveAgain(keep)
  const atVersion1 = await installNode(1)
  await changeToVersion2()
  await serveAgain(keep)
  const atVersion2 = await installNode(2)
  await changeToVersion3()
  await serveAgain(keep)
  return { atVersion1, atVersion2 }
}

describe('imageswarm update', { timeout: 240_000 }, () => {
  it('brings nodes at versions 1 and 2 to version 3 by their deltas, every attribute equal', async () => {
    const { atVersion1, atVersion2 } = await nodesAtVersions1And2()
    const versions = await (await fetch(`${env.server!.url}/images/node/versions`)).json()
    expect(versions).toMatchObject({ newest: 3, deltas: [{ from: 1 }, { from: 2 }] })
    // The CLI lists the same, from the server's directory or from the running server.
    const local = await runCli(['versions', 'node', '--tarballs-dir', env.layout!.tarballsDir])
    expect(local).toMatch(/newest version 3, keeping 3/)
    expect(local).toMatch(/delta 1 → 3: /)
    const remote = JSON.parse(
      await runCli(['versions', 'node', '--server', env.server!.url, '--json']),
    )
    expect(remote).toEqual(versions)

    for (const [dirs, from] of [
      [atVersion1, 1],
      [atVersion2, 2],
    ] as const) {
      const result = await updateNode(dirs)
      expectUpdated(result)
      expect(result.plan).toMatchObject({
        from,
        to: 3,
        source: 'delta',
        byFile: 0,
      })
      await expectAtVersion(dirs.target, 3)
    }
    // Again: the root holds version 3 and nothing is fetched but the manifest and index.
    const again = await updateNode(atVersion1)
    expectUpdated(again)
    expect(again.plan).toMatchObject({ source: 'none', write: 0, remove: 0 })
    expect(again.updated.totals.downloaded).toBe(0)
  })

  it('brings back what was changed, deleted or added by hand, fetching by file what the delta lacks', async () => {
    const { atVersion1 } = await nodesAtVersions1And2()
    const target = atVersion1.target
    // A config changed (and changed in version 3: the delta's reference no longer matches),
    // a binary deleted, a file added, a mode changed.
    await writeFile(join(target, 'etc/app.conf'), 'workers = 99 # edited by hand\n')
    await rm(join(target, 'usr/bin/hello'))
    await writeFile(join(target, 'srv/stray-file'), 'not in the image\n')
    await chmod(join(target, 'usr/bin/passwd'), 0o755)

    const dry = await updateNode(atVersion1, { args: ['--no-report', '--dry-run'] })
    expect(dry.code).toBe(0)
    expect(dry.plan.sample.remove).toContain('srv/stray-file')
    expect(await readFile(join(target, 'srv/stray-file'), 'utf8')).toBe('not in the image\n')

    const result = await updateNode(atVersion1)
    expectUpdated(result)
    expect(result.plan.byFile).toBeGreaterThan(0)
    await expectAtVersion(target, 3)
  })

  it('finishes an update killed while it renamed files into place when run again', async () => {
    const { atVersion2 } = await nodesAtVersions1And2()
    const killed = await updateNode(atVersion2, {
      env: { IMAGESWARM_TEST_KILL_AFTER_COMMITS: '3' },
    })
    expect(killed.signal).toBe('SIGKILL')
    // The root is half-way: it still records version 2, which it no longer holds whole.
    const record = JSON.parse(
      await readFile(join(atVersion2.target, 'etc/imageswarm/installed.json'), 'utf8'),
    )
    expect(record.serial).toBe(2)
    expect(
      await compareTrees(await imageRoot(), atVersion2.target, { skipPaths: NODE_OWNED }),
    ).not.toEqual([])

    const rerun = await updateNode(atVersion2)
    expectUpdated(rerun)
    await expectAtVersion(atVersion2.target, 3)
  })

  it('refuses a delta that does not match what the manifest names, leaving the root as it was', async () => {
    const { atVersion2 } = await nodesAtVersions1And2()
    const upstream = env.server!.url
    const proxy = await startInterceptingProxy(upstream, (req, res) => {
      if (!req.url?.startsWith('/images/node/delta-2-3.tar.zst')) return false
      void fetch(`${upstream}${req.url}`).then(async (answer) => {
        const body = Buffer.from(await answer.arrayBuffer())
        body[Math.floor(body.length / 2)]! ^= 0xff
        res.writeHead(200, { 'content-length': body.length }).end(body)
      })
      return true
    })
    const before = await readFile(join(atVersion2.target, 'etc/app.conf'), 'utf8')
    const result = await runUpdate({
      server: proxy,
      image: 'node',
      ...atVersion2,
      seedTime: 0,
      args: ['--no-report', '--dl-protocol', 'http'],
    })
    expect(result.code).toBe(5)
    expect(result.failed?.error.code).toBe('E_ARCHIVE_DIGEST_MISMATCH')
    expect(await readFile(join(atVersion2.target, 'etc/app.conf'), 'utf8')).toBe(before)
    const record = JSON.parse(
      await readFile(join(atVersion2.target, 'etc/imageswarm/installed.json'), 'utf8'),
    )
    expect(record.serial).toBe(2)
  })

  it('falls back to the full image, saying so, for a version the server no longer keeps', async () => {
    const { atVersion1 } = await nodesAtVersions1And2(2)
    const result = await updateNode(atVersion1)
    expectUpdated(result)
    expect(result.plan).toMatchObject({ from: 1, to: 3, source: 'image' })
    expect(result.plan.reason).toMatch(/no longer keeps version 1/)
    await expectAtVersion(atVersion1.target, 3)
  })

  it('leaves a running program its open file while the new one takes its name', async () => {
    const { atVersion2 } = await nodesAtVersions1And2()
    const program = join(atVersion2.target, 'usr/local/bin/napper')
    const running = spawn(program, ['600'], { stdio: 'ignore' })
    processes.push(running.pid!)
    const exited = once(running, 'exit')
    const result = await updateNode(atVersion2)
    expectUpdated(result)
    await expectAtVersion(atVersion2.target, 3)
    // Still running, from the old file, which the new one replaced under its name.
    expect(running.exitCode).toBeNull()
    expect(() => process.kill(running.pid!, 0)).not.toThrow()
    expect(await readlink(`/proc/${running.pid}/exe`)).toMatch(/\(deleted\)$/)
    running.kill('SIGTERM')
    await exited
  })
})
