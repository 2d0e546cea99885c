import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { isImageSwarmError } from '@imageswarm/core'
import type { Command } from 'commander'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { imagesToServe } from '../src/commands/serve.js'
import { parseConfigText } from '../src/config-file.js'
import { buildProgram } from '../src/main.js'

let dir: string
const savedEnv = { ...process.env }

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'imageswarm-config-'))
  for (const key of Object.keys(process.env)) {
    if (key.startsWith('IMAGESWARM_')) delete process.env[key]
  }
})

afterEach(async () => {
  process.env = { ...savedEnv }
  await rm(dir, { recursive: true, force: true })
})

/**
 * Parses `imageswarm serve ARGS` with `text` as the --config file and returns the options
 * serve's action would receive, without serving: the action is replaced.
 */
async function serveOptions(text: string, args: string[] = []) {
  const file = join(dir, 'server.conf')
  await writeFile(file, text)
  const program = buildProgram()
  const serve = program.commands.find((command) => command.name() === 'serve') as Command
  let seen: Record<string, unknown> | undefined
  serve.action((options: Record<string, unknown>, command: Command) => {
    seen = { ...options, logLevel: command.optsWithGlobals().logLevel }
  })
  await program.parseAsync(['serve', '--config', file, ...args], { from: 'user' })
  return { options: seen as Record<string, unknown>, file }
}

/** The error `promise` rejects with, as an ImageSwarmError. */
async function failure(promise: Promise<unknown>) {
  const err = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  )
  if (!isImageSwarmError(err)) throw new Error(`expected an ImageSwarmError, got ${String(err)}`)
  return err
}

describe('configuration file syntax', () => {
  it('reads key = value lines, skipping comments and blank lines, keeping line numbers', () => {
    expect(
      parseConfigText(
        '# a comment\n\nimage = compute, login\n  upload-limit=100M  \nboot-append = "a=1 # b"\r\n',
        'server.conf',
      ),
    ).toEqual([
      { key: 'image', value: 'compute, login', line: 3 },
      { key: 'upload-limit', value: '100M', line: 4 },
      { key: 'boot-append', value: 'a=1 # b', line: 5 },
    ])
  })

  it('refuses a line that is not key = value, naming the file and line', () => {
    let err: unknown
    try {
      parseConfigText('image = a\n--port 80\n', '/etc/imageswarm/server.conf')
    } catch (caught) {
      err = caught
    }
    expect(isImageSwarmError(err) && err.code).toBe('E_CONFIG_INVALID')
    expect((err as Error).message).toBe(
      '/etc/imageswarm/server.conf, line 2: expected "key = value", not "--port 80"',
    )
  })

  it('refuses a quote that is not closed', () => {
    expect(() => parseConfigText('boot-append = "a b\n', 'f')).toThrow(
      /f, line 1: the value "a b opens a quote/,
    )
  })
})

describe('serve --config', () => {
  it('gives each key the value its flag would, through the flag’s own parser', async () => {
    const { options } = await serveOptions(
      [
        'image = compute, login',
        'image = storage',
        'upload-limit = 100M',
        'port = 8080',
        'tracker = no',
        'first-copy = off',
        'update-image = yes',
        'address = 10.0.0.1',
        'log-level = debug',
      ].join('\n'),
    )
    expect(options).toMatchObject({
      image: ['compute', 'login', 'storage'],
      uploadLimit: 100 * 1024 * 1024,
      port: 8080,
      tracker: false,
      firstCopy: false,
      updateImage: true,
      address: '10.0.0.1',
      logLevel: 'debug',
    })
  })

  it('lets the command line win over the file, and the file over the defaults', async () => {
    const { options } = await serveOptions('image = a\nport = 8080\naddress = 10.0.0.1\n', [
      '--port',
      '9000',
      '--image',
      'b',
    ])
    expect(options).toMatchObject({ image: ['b'], port: 9000, address: '10.0.0.1' })
    expect(options.torrentPort).toBe(6881)
  })

  it('lets the environment win over the file', async () => {
    process.env.IMAGESWARM_PORT = '7000'
    const { options } = await serveOptions('image = a\nport = 8080\n')
    expect(options.port).toBe(7000)
  })

  it('refuses an unknown key, naming the file, line and key', async () => {
    const err = await failure(serveOptions('image = a\nupload-limt = 5M\n'))
    expect(err.code).toBe('E_CONFIG_INVALID')
    expect(err.message).toMatch(/server\.conf, line 2: unknown key "upload-limt"$/)
    expect(err.hint).toMatch(/long flags of imageswarm serve/)
  })

  it('names the setting of a --no- flag when the file spells it as the flag', async () => {
    const err = await failure(serveOptions('image = a\nno-tracker = yes\n'))
    expect(err.message).toMatch(/line 2: unknown key "no-tracker"/)
    expect(err.hint).toBe('write tracker = no')
  })

  it('refuses a bad value with the flag’s own message, the file, line and key', async () => {
    const err = await failure(serveOptions('image = a\n\nport = 70000\n'))
    expect(err.code).toBe('E_CONFIG_INVALID')
    expect(err.message).toMatch(
      /server\.conf, line 3: port: --port takes a whole number from 0 to 65535, not "70000"$/,
    )
    const rate = await failure(serveOptions('image = a\nupload-limit = fast\n'))
    expect(rate.message).toMatch(/line 2: upload-limit: --upload-limit takes a rate like 50M/)
    const flag = await failure(serveOptions('image = a\ntracker = maybe\n'))
    expect(flag.message).toMatch(/line 2: tracker: takes yes or no/)
    const choice = await failure(serveOptions('image = a\nlog-level = loud\n'))
    expect(choice.message).toMatch(/line 2: log-level: takes trace, debug/)
  })

  it('refuses a setting given twice, except lists', async () => {
    const err = await failure(serveOptions('image = a\nport = 1\nport = 2\n'))
    expect(err.message).toMatch(/line 3: "port" is set again \(first on line 2\)/)
  })

  it('requires an image, or a primary to mirror, from the command line or the file', async () => {
    const { options } = await serveOptions('port = 8080\n')
    const err = await failure(Promise.resolve().then(() => imagesToServe(options)))
    expect(err.code).toBe('E_USAGE')
    expect(err.message).toBe('serve needs --image NAME (or --mirror-of URL)')
    const mirror = await serveOptions('mirror-of = http://10.0.0.1:6969\nmirror-interval = 30s\n')
    expect(mirror.options).toMatchObject({ mirrorOf: 'http://10.0.0.1:6969', mirrorInterval: 30 })
    expect(imagesToServe(mirror.options)).toEqual([])
  })

  it('refuses a file it cannot read, by name', async () => {
    const program = buildProgram()
    const err = await failure(
      program.parseAsync(['serve', '--config', join(dir, 'missing.conf')], { from: 'user' }),
    )
    expect(err.code).toBe('E_CONFIG_INVALID')
    expect(err.message).toMatch(/cannot read the configuration file .*missing\.conf \(ENOENT\)/)
  })

  it('reads the server.conf the Debian package installs', async () => {
    const shipped = await readFile(
      new URL('../../../scripts/package/server.conf', import.meta.url),
      'utf8',
    )
    const { options } = await serveOptions(shipped, ['--image', 'compute'])
    expect(options).toMatchObject({ image: ['compute'], logLevel: 'info', port: 6969 })
  })
})
