// Starts a real image server and real install clients as separate processes, the way
// an administrator and a node's installer would, and collects what they report.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

export const CLI = fileURLToPath(new URL('../../packages/cli/bin/imageswarm.js', import.meta.url))

function lines(stream, onLine) {
  createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY }).on('line', onLine)
}

function parseJson(line) {
  try {
    return JSON.parse(line)
  } catch {
    return undefined
  }
}

/**
 * `node ARGS`, inside network namespace `netns` when given (`ip netns exec` execs node).
 * @returns {[string, string[]]}
 */
// The harness reads the server's and clients' structured log: JSON lines on stderr.
const JSON_LOGS = { IMAGESWARM_LOG_FORMAT: 'json' }

function nodeCommand(netns, args) {
  return netns === undefined
    ? [process.execPath, args]
    : ['ip', ['netns', 'exec', netns, process.execPath, ...args]]
}

/** Install routes' directories and settings (`serve --boot-dir` …), passed on when given. */
const INSTALL_FLAGS = {
  bootDir: '--boot-dir',
  bootImage: '--boot-image',
  bootAppend: '--boot-append',
  scriptsDir: '--scripts-dir',
  overridesDir: '--overrides-dir',
  advertiseAddress: '--advertise-address',
}

/**
 * `imageswarm serve` with its own directories, on 127.0.0.1 unless `address` says
 * otherwise, inside network namespace `netns` when given (`ip netns exec NS node …`, which
 * execs node: the PID is the server's); resolves once every image is published and
 * seeded, with the server's URL. `bootDir`, `bootImage`, `bootAppend`, `scriptsDir`,
 * `overridesDir` and `advertiseAddress` become the serve flags of the same names.
 */
export async function startServer(options) {
  const installArgs = Object.entries(INSTALL_FLAGS).flatMap(([key, flag]) =>
    options[key] === undefined ? [] : [flag, String(options[key])],
  )
  const args = [
    CLI,
    'serve',
    ...options.images.flatMap((image) => ['--image', image]),
    '--images-dir',
    options.imagesDir,
    '--tarballs-dir',
    options.tarballsDir,
    '--torrents-dir',
    options.torrentsDir,
    '--pid-file',
    options.pidFile,
    '--address',
    options.address ?? '127.0.0.1',
    '--port',
    String(options.port ?? 0),
    '--torrent-port',
    '0',
    ...installArgs,
    ...(options.args ?? []),
  ]
  const [command, commandArgs] = nodeCommand(options.netns, args)
  const child = spawn(command, commandArgs, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...JSON_LOGS, ...options.env },
  })
  const logs = []
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`server not ready after ${options.readyTimeoutMs ?? 120_000} ms`)),
      options.readyTimeoutMs ?? 120_000,
    )
    lines(child.stderr, (line) => {
      const record = parseJson(line) ?? { msg: line }
      logs.push(record)
      options.onLog?.(record)
      if (record.msg === 'serving images') {
        clearTimeout(timer)
        resolve(record.url)
      }
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(
        new Error(
          `server exited with ${code} before it was ready:\n${logs.map((l) => l.msg + (l.err ? ` ${JSON.stringify(l.err)}` : '')).join('\n')}`,
        ),
      )
    })
  })
  const exited = once(child, 'exit')
  const url = await ready
  return {
    url,
    process: child,
    logs,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal)
      const [code] = await exited
      return code
    },
  }
}

/**
 * One `imageswarm install --json` process, inside network namespace `netns` when given (as
 * for startServer); resolves when it exits, with its exit code, its events and its log
 * records.
 */
export function runInstall(options) {
  // `command` runs another build of the client, e.g. the single-file bundle.
  return runClient(
    [
      ...(options.command ?? [CLI, 'install']),
      '--json',
      '--server',
      options.server,
      '--image',
      options.image,
      '--staging',
      options.staging,
      '--target',
      options.target,
      '--seed-time',
      String(options.seedTime ?? 60),
      '--cmdline',
      options.cmdline ?? '/dev/null',
      ...(options.args ?? []),
    ],
    options,
  )
}

/** A client process (install or update) with its JSON events and log records collected. */
function runClient(args, options) {
  const [command, commandArgs] = nodeCommand(options.netns, args)
  const child = spawn(command, commandArgs, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...JSON_LOGS, ...options.env },
  })
  const events = []
  const logs = []
  lines(child.stdout, (line) => {
    const event = parseJson(line)
    if (event) {
      events.push(event)
      options.onEvent?.(event)
    }
  })
  lines(child.stderr, (line) => logs.push(parseJson(line) ?? { msg: line }))
  const timeout = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 170_000)
  const result = once(child, 'exit').then(([code, signal]) => {
    clearTimeout(timeout)
    const installed = events.find((event) => event.type === 'installed')
    const failed = events.find((event) => event.type === 'failed')
    return { code, signal, events, logs, installed, failed }
  })
  return Object.assign(result, { process: child })
}

/**
 * One `imageswarm update --json` process (issue 16): runInstall's options but staging (an
 * update stages in the root), the target being the installed root to update; resolves with its exit code, events, log records, its
 * `update-plan` and its `updated` event.
 */
export function runUpdate(options) {
  const run = runClient(
    [
      CLI,
      'update',
      '--json',
      '--server',
      options.server,
      '--image',
      options.image,
      '--target',
      options.target,
      '--seed-time',
      String(options.seedTime ?? 60),
      ...(options.args ?? []),
    ],
    options,
  )
  const result = run.then((outcome) => ({
    ...outcome,
    plan: outcome.events.find((event) => event.type === 'update-plan')?.plan,
    updated: outcome.events.find((event) => event.type === 'updated'),
  }))
  return Object.assign(result, { process: run.process })
}
