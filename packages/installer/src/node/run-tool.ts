import { spawn } from 'node:child_process'
import { type ErrorCode, ImageSwarmError, type Logger } from '@imageswarm/core'

/** The Debian package of each tool the installer runs, for E_TOOL_MISSING's hint. */
const TOOL_PACKAGES: Readonly<Record<string, string>> = {
  sfdisk: 'fdisk',
  wipefs: 'util-linux',
  blkid: 'util-linux',
  mkswap: 'util-linux',
  mount: 'mount',
  umount: 'mount',
  mke2fs: 'e2fsprogs',
  'mkfs.xfs': 'xfsprogs',
  'mkfs.vfat': 'dosfstools',
  chroot: 'coreutils',
  sync: 'coreutils',
}

/** Lines of a failed command's output an error carries. */
const TAIL_LINES = 8

/** The output a command's result keeps (its end); a post-install script can be chatty. */
const KEPT_OUTPUT_CHARS = 64 * 1024

export interface ToolResult {
  code: number | null
  signal: NodeJS.Signals | null
  /** stdout and stderr as they came, interleaved (at most the last 64 KiB). */
  output: string
}

export interface RunToolOptions {
  /** What the command does, for the log and errors: `partition /dev/vda`. */
  what: string
  /** The error a failure is. */
  code: ErrorCode
  hint: string
  /** The device, file or directory it works on. */
  path?: string
  input?: string
  env?: NodeJS.ProcessEnv
  logger: Logger
  /** A non-zero exit is returned, not thrown. */
  allowFailure?: boolean
}

/**
 * Runs a tool to completion (C locale), logging its command line and output; a non-zero
 * exit is an ImageSwarmError of `code` carrying the tool's last lines, a missing tool
 * E_TOOL_MISSING naming its Debian package.
 */
export async function runTool(
  command: string,
  args: readonly string[],
  options: RunToolOptions,
): Promise<ToolResult> {
  const commandLine = [command, ...args].join(' ')
  options.logger.info({ command: commandLine }, options.what)
  const child = spawn(command, args, {
    stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    env: { ...(options.env ?? process.env), LC_ALL: 'C' },
  })
  let output = ''
  const take = (chunk: Buffer) => {
    output += chunk.toString('utf8')
    if (output.length > 2 * KEPT_OUTPUT_CHARS) output = output.slice(-KEPT_OUTPUT_CHARS)
  }
  child.stdout?.on('data', take)
  child.stderr?.on('data', take)
  child.stdin?.on('error', () => {})
  if (options.input !== undefined) child.stdin?.end(options.input)
  const result = await new Promise<ToolResult | Error>((resolve) => {
    child.once('error', (err) => resolve(err))
    child.once('close', (code, signal) =>
      resolve({ code, signal, output: output.slice(-KEPT_OUTPUT_CHARS) }),
    )
  })
  if (result instanceof Error) {
    const missing = (result as NodeJS.ErrnoException).code === 'ENOENT'
    throw new ImageSwarmError(
      missing ? 'E_TOOL_MISSING' : options.code,
      missing
        ? `${command} is not installed here (needed to ${options.what})`
        : `${options.what}: ${command} could not start: ${result.message}`,
      {
        operation: options.what,
        ...(options.path ? { path: options.path } : {}),
        hint: missing
          ? `the installer ramdisk needs ${command}${TOOL_PACKAGES[command] ? ` (Debian package ${TOOL_PACKAGES[command]})` : ''}: rebuild it with imageswarm initrd`
          : options.hint,
        cause: result,
      },
    )
  }
  options.logger.info(
    {
      command: commandLine,
      code: result.code,
      signal: result.signal,
      output: tail(result.output, 40),
    },
    `${options.what}: ${result.code === 0 ? 'done' : 'failed'}`,
  )
  if (result.code !== 0 && !options.allowFailure) {
    throw new ImageSwarmError(
      options.code,
      `${options.what} failed: ${commandLine} ${result.signal ? `was killed by ${result.signal}` : `exited with ${result.code}`}${result.output.trim() ? `:\n${indent(tail(result.output, TAIL_LINES))}` : ''}`,
      {
        operation: options.what,
        ...(options.path ? { path: options.path } : {}),
        hint: options.hint,
      },
    )
  }
  return result
}

/** The last `lines` non-empty lines of `text`. */
export function tail(text: string, lines: number): string {
  return text
    .split('\n')
    .map((line) => line.trimEnd())
    .filter(Boolean)
    .slice(-lines)
    .join('\n')
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((line) => `    ${line}`)
    .join('\n')
}
