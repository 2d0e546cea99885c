import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdir, readdir, rename, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { sha256File } from '@imageswarm/core'
import { compareTrees, INSTALL_RECORD_SKIP } from '@imageswarm/core/testing'
import { afterEach, describe, expect, it } from 'vitest'
import { runInstall } from '../scripts/lib/deployment.mjs'
import {
  addSampleImage,
  clientDirs,
  freePort,
  makeServerLayout,
  type ServerLayout,
  serverEnv,
} from './helpers/workspace.js'

const BIN = fileURLToPath(new URL('../packages/cli/bin/', import.meta.url))
const execFileAsync = promisify(execFile)

let layout: ServerLayout | undefined
const children: ChildProcess[] = []

// Every process a test started is stopped (by its PID), then its directories go.
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

/** The layout's directories, a free port, and a bittorrent.conf of the test's own. */
function siEnv(l: ServerLayout, port: number): NodeJS.ProcessEnv {
  return { ...serverEnv(l, port), IMAGESWARM_LOG_FORMAT: 'json' }
}

async function run(bin: string, args: string[], env: NodeJS.ProcessEnv) {
  const child = spawn(process.execPath, [`${BIN}${bin}`, ...args], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  children.push(child)
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk) => (stdout += chunk))
  child.stderr.on('data', (chunk) => (stderr += chunk))
  const [code] = await once(child, 'exit')
  return { code: code as number, stdout, stderr }
}

/** si_startbttrack in the background; resolves once it serves, with its log so far. */
async function startTracker(args: string[], env: NodeJS.ProcessEnv) {
  const child = spawn(process.execPath, [`${BIN}si_startbttrack.js`, ...args], {
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  children.push(child)
  let log = ''
  const exited = once(child, 'exit')
  const serving = new Promise<void>((resolve, reject) => {
    child.stderr.on('data', (chunk) => {
      log += chunk
      if (log.includes('"serving images"')) resolve()
    })
    child.once('exit', (code) => reject(new Error(`si_startbttrack exited with ${code}:\n${log}`)))
  })
  await serving
  return {
    log: () => log,
    async stop() {
      const stopped = await run('si_stopbttrack.js', [], env)
      expect(stopped.code, stopped.stderr).toBe(0)
      const [code] = await exited
      return code as number
    },
  }
}

async function manifestOf(port: number, image: string) {
  const response = await fetch(`http://127.0.0.1:${port}/images/${image}/manifest.json`)
  expect(response.status).toBe(200)
  return (await response.json()) as { archiveFile: string; infoHash: string; compression: string }
}

describe('SystemImager’s commands and files', () => {
  it('serves what si_installbtimage packed, as it is: same archive, same infohash, no repack', async () => {
    layout = await makeServerLayout()
    await addSampleImage(layout, 'legacy')
    const port = await freePort()
    const env = siEnv(layout, port)
    await writeFile(
      env.SI_BITTORRENT_CONF!,
      `BT_TRACKER_PORT=${port}\nBT_TRACKER_STATE=/tmp/dstate\n`,
    )

    // Abbreviated, as SystemImager's Getopt::Long took it.
    const installed = await run('si_installbtimage.js', ['--ima', 'legacy'], env)
    expect(installed.code, installed.stderr).toBe(0)
    const [name, infoHash, archivePath] = installed.stdout.trim().split('\t')
    expect(name).toBe('legacy')
    expect(archivePath).toBe(join(layout.tarballsDir, 'image-legacy.tar'))
    const packed = await sha256File(archivePath!)
    const { mtimeMs } = await stat(archivePath!)

    const tracker = await startTracker(['--image', 'legacy', '--image_server', '127.0.0.1'], env)
    expect(tracker.log()).toContain('reusing its archive')
    expect(tracker.log()).not.toContain('packing image')
    const manifest = await manifestOf(port, 'legacy')
    expect(manifest).toMatchObject({
      archiveFile: 'image-legacy.tar',
      infoHash,
      compression: 'none',
    })
    expect(await sha256File(archivePath!)).toBe(packed)
    expect((await stat(archivePath!)).mtimeMs).toBe(mtimeMs)
    expect((await readdir(layout.tarballsDir)).filter((f) => f.startsWith('image-'))).toEqual([
      'image-legacy.tar',
    ])
    expect(await tracker.stop()).toBe(0)
  })

  it('serves a SystemImager tarball without an image root, and a client installs it', async () => {
    layout = await makeServerLayout()
    await addSampleImage(layout, 'legacy')
    const reference = join(layout.dir, 'reference')
    await rename(join(layout.imagesDir, 'legacy'), reference)
    // A sparse file, which SystemImager's `tar -S` stores as an old GNU sparse member.
    await execFileAsync('truncate', ['-s', '64M', join(reference, 'var/log/lastlog')])
    await writeFile(join(reference, 'var/log/lastlog'), 'login\n', { flag: 'r+' })
    await mkdir(layout.tarballsDir, { recursive: true })
    // As si_installbtimage --compress made it: cd IMAGE && tar -czSpf image-NAME.tar.gz .
    const tarball = join(layout.tarballsDir, 'image-legacy.tar.gz')
    await execFileAsync('tar', ['-czSpf', tarball, '.'], { cwd: reference })
    const before = await sha256File(tarball)
    const port = await freePort()
    const env = siEnv(layout, port)
    // The images come from BT_IMAGES, as SystemImager's init script took them.
    await writeFile(
      env.SI_BITTORRENT_CONF!,
      `BT_TRACKER_PORT=${port}\nBT_IMAGES=legacy\nBT_COMPRESS=y\nBT_UPDATE=y\n`,
    )

    const tracker = await startTracker(['--image_server', '127.0.0.1'], env)
    expect(tracker.log()).toContain('serving the tarball as it is')
    const manifest = await manifestOf(port, 'legacy')
    expect(manifest).toMatchObject({ archiveFile: 'image-legacy.tar.gz', compression: 'gzip' })

    const dirs = clientDirs(layout, 1)
    const install = runInstall({
      server: `http://127.0.0.1:${port}`,
      image: 'legacy',
      ...dirs,
      seedTime: 0,
    })
    children.push(install.process)
    const result = await install
    expect(result.failed?.error, JSON.stringify(result.logs.slice(-8))).toBeUndefined()
    expect(result.code).toBe(0)
    // GNU tar's default format keeps mtimes in whole seconds (no pax records): that is all
    // that differs from the image (README, "Differences from SystemImager").
    const differences = await compareTrees(reference, dirs.target, {
      skipPaths: INSTALL_RECORD_SKIP,
    })
    const notWholeSeconds = differences.filter((line) => {
      const mtimes = /: mtimeNs (\d+) != (\d+)$/.exec(line)
      if (!mtimes) return true
      return BigInt(mtimes[2]!) !== (BigInt(mtimes[1]!) / 1_000_000_000n) * 1_000_000_000n
    })
    expect(notWholeSeconds).toEqual([])
    expect(await sha256File(tarball)).toBe(before)
    expect(await tracker.stop()).toBe(0)

    // The next start serves the same bytes under the same infohash.
    const again = await startTracker(['--image_server', '127.0.0.1'], env)
    expect((await manifestOf(port, 'legacy')).infoHash).toBe(manifest.infoHash)
    expect(await again.stop()).toBe(0)
  })

  it('never overwrites an image-NAME.tar.gz imageswarm did not write', async () => {
    layout = await makeServerLayout()
    await addSampleImage(layout, 'legacy')
    await mkdir(layout.tarballsDir, { recursive: true })
    const tarball = join(layout.tarballsDir, 'image-legacy.tar.gz')
    await execFileAsync('tar', ['-czSpf', tarball, 'etc'], {
      cwd: join(layout.imagesDir, 'legacy'),
    })
    const before = await sha256File(tarball)
    const env = siEnv(layout, await freePort())

    for (const args of [
      ['--images', 'legacy', '--compress'],
      ['--images', 'legacy', '--compress', '--update'],
    ]) {
      const refused = await run('si_installbtimage.js', args, env)
      expect(refused.code, refused.stderr).toBe(12)
      expect(refused.stderr).toContain('E_FOREIGN_FILE')
      expect(refused.stderr).toContain(tarball)
      expect(await sha256File(tarball)).toBe(before)
    }
    // Without --compress it packs image-legacy.tar beside it and leaves the .tar.gz alone.
    const plain = await run('si_installbtimage.js', ['--images', 'legacy'], env)
    expect(plain.code, plain.stderr).toBe(0)
    expect(await sha256File(tarball)).toBe(before)
    expect((await stat(join(layout.tarballsDir, 'image-legacy.tar'))).isFile()).toBe(true)
  })
})
