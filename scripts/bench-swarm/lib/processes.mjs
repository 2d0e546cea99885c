// Processes inside the cluster's namespaces: each in its own process group so that it
// and everything it starts can be ended together, all tracked so that teardown can
// end every one of them, and each bounded in time.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createInterface } from 'node:readline'

const running = new Set()

/**
 * Runs `command` in namespace `ns`. `onLine(stream, line, ms)` gets every output line
 * with the time it arrived (performance.now()). Killed after `timeoutMs`.
 */
export function spawnIn(ns, command, { onLine, env, timeoutMs, cwd } = {}) {
  const child = spawn('ip', ['netns', 'exec', ns, ...command], {
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
    // The benches read imageswarm's structured log: JSON lines on stderr.
    env: { ...process.env, IMAGESWARM_LOG_FORMAT: 'json', ...env },
    cwd,
  })
  running.add(child)
  for (const stream of ['stdout', 'stderr']) {
    createInterface({ input: child[stream], crlfDelay: Number.POSITIVE_INFINITY }).on(
      'line',
      (line) => onLine?.(stream, line, performance.now()),
    )
  }
  const timer = timeoutMs ? setTimeout(() => killGroup(child, 'SIGKILL'), timeoutMs) : undefined
  const exited = once(child, 'exit').then(([code, signal]) => {
    clearTimeout(timer)
    running.delete(child)
    return { code, signal, at: performance.now() }
  })
  return { child, exited, kill: (signal = 'SIGTERM') => killGroup(child, signal) }
}

export function killGroup(child, signal) {
  if (child.exitCode !== null || child.signalCode !== null) return
  try {
    process.kill(-child.pid, signal)
  } catch {}
}

/** Asks politely, then insists after `graceMs`. */
export async function stopProcess(handle, graceMs = 5000) {
  handle.kill('SIGTERM')
  const timer = setTimeout(() => handle.kill('SIGKILL'), graceMs)
  const result = await handle.exited
  clearTimeout(timer)
  return result
}

/** Kills every process still running (teardown). */
export function killAll() {
  for (const child of running) killGroup(child, 'SIGKILL')
}
