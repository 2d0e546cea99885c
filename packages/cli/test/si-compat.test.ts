import { describe, expect, it } from 'vitest'
import { translateSystemImagerArgs } from '../src/si-compat.js'

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

  it('maps si_installbtimage to publish, uncompressed unless --compress', () => {
    expect(translateSystemImagerArgs('si_installbtimage', ['--images', 'a,b', '--update'])).toEqual(
      ['publish', '--image', 'a,b', '--update-image', '--compression', 'none'],
    )
    expect(translateSystemImagerArgs('si_installbtimage', ['--images', 'a', '--compress'])).toEqual(
      ['publish', '--image', 'a', '--compression', 'zstd'],
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
