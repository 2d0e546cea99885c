// Issue 18: imageswarm installed as an operator installs a tool. The packages are built by
// scripts/package/build.mjs from the built workspace, installed into a temporary prefix
// with npm (offline) and run from the PATH; the Debian package is taken apart with
// dpkg-deb (never installed on this machine) and its unit checked by systemd-analyze;
// package-service-vm.test.ts installs it in a VM and runs the unit under systemd.
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { once } from 'node:events'
import { cp, lstat, mkdir, mkdtemp, readFile, readlink, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { gunzipSync } from 'node:zlib'
import { sha256File } from '@imageswarm/core'
import { compareTrees, INSTALL_RECORD_SKIP } from '@imageswarm/core/testing'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { makeSampleImage } from '../scripts/lib/sample-image.mjs'

const run = promisify(execFile)
const REPO = fileURLToPath(new URL('..', import.meta.url))
const BUILD = join(REPO, 'scripts/package/build.mjs')
const CLI_PACKAGE = JSON.parse(await readFile(join(REPO, 'packages/cli/package.json'), 'utf8')) as {
  version: string
  bin: Record<string, string>
}
const VERSION = CLI_PACKAGE.version
/** Every command the packages put on the PATH: the CLI package's `bin`. */
const COMMANDS = Object.keys(CLI_PACKAGE.bin)

let work: string
let built: { tgz: string; deb: string }
const children: ChildProcess[] = []

async function buildPackages(out: string) {
  await run(process.execPath, [BUILD, '--out', out], {
    env: { ...process.env, SOURCE_DATE_EPOCH: '1767225600' },
    maxBuffer: 1 << 24,
  })
  return {
    tgz: join(out, `imageswarm-${VERSION}.tgz`),
    deb: join(out, `imageswarm_${VERSION}_amd64.deb`),
  }
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'imageswarm-package-'))
  built = await buildPackages(join(work, 'out'))
}, 170_000)

// Every process a test starts is stopped by its PID, whatever the test's outcome.
afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await once(child, 'exit')
    }
  }
})

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true })
})

describe('the npm package', () => {
  const prefix = () => join(work, 'prefix')
  // The prefix's commands and the system's directories, nothing of the workspace. node is
  // where the test's own node is (/usr/bin on the machines scripts/setup.sh makes).
  const pathEnv = () => ({
    PATH: [
      join(prefix(), 'bin'),
      dirname(process.execPath),
      '/usr/sbin',
      '/usr/bin',
      '/sbin',
      '/bin',
    ].join(':'),
    HOME: work,
  })

  async function onPath(command: string, args: string[]) {
    return run(command, args, { env: pathEnv() })
  }

  // Installed once for the describe: each test runs from the installed prefix alone.
  beforeAll(async () => {
    await run(
      'npm',
      ['install', '-g', '--offline', '--no-audit', '--no-fund', '--prefix', prefix(), built.tgz],
      { env: { ...process.env, npm_config_cache: join(work, 'npm-cache') } },
    )
  }, 120_000)

  it('installs offline with npm install -g, every command on the PATH with --version', async () => {
    for (const command of COMMANDS) {
      const { stdout } = await onPath(command, ['--version'])
      expect(stdout, command).toBe(`imageswarm ${VERSION}\n`)
    }
    // Where the bundled code looks for its files, relative to lib/cli/imageswarm.mjs (see
    // scripts/package/build.mjs): `imageswarm initrd`'s programs and the ramdisk's scripts.
    const installed = join(prefix(), 'lib/node_modules/imageswarm')
    for (const file of [
      'lib/imageswarm-installer.mjs',
      'lib/imageswarm-install.mjs',
      'ramdisk/init',
    ]) {
      expect((await lstat(join(installed, file))).isFile(), file).toBe(true)
    }
    const viaHelp = await onPath('imageswarm', ['help', 'serve'])
    const viaFlag = await onPath('imageswarm', ['serve', '--help'])
    expect(viaHelp.stdout).toBe(viaFlag.stdout)
    expect(viaHelp.stdout).toContain('--config <file>')
    const page = await readFile(join(prefix(), 'share/man/man1/imageswarm-serve.1'), 'utf8')
    expect(page).toMatch(
      new RegExp(`^\\.TH IMAGESWARM-SERVE 1 "2026-01-01" "imageswarm ${VERSION}"`),
    )
  })

  it('serves an image the way the systemd unit starts it and installs it, all from the PATH', async () => {
    const dir = join(work, 'demo')
    const image = join(dir, 'images/node')
    await makeSampleImage(image, {
      dirs: 4,
      filesPerDir: 10,
      bigFiles: 1,
      bigFileBytes: 1024 * 1024,
      seed: 'package',
    })
    const config = join(dir, 'server.conf')
    await writeFile(
      config,
      [
        '# what an administrator writes in /etc/imageswarm/server.conf',
        'image = node',
        `images-dir = ${join(dir, 'images')}`,
        `tarballs-dir = ${join(dir, 'tarballs')}`,
        `torrents-dir = ${join(dir, 'torrents')}`,
        `boot-dir = ${join(dir, 'boot')}`,
        `scripts-dir = ${join(dir, 'scripts')}`,
        `overrides-dir = ${join(dir, 'overrides')}`,
        'address = 127.0.0.1',
        'port = 0',
        'torrent-port = 0',
        'log-level = info',
        'log-format = json',
        '',
      ].join('\n'),
    )
    const pidFile = join(dir, 'run/serve.pid')
    // The unit's own command line, with this test's configuration file and PID file.
    const unit = await readFile(join(REPO, 'scripts/package/imageswarm.service'), 'utf8')
    const execStart = /^ExecStart=(.+)$/m.exec(unit)?.[1]?.split(' ') ?? []
    expect(execStart.slice(0, 2)).toEqual(['/usr/bin/imageswarm', 'serve'])
    const args = execStart
      .slice(1)
      .map((arg) =>
        arg === '/etc/imageswarm/server.conf'
          ? config
          : arg === '/run/imageswarm/serve.pid'
            ? pidFile
            : arg,
      )
    expect(args).toEqual(['serve', '--config', config, '--pid-file', pidFile])

    const server = spawn('imageswarm', args, {
      env: pathEnv(),
      stdio: ['ignore', 'ignore', 'pipe'],
    })
    children.push(server)
    const exited = once(server, 'exit')
    const logs: string[] = []
    // Bounded: 120 s (a cold machine packs the image first), with the log when it fails.
    let waited: NodeJS.Timeout | undefined
    const url = await new Promise<string>((resolve, reject) => {
      createInterface({ input: server.stderr! }).on('line', (line) => {
        logs.push(line)
        let record: { msg?: string; url?: string } = {}
        try {
          record = JSON.parse(line) as typeof record
        } catch {
          return // not a log record (a warning of node's): kept in `logs`
        }
        if (record.msg === 'serving images' && record.url) resolve(record.url)
      })
      server.once('exit', (code) =>
        reject(new Error(`serve exited with ${code}:\n${logs.join('\n')}`)),
      )
      waited = setTimeout(
        () => reject(new Error(`serve did not serve within 120 s:\n${logs.join('\n')}`)),
        120_000,
      )
    }).finally(() => clearTimeout(waited))
    // The dashboard's page and its charts library, found by the bundle in the package.
    expect((await fetch(`${url}/`)).status).toBe(200)
    expect((await fetch(`${url}/assets/uplot.esm.js`)).status).toBe(200)

    const target = join(dir, 'a')
    const install = spawn(
      'imageswarm',
      [
        'install',
        '--json',
        '--server',
        url,
        '--image',
        'node',
        '--staging',
        join(dir, 'staging'),
        '--target',
        target,
        '--seed-time',
        '0',
        '--cmdline',
        '/dev/null',
      ],
      { env: pathEnv(), stdio: ['ignore', 'ignore', 'pipe'] },
    )
    children.push(install)
    let installLog = ''
    install.stderr!.on('data', (chunk) => (installLog += chunk))
    const [installCode] = await once(install, 'exit')
    expect(installCode, installLog).toBe(0)
    expect(await compareTrees(image, target, { skipPaths: INSTALL_RECORD_SKIP })).toEqual([])

    expect((await readFile(pidFile, 'utf8')).trim()).toBe(String(server.pid))
    await onPath('imageswarm', ['stop', '--pid-file', pidFile])
    const [serverCode] = await exited
    expect(serverCode, logs.slice(-5).join('\n')).toBe(0)
    await expect(lstat(pidFile)).rejects.toThrow(/ENOENT/)
  })
})

describe('the Debian package', () => {
  const root = () => join(work, 'deb-root')
  let unpacked: Promise<unknown> | undefined
  /** The package's files under root(), unpacked once by whichever test asks first. */
  const unpack = () => {
    unpacked ??= run('dpkg-deb', ['-x', built.deb, root()])
    return unpacked
  }

  it('holds the commands, the node they run on, man pages, the unit and its conffile', async () => {
    const field = async (name: string) =>
      (await run('dpkg-deb', ['-f', built.deb, name])).stdout.trim()
    expect(await field('Package')).toBe('imageswarm')
    expect(await field('Version')).toBe(VERSION)
    expect(await field('Architecture')).toBe('amd64')
    expect(await field('Depends')).toMatch(/\btar\b.*\bzstd\b.*\bgzip\b.*\butil-linux\b/)
    // SquashFS images need tar2sqfs; a server of tar images never runs it.
    expect(await field('Recommends')).toBe('squashfs-tools-ng')

    const { stdout: listing } = await run('dpkg-deb', ['-c', built.deb], { maxBuffer: 1 << 24 })
    for (const path of [
      ...COMMANDS.map((command) => `./usr/bin/${command}`),
      './usr/lib/imageswarm/node/bin/node',
      './usr/lib/imageswarm/lib/cli/imageswarm.mjs',
      './usr/lib/imageswarm/lib/dashboard/index.html',
      './usr/lib/imageswarm/ramdisk/init',
      './usr/share/man/man1/imageswarm.1.gz',
      './usr/share/man/man1/imageswarm-serve.1.gz',
      './lib/systemd/system/imageswarm.service',
      './etc/imageswarm/server.conf',
      './usr/share/doc/imageswarm/copyright',
    ]) {
      expect(listing).toContain(` ${path}`)
    }
    // Everything root's, whoever built it.
    for (const line of listing.trim().split('\n')) expect(line).toMatch(/^\S+ root\/root /)

    const control = join(work, 'deb-control')
    await run('dpkg-deb', ['-e', built.deb, control])
    expect(await readFile(join(control, 'conffiles'), 'utf8')).toBe('/etc/imageswarm/server.conf\n')
    for (const script of ['postinst', 'prerm', 'postrm']) {
      await run('sh', ['-n', join(control, script)])
    }

    await unpack()
    const lib = join(root(), 'usr/lib/imageswarm')
    const { stdout } = await run(join(lib, 'node/bin/node'), [
      join(lib, 'bin/imageswarm.js'),
      '--version',
    ])
    expect(stdout).toBe(`imageswarm ${VERSION}\n`)
    expect(await readFile(join(root(), 'usr/bin/imageswarm'), 'utf8')).toBe(
      '#!/bin/sh\nexec /usr/lib/imageswarm/node/bin/node /usr/lib/imageswarm/bin/imageswarm.js "$@"\n',
    )
    const man = join(root(), 'usr/share/man/man1')
    expect(gunzipSync(await readFile(join(man, 'imageswarm-serve.1.gz'))).toString()).toContain(
      '.I /etc/imageswarm/server.conf',
    )
    expect(await readlink(join(man, 'si_startbttrack.1.gz'))).toBe('imageswarm-serve.1.gz')
    expect(await readFile(join(root(), 'etc/imageswarm/server.conf'), 'utf8')).toBe(
      await readFile(join(REPO, 'scripts/package/server.conf'), 'utf8'),
    )
  })

  it('has a unit systemd-analyze verify accepts, its ExecStart in the package', async () => {
    // The unit's dependencies (sysinit.target …) come from the host's systemd, copied into
    // the unpacked package: verify then resolves /usr/bin/imageswarm inside the package.
    await unpack()
    await mkdir(join(root(), 'usr/lib/systemd'), { recursive: true })
    await cp('/usr/lib/systemd/system', join(root(), 'usr/lib/systemd/system'), {
      recursive: true,
      force: false,
    })
    const { stdout, stderr } = await run('systemd-analyze', [
      '--man=no',
      'verify',
      `--root=${root()}`,
      '/lib/systemd/system/imageswarm.service',
    ])
    // A bad setting is a warning with exit code 0: the test wants no output at all.
    expect(stderr + stdout).toBe('')
  })

  it('builds the same bytes again from the same tree', async () => {
    const again = await buildPackages(join(work, 'again'))
    expect(await sha256File(again.tgz)).toBe(await sha256File(built.tgz))
    expect(await sha256File(again.deb)).toBe(await sha256File(built.deb))
  })
})
