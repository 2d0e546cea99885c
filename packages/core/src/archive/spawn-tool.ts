import { type ChildProcess, type StdioOptions, spawn } from 'node:child_process'
import { errnoOf } from '../errors.js'

/** Environment variables that silently change what tar, zstd or gzip write. */
const UNSAFE_ENV = ['TAR_OPTIONS', 'ZSTD_CLEVEL', 'ZSTD_NBTHREADS', 'GZIP', 'POSIXLY_CORRECT']

/**
 * The environment for archive tools: the caller's, minus the variables that would change
 * the archive's bytes (TAR_OPTIONS, ZSTD_CLEVEL, GZIP), in the C locale so tar's messages
 * are English and its file-name handling does not depend on the server's locale.
 */
export function toolEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, LC_ALL: 'C' }
  for (const name of UNSAFE_ENV) delete env[name]
  return env
}

export interface ToolExit {
  code: number | null
  signal: NodeJS.Signals | null
  /** Set when the process could not be started at all (ENOENT, EACCES). */
  error: Error | undefined
}

export interface RunningTool {
  child: ChildProcess
  /** Resolves when the process has exited and its stdio is closed; never rejects. */
  exited: Promise<ToolExit>
  /** What the tool wrote to stderr so far (the first 256 KiB). */
  stderr(): string
}

const STDERR_LIMIT = 256 * 1024

/** Starts a tool with stderr captured; the caller wires stdin and stdout via `stdio`. */
export function startTool(
  path: string,
  args: readonly string[],
  stdio: StdioOptions,
  env: NodeJS.ProcessEnv = toolEnv(),
): RunningTool {
  const child = spawn(path, args, { stdio, env })
  const chunks: Buffer[] = []
  let stderrBytes = 0
  child.stderr?.on('data', (chunk: Buffer) => {
    if (stderrBytes >= STDERR_LIMIT) return
    chunks.push(chunk)
    stderrBytes += chunk.length
  })
  const exited = new Promise<ToolExit>((resolve) => {
    let spawnError: Error | undefined
    child.once('error', (err) => {
      spawnError = err
      // 'close' does not always follow a failed spawn; settle here too.
      if (child.pid === undefined) resolve({ code: null, signal: null, error: err })
    })
    child.once('close', (code, signal) => resolve({ code, signal, error: spawnError }))
  })
  return {
    child,
    exited,
    stderr: () => Buffer.concat(chunks).toString('utf8'),
  }
}

export interface ToolResult {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs a short command to completion (`tar --version`); rejects if it cannot start. */
export async function runTool(
  path: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv = toolEnv(),
): Promise<ToolResult> {
  const tool = startTool(path, args, ['ignore', 'pipe', 'pipe'], env)
  const out: Buffer[] = []
  tool.child.stdout?.on('data', (chunk: Buffer) => out.push(chunk))
  const exit = await tool.exited
  if (exit.error !== undefined) throw exit.error
  return { code: exit.code, stdout: Buffer.concat(out).toString('utf8'), stderr: tool.stderr() }
}

/** How a tool ended, for error messages: `exit 2`, `signal SIGKILL`, `could not start (ENOENT)`. */
export function describeExit(exit: ToolExit): string {
  if (exit.error !== undefined)
    return `could not start (${errnoOf(exit.error) ?? exit.error.message})`
  if (exit.signal !== null) return `killed by ${exit.signal}`
  return `exit ${exit.code}`
}

/** Stderr lines without blanks, for logging tar's warnings one by one. */
export function stderrLines(text: string): string[] {
  return text
    .split('\n')
    .map((line) => line.trimEnd())
    .filter((line) => line !== '')
}

/**
 * Whether a tool's stderr says its output disk is full. GNU tar reports a full disk as
 * "Wrote only 8704 of 10240 bytes" when a write falls short before one fails with ENOSPC;
 * on a regular file nothing else cuts a write short.
 */
export function reportsNoSpace(stderr: string): boolean {
  return /No space left on device|Disk quota exceeded|Wrote only \d+ of \d+ bytes/.test(stderr)
}
