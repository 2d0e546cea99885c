import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { close, open } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import { digestAsWritten } from '../src/archive/digest-as-written.js'
import { makeTempDir } from './helpers/temp-dir.js'

const openFd = promisify(open)
const closeFd = promisify(close)

describe('digestAsWritten', () => {
  it('hashes what another process appends, while it writes, through the shared fd', async () => {
    const file = join(await makeTempDir(), 'growing')
    const fd = await openFd(file, 'wx+')
    try {
      // 40 bursts of 1 MiB, 10 ms apart: the reader catches up with the writer many times.
      const writer = spawn(
        'sh',
        ['-c', 'for i in $(seq 40); do head -c 1048576 /dev/urandom; sleep 0.01; done'],
        { stdio: ['ignore', fd, 'inherit'] },
      )
      const exited = new Promise((resolve) => writer.once('close', resolve))
      const digest = await digestAsWritten(fd, exited)

      expect(await exited).toBe(0)
      const written = await readFile(file)
      expect(digest.size).toBe(40 << 20)
      expect(digest.sha256).toBe(createHash('sha256').update(written).digest('hex'))
    } finally {
      await closeFd(fd)
    }
  })

  it('gives the empty digest for a writer that wrote nothing, and settles if it failed', async () => {
    const fd = await openFd(join(await makeTempDir(), 'empty'), 'wx+')
    try {
      const digest = await digestAsWritten(fd, Promise.reject(new Error('writer failed')))
      expect(digest).toEqual({ size: 0, sha256: createHash('sha256').digest('hex') })
    } finally {
      await closeFd(fd)
    }
  })
})
