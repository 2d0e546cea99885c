import { execFile } from 'node:child_process'
import { hasCommand } from '../../src/testing/system-tools.js'

export interface MinisignRun {
  code: number
  stdout: string
  stderr: string
}

/**
 * Runs Debian's `minisign` (never through a shell) and returns how it ended. The trust
 * tests need the real tool: without it they fail, naming the package to install.
 */
export function runMinisign(args: readonly string[], cwd: string): Promise<MinisignRun> {
  if (!hasCommand('minisign')) {
    throw new Error('minisign is missing: apt-get install minisign (scripts/setup.sh --test does)')
  }
  return new Promise((resolve, reject) => {
    execFile('minisign', [...args], { cwd, timeout: 30_000 }, (error, stdout, stderr) => {
      if (error && typeof error.code !== 'number') {
        reject(error)
        return
      }
      resolve({ code: error ? Number(error.code) : 0, stdout, stderr })
    })
  })
}
