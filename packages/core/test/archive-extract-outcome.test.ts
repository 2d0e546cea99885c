import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { describe, expect, it } from 'vitest'
import { judgeGatedPass } from '../src/archive/extract-gated.js'
import { progressCounter } from '../src/archive/extract-progress.js'
import { checkExit, type ExtractRun } from '../src/archive/extract-run.js'
import { brokenPipe } from '../src/archive/extract-unchecked.js'
import type { ToolExit } from '../src/archive/spawn-tool.js'
import { isImageSwarmError } from '../src/index.js'
import { thrownBy } from './helpers/thrown-by.js'

const exitCode = (code: number): ToolExit => ({ code, signal: null, error: undefined })
const passEnd = { readError: undefined, failure: undefined, tarFailed: false }

describe('judgeGatedPass: which failures undo the extraction', () => {
  it('leaves a pass nothing stopped to tar’s exit status', () => {
    expect(judgeGatedPass({ ...passEnd, decryptError: undefined })).toEqual({ kind: 'tar-exit' })
  })

  it('refuses the archive for a scanner or decompressor failure', () => {
    const refusal = new Error('member ./link escapes the target')
    expect(judgeGatedPass({ ...passEnd, failure: refusal, decryptError: undefined })).toEqual({
      kind: 'refused',
      cause: refusal,
    })
  })

  it('reports tar’s own failure as tar’s, not as a refusal', () => {
    const end = { ...passEnd, failure: new Error('tar exited'), tarFailed: true }
    expect(judgeGatedPass({ ...end, decryptError: undefined })).toEqual({ kind: 'tar-exit' })
  })

  it('blames a failed decryption over whatever followed it, tar’s exit included', () => {
    const decryptError = new Error('chunk 3 failed its tag')
    const end = { ...passEnd, failure: new Error('tar exited'), tarFailed: true }
    expect(judgeGatedPass({ ...end, decryptError })).toEqual({
      kind: 'refused',
      cause: decryptError,
    })
  })

  it('reports an unreadable archive file before anything else', () => {
    const readError = Object.assign(new Error('EIO'), { code: 'EIO' })
    const end = { readError, failure: new Error('refused'), tarFailed: false }
    expect(judgeGatedPass({ ...end, decryptError: new Error('tag') })).toEqual({
      kind: 'unreadable',
      cause: readError,
    })
  })
})

describe('checkExit', () => {
  it('accepts exit 0 only', () => {
    expect(() => checkExit('tar', exitCode(0), 'tar: warning\n', '/a')).not.toThrow()
    const spawnFailed = { code: null, signal: null, error: new Error('ENOENT') }
    const error = thrownBy(() => checkExit('tar', spawnFailed, '', '/a'))
    expect(isImageSwarmError(error) && error.code).toBe('E_EXTRACT_FAILED')
  })

  it('names the tool, the target and its message; a full disk is E_NO_SPACE', () => {
    const failed = thrownBy(() =>
      checkExit('tar', exitCode(2), 'tar: ./a/b: Cannot open: Not a directory\n', '/a'),
    )
    expect(isImageSwarmError(failed) && failed.code).toBe('E_EXTRACT_FAILED')
    expect((failed as Error).message).toMatch(/^tar failed extracting into \/a .*Not a directory/)

    const full = thrownBy(() =>
      checkExit(
        'zstd -d',
        exitCode(1),
        'zstd: error 70 : Write error : No space left on device',
        '/a',
      ),
    )
    expect(isImageSwarmError(full) && full.code).toBe('E_NO_SPACE')
  })
})

describe('brokenPipe', () => {
  it('excuses a decompressor stopped only because tar had read the end', () => {
    expect(brokenPipe({ code: null, signal: 'SIGPIPE', error: undefined }, '')).toBe(true)
    expect(brokenPipe(exitCode(1), 'gzip: stdout: Broken pipe\n')).toBe(true)
    expect(brokenPipe(exitCode(1), 'zstd: /*stdin*\\: unexpected end of file')).toBe(false)
  })
})

describe('progressCounter', () => {
  it('reports the compressed bytes read so far against the archive size', async () => {
    const seen: [number, number][] = []
    const run = {
      options: { onProgress: (bytes: number, size: number) => seen.push([bytes, size]) },
      size: 10,
    } as unknown as ExtractRun
    const out: Buffer[] = []
    const sink = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        out.push(chunk)
        callback()
      },
    })
    const chunks = [Buffer.from('abcd'), Buffer.from('efg'), Buffer.from('hij')]
    await pipeline(Readable.from(chunks), progressCounter(run), sink)
    expect(seen).toEqual([
      [4, 10],
      [7, 10],
      [10, 10],
    ])
    expect(Buffer.concat(out).toString()).toBe('abcdefghij')
  })
})
