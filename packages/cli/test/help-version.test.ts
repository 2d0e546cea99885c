import { readFile } from 'node:fs/promises'
import { isImageSwarmError } from '@imageswarm/core'
import type { Command } from 'commander'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { runSystemImagerCommand } from '../src/entry.js'
import { expandHelpCommand } from '../src/help-command.js'
import { installMain } from '../src/install-main.js'
import { buildProgram, main } from '../src/main.js'
import { renderManPages } from '../src/man-page.js'
import { version } from '../src/version.js'

const PACKAGE = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as {
  version: string
}

afterEach(() => {
  vi.restoreAllMocks()
})

/** Runs `run` and returns its exit code and what it wrote to stdout. */
async function capture(run: () => Promise<number>) {
  let out = ''
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out += String(chunk)
    return true
  })
  const code = await run()
  vi.restoreAllMocks()
  return { code, out }
}

/** Every command of the program, with its path (`['key', 'generate']`). */
function commandsOf(command: Command, path: string[] = []): [string[], Command][] {
  return command.commands
    .filter((sub) => sub.name() !== 'help')
    .flatMap((sub): [string[], Command][] => [
      [[...path, sub.name()], sub],
      ...commandsOf(sub, [...path, sub.name()]),
    ])
}

describe('--version', () => {
  it('reads the version from the cli package', () => {
    expect(version()).toBe(PACKAGE.version)
  })

  it('prints imageswarm VERSION on imageswarm, imageswarm-install and every si_* name', async () => {
    const expected = { code: 0, out: `imageswarm ${PACKAGE.version}\n` }
    expect(await capture(() => main(['--version']))).toEqual(expected)
    expect(await capture(() => main(['-V']))).toEqual(expected)
    expect(await capture(() => installMain(['--version']))).toEqual(expected)
    for (const command of [
      'si_startbttrack',
      'si_stopbttrack',
      'si_installbtimage',
      'si_updateclient',
    ] as const) {
      expect(await capture(() => runSystemImagerCommand(command, ['--version']))).toEqual(expected)
    }
  })
})

describe('imageswarm help COMMAND', () => {
  it('shows the same help as COMMAND --help, nested commands too', async () => {
    for (const path of [['serve'], ['key'], ['key', 'generate']]) {
      const viaHelp = await capture(() => main(['help', ...path]))
      const viaFlag = await capture(() => main([...path, '--help']))
      expect(viaHelp.code).toBe(0)
      expect(viaHelp.out).toBe(viaFlag.out)
      expect(viaHelp.out).toContain(`Usage: imageswarm ${path.join(' ')} `)
    }
  })

  it('refuses a command that does not exist, listing those that do', () => {
    let err: unknown
    try {
      expandHelpCommand(buildProgram(), ['help', 'key', 'genrate'])
    } catch (caught) {
      err = caught
    }
    expect(isImageSwarmError(err) && err.code).toBe('E_USAGE')
    expect((err as Error).message).toBe('imageswarm key has no command "genrate"')
  })

  it('leaves other arguments alone', () => {
    expect(expandHelpCommand(buildProgram(), ['help'])).toEqual(['help'])
    expect(expandHelpCommand(buildProgram(), ['serve', 'help'])).toEqual(['serve', 'help'])
  })
})

describe('manual pages', () => {
  const pages = renderManPages(buildProgram(), { version: '1.2.3', date: '2026-01-02' })

  it('has a page for the program and every command, from the program --help describes', () => {
    const program = buildProgram()
    expect(pages.get('imageswarm.1')).toMatch(
      /^\.TH IMAGESWARM 1 "2026-01-02" "imageswarm 1\.2\.3" "imageswarm manual"\n/,
    )
    for (const [path, command] of commandsOf(program)) {
      const page = pages.get(`imageswarm-${path.join('-')}.1`)
      expect(page, path.join(' ')).toBeDefined()
      for (const option of command.options) {
        const long = (option.long ?? '').replace(/-/g, '\\-')
        expect(page, `${path.join(' ')} ${option.long}`).toContain(long)
      }
    }
  })

  it('documents serve --config and the file the service reads', () => {
    const serve = pages.get('imageswarm-serve.1') ?? ''
    expect(serve).toContain('.B \\-\\-config <file>')
    expect(serve).toContain('.I /etc/imageswarm/server.conf')
  })

  it('makes each SystemImager name an alias of the page of the command it runs', () => {
    expect(pages.get('si_startbttrack.1')).toBe('.so man1/imageswarm-serve.1\n')
    expect(pages.get('si_stopbttrack.1')).toBe('.so man1/imageswarm-stop.1\n')
    expect(pages.get('si_installbtimage.1')).toBe('.so man1/imageswarm-publish.1\n')
    expect(pages.get('si_updateclient.1')).toBe('.so man1/imageswarm-update.1\n')
    expect(pages.get('imageswarm-installer.1')).toContain('.B \\-V, \\-\\-version')
  })

  it('gives the same bytes for the same program and version', () => {
    const again = renderManPages(buildProgram(), { version: '1.2.3', date: '2026-01-02' })
    expect([...again]).toEqual([...pages])
    expect([...pages.keys()]).toEqual([...pages.keys()].sort())
  })

  it('keeps roff from reading text as requests', () => {
    for (const [name, page] of pages) {
      for (const line of page.split('\n')) {
        // Every line is a request we wrote (.TH, .SH, .TP, .B, .I, .PP, .so) or text.
        if (line.startsWith('.')) expect(line, name).toMatch(/^\.(TH|SH|TP|B|I|PP|so)( |$)/)
      }
    }
  })
})
