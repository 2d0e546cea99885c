// What a person sees from the CLI, on a pseudo-terminal (util-linux `script`) and off
// one (pipes): short lines and a bar that ends at 100 %, no JSON unless asked for, one
// error line and its hint; and `--json` / `--log-format json` for machines.
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { INSTALL_PARAMETERS } from '@imageswarm/client'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CLI, startServer } from '../scripts/lib/deployment.mjs'
import { makeSampleImage } from '../scripts/lib/sample-image.mjs'

interface Run {
  code: number | null
  /** On a terminal: everything the terminal showed, escape sequences included. */
  output: string
  stdout: string
  stderr: string
}

/**
 * The environment of a person's shell: none of the harness's settings (its log format)
 * nor any the machine running the tests may have exported.
 */
function personEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(
    Object.entries(process.env).filter(
      ([name]) =>
        !/^(IMAGESWARM_|BITTORRENT_|SI_BITTORRENT_CONF$|IMAGESERVER$|IMAGENAME$)/.test(name),
    ),
  )
}

/** An install reads no kernel command line but the test's: not this host's /proc/cmdline. */
function withCmdline(args: string[]): string[] {
  return args[0] === 'install' && !args.includes('--cmdline')
    ? [...args, '--cmdline', '/dev/null']
    : args
}

const quote = (arg: string) => `'${arg.replaceAll("'", "'\\''")}'`

/** Starts the CLI on a pseudo-terminal; what it showed so far is `shown()`. */
function startOnTerminal(args: string[], timeoutMs = 120_000) {
  const command = [process.execPath, CLI, ...withCmdline(args)].map(quote).join(' ')
  const child = spawn('script', ['-qfec', command, '/dev/null'], {
    env: { ...personEnv(), TERM: 'xterm', COLUMNS: '120', LINES: '40' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let shown = ''
  child.stdout.on('data', (chunk) => (shown += chunk))
  return { child, done: collect(child, timeoutMs), shown: () => shown }
}

/** Runs the CLI on a pseudo-terminal; bounded by `timeoutMs`. */
function onTerminal(args: string[], timeoutMs = 120_000): Promise<Run> {
  return startOnTerminal(args, timeoutMs).done
}

/** Runs the CLI with pipes for stdout and stderr, as a serial console or a log would. */
function offTerminal(args: string[], timeoutMs = 120_000): Promise<Run> {
  return collect(
    spawn(process.execPath, [CLI, ...withCmdline(args)], {
      env: personEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
    timeoutMs,
  )
}

function collect(child: ReturnType<typeof spawn>, timeoutMs: number): Promise<Run> {
  let stdout = ''
  let stderr = ''
  child.stdout?.on('data', (chunk) => (stdout += chunk))
  child.stderr?.on('data', (chunk) => (stderr += chunk))
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
  return new Promise((resolve) => {
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, output: stdout + stderr, stdout, stderr })
    })
  })
}

/** The lines a terminal ends up showing: a carriage return or a cursor move overwrites. */
function shownLines(output: string): string[] {
  return (
    output
      // biome-ignore lint/suspicious/noControlCharactersInRegex: terminal escape sequences
      .replace(/\x1b\[[0-9;?]*[A-Za-z]|\x1b[78]/g, '\r')
      .split('\n')
      .map(
        (line) =>
          line
            .split('\r')
            .filter((part) => part.trim() !== '')
            .at(-1) ?? '',
      )
      .filter((line) => line.trim() !== '')
  )
}

const looksLikeJson = (line: string) => /^\s*\{".*":/.test(line)

let work: string
let server: Awaited<ReturnType<typeof startServer>>

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'imageswarm-console-'))
  // Big enough that the download takes several progress reports at the capped uplink.
  await makeSampleImage(join(work, 'images', 'demo'), {
    dirs: 4,
    filesPerDir: 10,
    bigFiles: 2,
    bigFileBytes: 6 * 1024 * 1024,
  })
  server = await startServer({
    images: ['demo'],
    imagesDir: join(work, 'images'),
    tarballsDir: join(work, 'tarballs'),
    torrentsDir: join(work, 'torrents'),
    pidFile: join(work, 'serve.pid'),
    args: ['--upload-limit', '4M'],
  })
}, 180_000)

afterAll(async () => {
  await server?.stop()
  await rm(work, { recursive: true, force: true })
})

describe('the install client on a terminal', () => {
  it('shows a few lines and a bar that ends at 100 %, and no JSON', async () => {
    const target = join(work, 'tty-target')
    const run = await onTerminal([
      'install',
      '--server',
      server.url,
      '--image',
      'demo',
      '--target',
      target,
      '--seed-time',
      '0',
      '--no-report',
    ])
    const lines = shownLines(run.output)
    expect(run.code, run.output).toBe(0)
    expect(lines.some((line) => /^downloading \[=+\] 100% \| done in/.test(line))).toBe(true)
    expect(lines.filter(looksLikeJson)).toEqual([])
    expect(lines.at(-1)).toMatch(/^installed into .*tty-target in [\d.]+ s/)
    // What happened, in a few lines: image, staging, the bars, downloaded, verified,
    // extracted, installed.
    expect(lines.length).toBeLessThanOrEqual(10)
  })

  it('says a misspelt option in one line and a hint, not the whole help', async () => {
    const run = await onTerminal(['install', '--servr', server.url, '--image', 'demo'])
    expect(run.code).toBe(2)
    expect(shownLines(run.output)).toEqual([
      "imageswarm: error: unknown option '--servr' (did you mean --server?)",
      '  hint: imageswarm install --help lists the options',
    ])
  })

  it('says an unreachable server once: one warning, then the error and its hint', async () => {
    const run = await onTerminal([
      'install',
      '--server',
      'http://127.0.0.1:1',
      '--image',
      'demo',
      '--target',
      join(work, 'never'),
      '--connect-timeout',
      '3',
    ])
    expect(run.code).toBe(4)
    const lines = shownLines(run.output)
    expect(lines.filter(looksLikeJson)).toEqual([])
    expect(
      lines.filter((line) => line.startsWith('warning: image server not reachable')),
    ).toHaveLength(1)
    expect(lines.filter((line) => line.includes('E_SERVER_UNREACHABLE'))).toHaveLength(1)
    expect(lines.at(-1)).toMatch(/^ {2}hint: /)
  })

  it('refuses to install into /a on a running system unless a target is given', async () => {
    const hadA = existsSync('/a')
    // No server answers there: whatever happens, nothing is downloaded or written.
    const run = await onTerminal(['install', '--server', 'http://127.0.0.1:1', '--image', 'demo'])
    expect(run.code).toBe(2)
    expect(shownLines(run.output)[0]).toMatch(
      /^imageswarm: error E_USAGE: no target root given, and this is not an installer environment/,
    )
    expect(existsSync('/a')).toBe(hadA)
  })
})

describe('the install client off a terminal', () => {
  it('writes progress as plain lines on stderr, no JSON and nothing on stdout', async () => {
    const run = await offTerminal([
      'install',
      '--server',
      server.url,
      '--image',
      'demo',
      '--target',
      join(work, 'piped-target'),
      '--seed-time',
      '0',
      '--no-report',
    ])
    expect(run.code, run.stderr).toBe(0)
    expect(run.stdout).toBe('')
    const lines = run.stderr.trim().split('\n')
    expect(lines.filter(looksLikeJson)).toEqual([])
    expect(run.stderr).not.toContain('\x1b[')
    expect(lines.at(-1)).toMatch(/^installed into .*piped-target/)
  })

  it('gives machines JSON when asked: events with time and node, and the structured log', async () => {
    const run = await offTerminal([
      '--log-format',
      'json',
      'install',
      '--server',
      server.url,
      '--image',
      'demo',
      '--target',
      join(work, 'json-target'),
      '--seed-time',
      '0',
      '--node-name',
      'node07',
      '--no-report',
      '--json',
    ])
    expect(run.code, run.stderr).toBe(0)
    const events = run.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line))
    expect(events.at(-1)).toMatchObject({ type: 'installed', node: 'node07' })
    for (const event of events) {
      expect(Number.isNaN(Date.parse(event.time)), event.time).toBe(false)
      expect(event.node).toBe('node07')
    }
    const records = run.stderr
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line))
    expect(records.some((record) => record.msg === 'extracted image')).toBe(true)
  })

  it('writes the structured log to --log-file while the console stays short', async () => {
    const logFile = join(work, 'install.log')
    const run = await offTerminal([
      'install',
      '--server',
      server.url,
      '--image',
      'demo',
      '--target',
      join(work, 'logged-target'),
      '--seed-time',
      '0',
      '--no-report',
      '--log-file',
      logFile,
    ])
    expect(run.code, run.stderr).toBe(0)
    expect(run.stderr.split('\n').filter(looksLikeJson)).toEqual([])
    const records = (await readFile(logFile, 'utf8'))
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line))
    expect(records.some((record) => record.msg === 'extracted image')).toBe(true)
  })
})

describe('--print-config', () => {
  it('shows one line per setting with its value and source, durations with units', async () => {
    const run = await offTerminal([
      'install',
      '--server',
      server.url,
      '--image',
      'demo',
      '--seed-time',
      '10m',
      '--cmdline',
      '/dev/null',
      '--print-config',
    ])
    expect(run.code, run.stderr).toBe(0)
    const lines = run.stdout.trim().split('\n')
    // Every setting, then what the node trusts.
    expect(lines).toHaveLength(INSTALL_PARAMETERS.length + 1)
    expect(lines).toContainEqual(expect.stringMatching(/^seed-time +10m +flag --seed-time$/))
    expect(lines).toContainEqual(expect.stringMatching(/^target +\/a +default$/))
    expect(lines.at(-1)).toMatch(/^trust +no trust root/)
  })

  it('shows a wrong setting on its line, the others still, and fails', async () => {
    const run = await offTerminal([
      'install',
      '--server',
      'ftp://nowhere',
      '--image',
      'demo',
      '--seed-time',
      'soon',
      '--cmdline',
      '/dev/null',
      '--print-config',
    ])
    expect(run.code).toBe(2)
    const lines = run.stdout.trim().split('\n')
    expect(lines).toContainEqual(expect.stringMatching(/^server +INVALID +invalid --server/))
    expect(lines).toContainEqual(expect.stringMatching(/^seed-time +INVALID +invalid --seed-time/))
    expect(lines).toContainEqual(expect.stringMatching(/^image +demo +flag --image$/))
    expect(run.stderr.split('\n')[0]).toMatch(/E_CONFIG_INVALID: 2 settings are invalid/)
  })
})

describe('serve on a terminal', () => {
  it('prints the image, the dashboard and the kernel command line, follows a deployment, and stops cleanly', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'imageswarm-console-serve-'))
    const pidFile = join(dir, 'serve.pid')
    let running: ReturnType<typeof startOnTerminal> | undefined
    try {
      await makeSampleImage(join(dir, 'images', 'small'), {
        dirs: 2,
        filesPerDir: 5,
        bigFiles: 1,
        bigFileBytes: 1024 * 1024,
      })
      const started = startOnTerminal([
        'serve',
        '--image',
        'small',
        '--images-dir',
        join(dir, 'images'),
        '--tarballs-dir',
        join(dir, 'tarballs'),
        '--torrents-dir',
        join(dir, 'torrents'),
        '--boot-dir',
        join(dir, 'boot'),
        '--pid-file',
        pidFile,
        '--address',
        '127.0.0.1',
        '--port',
        '0',
        '--torrent-port',
        '0',
        '--deployment-gap',
        '1s',
      ])
      running = started
      // Bounded: 120 s.
      const shows = async (text: string) => {
        for (let attempt = 0; attempt < 1200 && !started.shown().includes(text); attempt++) {
          await new Promise((resolve) => setTimeout(resolve, 100))
        }
        expect(started.shown()).toContain(text)
      }
      // Published and serving once the summary's last line shows.
      await shows('stop with Ctrl-C')
      const url = /serving 1 image at (\S+)/.exec(started.shown())?.[1]
      // A node installs; the console follows its deployment.
      const install = await offTerminal([
        'install',
        '--server',
        url!,
        '--image',
        'small',
        '--target',
        join(dir, 'target'),
        '--seed-time',
        '0',
      ])
      expect(install.code, install.stderr).toBe(0)
      await shows('small: deployment 1 finished')
      // Stopped as an administrator would.
      const stop = await offTerminal(['stop', '--pid-file', pidFile])
      expect(stop.code, stop.stderr).toBe(0)
      const run = await started.done
      const lines = shownLines(run.output)
      expect(lines.filter(looksLikeJson)).toEqual([])
      expect(lines).toContainEqual(
        expect.stringMatching(/^serving 1 image at http:\/\/127\.0\.0\.1:\d+$/),
      )
      expect(lines).toContainEqual(expect.stringMatching(/^ {2}small +version 1 +[\d.]+ MiB +zstd/))
      expect(lines).toContainEqual(
        expect.stringMatching(/^dashboard: +http:\/\/127\.0\.0\.1:\d+\/$/),
      )
      expect(lines).toContainEqual(
        expect.stringMatching(
          /^nodes boot with: +imageswarm\.server=http:\/\/127\.0\.0\.1:\d+ imageswarm\.image=small$/,
        ),
      )
      expect(lines).toContainEqual(
        expect.stringMatching(/^small: deployment 1 began \(first node \S+ 127\.0\.0\.1\)$/),
      )
      expect(lines).toContainEqual(
        expect.stringMatching(
          /^small: deployment 1 finished: 1 node in \d+ s, server sent [\d.]+ copies$/,
        ),
      )
      expect(lines.at(-1)).toBe('image server stopped')
      expect(lines.length).toBeLessThanOrEqual(16)
    } finally {
      // A failed check leaves the server running: stopped as above (and the terminal
      // killed by its PID if it is still there when its own time limit runs out).
      if (running && running.child.exitCode === null) {
        await offTerminal(['stop', '--pid-file', pidFile], 30_000)
        await running.done
      }
      await rm(dir, { recursive: true, force: true })
    }
  }, 180_000)
})
