// @ts-check
// Processes the VM harness starts: commands run to completion with a bound, and long-running
// ones (dnsmasq, QEMU, servers) in their own process group, so that stopping one also stops
// whatever it started, and nothing outlives the test that made it.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createInterface } from 'node:readline'

/**
 * @typedef {object} RunResult
 * @property {number | null} code
 * @property {NodeJS.Signals | null} signal
 * @property {string} stdout
 * @property {string} stderr
 */

/**
 * Runs a command to completion, killed after `timeoutMs`; rejects with the command line and
 * its stderr when it fails, unless `allowFailure`.
 * @example await run('ip', ['netns', 'add', 'imageswarm-123-1'])
 * @param {string} command
 * @param {string[]} args
 * @param {{ timeoutMs?: number, input?: string | Buffer, allowFailure?: boolean, cwd?: string }} [options]
 * @returns {Promise<RunResult>}
 */
export async function run(command, args, options = {}) {
  const timeoutMs = options.timeoutMs ?? 60_000
  const child = spawn(command, args, {
    stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    cwd: options.cwd,
  })
  /** @type {Buffer[]} */
  const out = []
  /** @type {Buffer[]} */
  const err = []
  child.stdout?.on('data', (chunk) => out.push(chunk))
  child.stderr?.on('data', (chunk) => err.push(chunk))
  child.stdout?.on('error', () => {})
  child.stderr?.on('error', () => {})
  child.stdin?.on('error', () => {})
  if (options.input !== undefined) child.stdin?.end(options.input)
  let timedOut = false
  const timer = setTimeout(() => {
    timedOut = true
    child.kill('SIGKILL')
  }, timeoutMs)
  /** @type {[number | null, NodeJS.Signals | null]} */
  let status
  try {
    status = /** @type {[number | null, NodeJS.Signals | null]} */ (await once(child, 'close'))
  } catch (error) {
    clearTimeout(timer)
    throw new Error(`${command} could not start: ${/** @type {Error} */ (error).message}`, {
      cause: error,
    })
  }
  clearTimeout(timer)
  const result = {
    code: status[0],
    signal: status[1],
    stdout: Buffer.concat(out).toString(),
    stderr: Buffer.concat(err).toString(),
  }
  if (timedOut) {
    throw new Error(`${formatCommand(command, args)} did not finish within ${timeoutMs} ms`)
  }
  if (result.code !== 0 && !options.allowFailure) {
    throw new Error(
      `${formatCommand(command, args)} failed (${result.signal ?? `exit ${result.code}`}): ${result.stderr.trim() || result.stdout.trim()}`,
    )
  }
  return result
}

/**
 * @param {string} command
 * @param {string[]} args
 */
export function formatCommand(command, args) {
  return [command, ...args]
    .map((arg) => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg}'`))
    .join(' ')
}

/**
 * @typedef {object} ManagedProcess
 * @property {string} name what the process is, for messages ("dnsmasq", "qemu node1")
 * @property {number} pid its PID, also its process group's id
 * @property {import('node:child_process').ChildProcess} child
 * @property {Promise<{ code: number | null, signal: NodeJS.Signals | null }>} exited
 * @property {() => boolean} running
 * @property {(lines?: number) => string} recentOutput its last lines of stdout and stderr
 * @property {(options?: { signal?: NodeJS.Signals, graceMs?: number }) => Promise<void>} stop
 *   signals its process group, then SIGKILL after `graceMs`; resolves once it has exited
 */

/**
 * Starts a long-running process in its own process group. Its output is kept (the last 200
 * lines) for error messages and passed to `onLine`.
 * @param {string} name
 * @param {string} command
 * @param {string[]} args
 * @param {{ onLine?: (line: string, stream: 'stdout' | 'stderr') => void, cwd?: string, env?: NodeJS.ProcessEnv }} [options]
 * @returns {Promise<ManagedProcess>} once the process has been created (not when it is ready)
 */
export async function startProcess(name, command, args, options = {}) {
  const child = spawn(command, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
    cwd: options.cwd,
    env: options.env ?? process.env,
  })
  // A command that does not exist fails with 'error' instead of 'spawn'.
  await Promise.race([
    once(child, 'spawn'),
    once(child, 'error').then(([error]) => {
      throw new Error(`${name}: ${command} could not start: ${error.message}`, { cause: error })
    }),
  ])
  const pid = /** @type {number} */ (child.pid)
  /** @type {string[]} */
  const recent = []
  // A process killed mid-write can leave a read error on its pipe: the exit says enough.
  child.on('error', () => {})
  for (const stream of /** @type {const} */ (['stdout', 'stderr'])) {
    const input = child[stream]
    if (!input) continue
    input.on('error', () => {})
    const reader = createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY })
    reader.on('error', () => {})
    reader.on('line', (line) => {
      recent.push(line)
      if (recent.length > 200) recent.shift()
      options.onLine?.(line, stream)
    })
  }
  const exited = /** @type {Promise<{ code: number | null, signal: NodeJS.Signals | null }>} */ (
    once(child, 'exit').then(([code, signal]) => ({ code, signal }))
  )
  const running = () => child.exitCode === null && child.signalCode === null
  return {
    name,
    pid,
    child,
    exited,
    running,
    recentOutput: (lines = 20) => recent.slice(-lines).join('\n'),
    async stop({ signal = 'SIGTERM', graceMs = 5_000 } = {}) {
      signalGroup(pid, signal)
      if (await settlesWithin(exited, graceMs)) {
        // The leader is gone; a child it left behind in the group goes too.
        signalGroup(pid, 'SIGKILL')
        return
      }
      signalGroup(pid, 'SIGKILL')
      if (!(await settlesWithin(exited, 10_000))) {
        throw new Error(`${name} (PID ${pid}) did not exit within 10 s of SIGKILL`)
      }
    },
  }
}

/**
 * Signals a process group this harness started; a group that has already gone is no error.
 * @param {number} pid
 * @param {NodeJS.Signals} signal
 */
function signalGroup(pid, signal) {
  try {
    process.kill(-pid, signal)
  } catch (error) {
    if (/** @type {NodeJS.ErrnoException} */ (error).code !== 'ESRCH') throw error
  }
}

/**
 * Whether the promise settles within `ms`.
 * @param {Promise<unknown>} promise
 * @param {number} ms
 */
export async function settlesWithin(promise, ms) {
  /** @type {NodeJS.Timeout | undefined} */
  let timer
  const timeout = new Promise((resolve) => {
    timer = setTimeout(() => resolve(false), ms)
  })
  const settled = promise.then(
    () => true,
    () => true,
  )
  const result = await Promise.race([settled, timeout])
  clearTimeout(timer)
  return result
}

/**
 * Whether a process with this PID exists (signal 0 checks without signalling).
 * @param {number} pid
 */
export function processExists(pid) {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return /** @type {NodeJS.ErrnoException} */ (error).code === 'EPERM'
  }
}
