import { describe, expect, it } from 'vitest'
import { translateSystemImagerArgs, translateSystemImagerCommand } from '../src/si-compat.js'

describe('SystemImager command names', () => {
  it('maps si_startbttrack to serve', () => {
    expect(
      translateSystemImagerArgs('si_startbttrack', [
        '--image_server',
        '10.0.0.1',
        '--image=compute,login',
        '--update_image',
      ]),
    ).toEqual(['serve', '--address', '10.0.0.1', '--image', 'compute,login', '--update-image'])
  })

  it('maps si_installbtimage to publish: a plain tar unless --compress, then gzip, as SystemImager', () => {
    expect(translateSystemImagerArgs('si_installbtimage', ['--images', 'a,b', '--update'])).toEqual(
      ['publish', '--image', 'a,b', '--update-image', '--compression', 'none'],
    )
    expect(translateSystemImagerArgs('si_installbtimage', ['--images', 'a', '--compress'])).toEqual(
      ['publish', '--image', 'a', '--compression', 'gzip'],
    )
  })

  it('accepts si_installbtimage --overrides with a note: the server hands overrides out itself', () => {
    const { args, notes } = translateSystemImagerCommand('si_installbtimage', [
      '--images',
      'a',
      '--overrides',
      'site,rack1',
    ])
    expect(args).toEqual(['publish', '--image', 'a', '--compression', 'none'])
    expect(notes).toEqual([
      expect.stringMatching(/--overrides site,rack1: .*\/install\/overrides\/NAME.tar/),
    ])
  })

  it('lets --version through to the program, before the command', () => {
    for (const command of [
      'si_startbttrack',
      'si_stopbttrack',
      'si_installbtimage',
      'si_updateclient',
    ] as const) {
      expect(translateSystemImagerArgs(command, ['--version'])[0]).toBe('--version')
    }
    expect(translateSystemImagerArgs('si_installbtimage', ['--vers'])).toEqual([
      '--version',
      'publish',
      '--compression',
      'none',
    ])
  })

  it('accepts options as Getopt::Long does: unique prefixes, one dash, any case, --opt=value, --', () => {
    expect(
      translateSystemImagerArgs('si_installbtimage', ['--ima', 'a', '--comp', '--up']),
    ).toEqual(['publish', '--image', 'a', '--compression', 'gzip', '--update-image'])
    expect(translateSystemImagerArgs('si_installbtimage', ['-images', 'a', '-c', '--'])).toEqual([
      'publish',
      '--image',
      'a',
      '--compression',
      'gzip',
    ])
    expect(translateSystemImagerArgs('si_installbtimage', ['--IMAGES=a', '-Quiet'])).toEqual([
      '--log-level',
      'warn',
      'publish',
      '--image',
      'a',
      '--compression',
      'none',
    ])
    expect(
      translateSystemImagerArgs('si_startbttrack', ['--image_s=10.0.0.1', '--image', 'x']),
    ).toEqual(['serve', '--address', '10.0.0.1', '--image', 'x'])
    expect(translateSystemImagerArgs('si_updateclient', ['--serv', 'h', '--dir', '/r'])).toEqual([
      'update',
      '--server',
      'h',
      '--target',
      '/r',
    ])
  })

  it('refuses an ambiguous prefix, naming what it could mean', () => {
    expect(() => translateSystemImagerArgs('si_startbttrack', ['--ima', 'x'])).toThrow(
      /"--ima" is ambiguous: --image_server, --image, --images/,
    )
    expect(() => translateSystemImagerArgs('si_updateclient', ['--no', '--server', 'h'])).toThrow(
      /ambiguous: --no-delete, --no-bootloader/,
    )
  })

  it('refuses a value on a flag that takes none, and arguments that are not options', () => {
    expect(() => translateSystemImagerArgs('si_installbtimage', ['--compress=yes'])).toThrow(
      /--compress does not take a value/,
    )
    expect(() => translateSystemImagerArgs('si_installbtimage', ['legacy'])).toThrow(
      /unexpected argument "legacy"/,
    )
    expect(() => translateSystemImagerArgs('si_installbtimage', ['--', 'legacy'])).toThrow(
      /unexpected argument "legacy"/,
    )
  })

  it('maps si_stopbttrack to stop and verbosity flags to the global log level', () => {
    expect(translateSystemImagerArgs('si_stopbttrack', [])).toEqual(['stop'])
    expect(translateSystemImagerArgs('si_startbttrack', ['--verbose', '--image', 'x'])).toEqual([
      '--log-level',
      'debug',
      'serve',
      '--image',
      'x',
    ])
  })

  it('maps si_updateclient to update, refusing what only SystemImager did', () => {
    expect(
      translateSystemImagerArgs('si_updateclient', [
        '--server',
        '10.0.0.1',
        '--image',
        'compute',
        '--directory',
        '/mnt/root',
        '--dry-run',
        '--no-delete',
        '--yes',
        '--no-bootloader',
      ]),
    ).toEqual([
      'update',
      '--server',
      '10.0.0.1',
      '--image',
      'compute',
      '--target',
      '/mnt/root',
      '--dry-run',
      '--no-delete',
    ])
    expect(() =>
      translateSystemImagerArgs('si_updateclient', ['--server', 'x', '--autoinstall']),
    ).toThrow(/not supported/)
    expect(() =>
      translateSystemImagerArgs('si_updateclient', ['--server', 'x', '--override', 'o']),
    ).toThrow(/not supported/)
  })

  it('refuses unknown flags and flags missing their value', () => {
    expect(() => translateSystemImagerArgs('si_startbttrack', ['--bogus'])).toThrow(
      /unknown option/,
    )
    expect(() => translateSystemImagerArgs('si_startbttrack', ['--image'])).toThrow(/needs a value/)
  })
})
