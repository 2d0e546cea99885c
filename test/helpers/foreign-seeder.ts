import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

const SCRIPT = fileURLToPath(new URL('./libtorrent-seeder.py', import.meta.url))
const PYTHON = '/usr/bin/python3'

/** Why a libtorrent seeder cannot run here, or undefined if it can. */
export function whyNoLibtorrent(): string | undefined {
  if (!existsSync(PYTHON)) return `${PYTHON} is missing`
  const probe = spawnSync(PYTHON, ['-c', 'import libtorrent'], { stdio: 'ignore' })
  return probe.status === 0
    ? undefined
    : 'python3-libtorrent is missing (scripts/setup.sh --test installs it)'
}

export interface ForeignSeederState {
  port: number
  uploaded: number
  peers: number
  seeding: boolean
}

/**
 * A real foreign BitTorrent client, libtorrent, seeding `dir`'s copy of the archive of
 * `torrentFile` and announcing to its tracker. Resolves once it listens; `stop()` ends it.
 */
export async function startLibtorrentSeeder(torrentFile: string, dir: string) {
  const child = spawn(PYTHON, [SCRIPT, torrentFile, dir], { stdio: ['ignore', 'pipe', 'pipe'] })
  let state: ForeignSeederState | undefined
  let stderr = ''
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString()
  })
  const exited = once(child, 'exit')
  const listening = new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      state = JSON.parse(line) as ForeignSeederState
      if (state.port > 0) resolve()
    })
    child.once('exit', (code) =>
      reject(new Error(`libtorrent seeder exited with ${code}: ${stderr}`)),
    )
  })
  await listening
  return {
    get state(): ForeignSeederState {
      return state!
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
      await exited
    },
  }
}
