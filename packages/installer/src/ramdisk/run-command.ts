import { execFile } from 'node:child_process'

export interface CommandResult {
  /** Exit code; null when a signal ended the command. */
  code: number | null
  stdout: string
  stderr: string
}

/**
 * Runs a command to completion in the C locale and returns its exit code and output. It
 * rejects only when the command cannot be started; a non-zero exit is the caller's to judge.
 */
export function runCommand(
  path: string,
  args: readonly string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    execFile(
      path,
      args,
      {
        cwd: options.cwd,
        env: { ...(options.env ?? process.env), LC_ALL: 'C' },
        // apt-cache show of a kernel package and ldd of node stay far below this.
        maxBuffer: 64 << 20,
        encoding: 'utf8',
      },
      (err, stdout, stderr) => {
        if (err !== null && typeof err.code !== 'number' && err.signal == null) {
          reject(err)
          return
        }
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : null
        resolve({ code, stdout, stderr })
      },
    )
  })
}

/** The last lines of a command's stderr, for an error message. */
export function tailOf(text: string, lines = 5): string {
  return text.trim().split('\n').slice(-lines).join('\n')
}
