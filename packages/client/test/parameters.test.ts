import { describe, expect, it } from 'vitest'
import { ClientConfigSchema, normalizeServerUrl, parseServerList } from '../src/config.js'
import { resolveInstallParameters } from '../src/parameters.js'

const kernel = new Map([
  ['IMAGESERVER', '10.0.0.1'],
  ['IMAGENAME', 'compute'],
  ['BITTORRENT_STAGING', '/tmp/bt'],
  ['imageswarm.target', '/mnt/root'],
])

describe('resolveInstallParameters', () => {
  it('takes SystemImager’s kernel parameters when nothing else is given', () => {
    const { config, sources } = resolveInstallParameters({ flags: {}, env: {}, kernel })
    expect(config.server).toEqual(['http://10.0.0.1:6969'])
    expect(config.image).toBe('compute')
    expect(config.staging).toBe('/tmp/bt')
    expect(config.target).toBe('/mnt/root')
    expect(sources.server).toEqual({ source: 'kernel', name: 'IMAGESERVER' })
    expect(sources.seedTimeSeconds).toEqual({ source: 'default' })
  })

  it('prefers the namespaced kernel parameter over SystemImager’s name', () => {
    const both = new Map([...kernel, ['imageswarm.server', 'http://10.0.0.2:7000']])
    const { config } = resolveInstallParameters({ flags: {}, env: {}, kernel: both })
    expect(config.server).toEqual(['http://10.0.0.2:7000'])
  })

  it('lets the environment win over the kernel and flags win over both', () => {
    const env = { IMAGENAME: 'login', IMAGESWARM_STAGING: '/var/tmp/s' }
    const fromEnv = resolveInstallParameters({ flags: {}, env, kernel })
    expect(fromEnv.config.image).toBe('login')
    expect(fromEnv.config.staging).toBe('/var/tmp/s')
    expect(fromEnv.sources.image).toEqual({ source: 'environment', name: 'IMAGENAME' })

    const fromFlags = resolveInstallParameters({
      flags: { image: 'storage', seedTimeSeconds: 5 },
      env,
      kernel,
    })
    expect(fromFlags.config.image).toBe('storage')
    expect(fromFlags.config.seedTimeSeconds).toBe(5)
    expect(fromFlags.sources.image).toEqual({ source: 'flag', name: '--image' })
  })

  it('names the parameter and its source when a value is malformed', () => {
    const bad = new Map([...kernel, ['imageswarm.seed-time', 'forever']])
    expect(() => resolveInstallParameters({ flags: {}, env: {}, kernel: bad })).toThrow(
      /invalid imageswarm.seed-time \(kernel\): "forever"/,
    )
    const badName = new Map([...kernel, ['IMAGENAME', '../etc']])
    expect(() => resolveInstallParameters({ flags: {}, env: {}, kernel: badName })).toThrow(
      /invalid image name/,
    )
  })

  it('says which parameter is missing and how to give it', () => {
    expect(() =>
      resolveInstallParameters({ flags: {}, env: {}, kernel: new Map([['IMAGENAME', 'x']]) }),
    ).toThrow(/no image server given/)
  })
})

describe('the other imageswarm.* settings', () => {
  it('parses rates, sizes, counts and yes/no values from the kernel command line', () => {
    const more = new Map([
      ...kernel,
      ['imageswarm.upload-limit', '50M'],
      ['imageswarm.max-connections', '120'],
      ['imageswarm.memory-reserve', '1G'],
      ['imageswarm.report', 'no'],
      ['imageswarm.force', ''],
      ['imageswarm.cache', 'LABEL=imgcache'],
    ])
    const { config, sources } = resolveInstallParameters({ flags: {}, env: {}, kernel: more })
    expect(config.swarm.uploadLimit).toBe(50 * 1024 * 1024)
    expect(config.swarm.downloadLimit).toBe(-1)
    expect(config.swarm.maxConnections).toBe(120)
    expect(config.memoryReserve).toBe(1024 ** 3)
    expect(config.report).toBe(false)
    expect(config.force).toBe(true)
    expect(config.cache).toBe('LABEL=imgcache')
    expect(sources['swarm.uploadLimit']).toEqual({
      source: 'kernel',
      name: 'imageswarm.upload-limit',
    })
  })

  it('waits for no unpublished image by default; the image timeout has one name everywhere', () => {
    const none = resolveInstallParameters({ flags: {}, env: {}, kernel })
    expect(none.config.imageTimeoutSeconds).toBe(0)
    expect(none.sources.imageTimeoutSeconds).toEqual({ source: 'default' })
    const fromKernel = resolveInstallParameters({
      flags: {},
      env: {},
      kernel: new Map([...kernel, ['imageswarm.image-timeout', '900']]),
    })
    expect(fromKernel.config.imageTimeoutSeconds).toBe(900)
    const fromEnv = resolveInstallParameters({
      flags: {},
      env: { IMAGESWARM_IMAGE_TIMEOUT: '300' },
      kernel: new Map([...kernel, ['imageswarm.image-timeout', '900']]),
    })
    expect(fromEnv.config.imageTimeoutSeconds).toBe(300)
    expect(fromEnv.sources.imageTimeoutSeconds).toEqual({
      source: 'environment',
      name: 'IMAGESWARM_IMAGE_TIMEOUT',
    })
    const fromFlag = resolveInstallParameters({
      flags: { imageTimeoutSeconds: '60' },
      env: { IMAGESWARM_IMAGE_TIMEOUT: '300' },
      kernel,
    })
    expect(fromFlag.config.imageTimeoutSeconds).toBe(60)
    expect(fromFlag.sources.imageTimeoutSeconds).toEqual({
      source: 'flag',
      name: '--image-timeout',
    })
    expect(() =>
      resolveInstallParameters({ flags: { imageTimeoutSeconds: 'soon' }, env: {}, kernel }),
    ).toThrow(/invalid --image-timeout \(flag\): "soon"/)
  })

  it('names a malformed rate and where it came from', () => {
    expect(() =>
      resolveInstallParameters({ flags: {}, env: { IMAGESWARM_UPLOAD_LIMIT: 'fast' }, kernel }),
    ).toThrow(/invalid IMAGESWARM_UPLOAD_LIMIT \(environment\): "fast"/)
  })

  it('refuses contradictory settings, naming the parameter', () => {
    expect(() =>
      resolveInstallParameters({ flags: { staging: '/mnt/root' }, env: {}, kernel }),
    ).toThrow(/--staging: staging directory \/mnt\/root is the target root/)
    expect(() =>
      resolveInstallParameters({ flags: { cache: '/mnt/root/var/cache' }, env: {}, kernel }),
    ).toThrow(/--cache: cache \/mnt\/root\/var\/cache is inside the target root/)
    expect(() =>
      resolveInstallParameters({ flags: { cache: '/tmp/bt' }, env: {}, kernel }),
    ).toThrow(/cache and staging are the same directory/)
  })
})

describe('the node’s rack', () => {
  it('is unset unless given', () => {
    const { config, sources } = resolveInstallParameters({ flags: {}, env: {}, kernel })
    expect(config.swarm.rack).toBeUndefined()
    expect(sources['swarm.rack']).toEqual({ source: 'default' })
  })

  it('is taken from imageswarm.rack=, IMAGESWARM_RACK or --rack, the flag first', () => {
    const fromKernel = resolveInstallParameters({
      flags: {},
      env: {},
      kernel: new Map([...kernel, ['imageswarm.rack', 'r7']]),
    })
    expect(fromKernel.config.swarm.rack).toBe('r7')
    expect(fromKernel.sources['swarm.rack']).toEqual({ source: 'kernel', name: 'imageswarm.rack' })

    const fromEnv = resolveInstallParameters({
      flags: {},
      env: { IMAGESWARM_RACK: 'row2.r7' },
      kernel: new Map([...kernel, ['imageswarm.rack', 'r7']]),
    })
    expect(fromEnv.config.swarm.rack).toBe('row2.r7')
    expect(fromEnv.sources['swarm.rack']).toEqual({
      source: 'environment',
      name: 'IMAGESWARM_RACK',
    })

    const fromFlag = resolveInstallParameters({
      flags: { 'swarm.rack': 'dc1:r7' },
      env: { IMAGESWARM_RACK: 'row2.r7' },
      kernel: new Map([...kernel, ['imageswarm.rack', 'r7']]),
    })
    expect(fromFlag.config.swarm.rack).toBe('dc1:r7')
    expect(fromFlag.sources['swarm.rack']).toEqual({ source: 'flag', name: '--rack' })
  })

  it('takes a name of up to 64 letters, digits and ._:-', () => {
    const rack = `r${'7'.repeat(63)}`
    const { config } = resolveInstallParameters({ flags: { 'swarm.rack': rack }, env: {}, kernel })
    expect(config.swarm.rack).toBe(rack)
  })

  it('refuses a rack name that is not one, naming the setting and where it came from', () => {
    const bad = ['a b', 'r'.repeat(65), 'r'.repeat(70), '-r7', 'r/7']
    for (const rack of bad) {
      expect(() =>
        resolveInstallParameters({
          flags: {},
          env: {},
          kernel: new Map([...kernel, ['imageswarm.rack', rack]]),
        }),
      ).toThrow(
        expect.objectContaining({
          code: 'E_CONFIG_INVALID',
          path: 'swarm.rack',
          message: `invalid imageswarm.rack (kernel): ${JSON.stringify(rack)}`,
          hint: 'give a rack name: letters, digits and ._:- (up to 64)',
        }),
      )
    }
    expect(() =>
      resolveInstallParameters({ flags: { 'swarm.rack': 'a b' }, env: {}, kernel }),
    ).toThrow('invalid --rack (flag): "a b"')
  })
})

describe('SystemImager 5’s kernel parameters', () => {
  it('names the server and image as si.image-server= and si.image-name=, after imageswarm.* and SystemImager 4’s', () => {
    const si = new Map([
      ['si.image-server', '10.0.0.9'],
      ['si.image-name', 'login'],
    ])
    const { config, sources } = resolveInstallParameters({ flags: {}, env: {}, kernel: si })
    expect(config.server).toEqual(['http://10.0.0.9:6969'])
    expect(config.image).toBe('login')
    expect(sources.image).toEqual({ source: 'kernel', name: 'si.image-name' })
    const both = resolveInstallParameters({
      flags: {},
      env: {},
      kernel: new Map([...si, ...kernel]),
    })
    expect(both.config.server).toEqual(['http://10.0.0.1:6969'])
    expect(both.config.image).toBe('compute')
  })

  it('stages in tmpfs for si.tmpfs-staging=y (or bare), on the target disk for n', () => {
    const base = new Map([
      ['IMAGESERVER', '10.0.0.1'],
      ['IMAGENAME', 'compute'],
    ])
    const staging = (value: string) =>
      resolveInstallParameters({
        flags: {},
        env: {},
        kernel: new Map([...base, ['si.tmpfs-staging', value]]),
      })
    for (const yes of ['y', 'yes', 'Y', '1', '']) expect(staging(yes).config.staging).toBe('tmpfs')
    for (const no of ['n', 'no', '0']) expect(staging(no).config.staging).toBe('target')
    expect(staging('y').sources.staging).toEqual({ source: 'kernel', name: 'si.tmpfs-staging' })
    expect(() => staging('/tmp/tmpfs_staging')).toThrow(
      /invalid si\.tmpfs-staging \(kernel\): "\/tmp\/tmpfs_staging"/,
    )
    // BITTORRENT_STAGING, a directory, wins over it; the keywords are no directories.
    const given = resolveInstallParameters({
      flags: {},
      env: {},
      kernel: new Map([...base, ['BITTORRENT_STAGING', '/tmp/bt'], ['si.tmpfs-staging', 'y']]),
    })
    expect(given.config.staging).toBe('/tmp/bt')
    expect(
      resolveInstallParameters({
        flags: { staging: 'target', cache: '/var/cache/target' },
        env: {},
        kernel: base,
      }).config.staging,
    ).toBe('target')
  })
})

describe('normalizeServerUrl', () => {
  it.each([
    ['10.0.0.1', 'http://10.0.0.1:6969'],
    ['10.0.0.1:8080', 'http://10.0.0.1:8080'],
    ['imageserver', 'http://imageserver:6969'],
    ['http://10.0.0.1:6969/', 'http://10.0.0.1:6969'],
    ['https://images.example', 'https://images.example'],
    ['[fd00::1]', 'http://[fd00::1]:6969'],
  ])('%s → %s', (input, expected) => {
    expect(normalizeServerUrl(input)).toBe(expected)
  })

  it('refuses what is not an HTTP server', () => {
    expect(() => normalizeServerUrl('ftp://x')).toThrow(/invalid server/)
    expect(() => normalizeServerUrl('')).toThrow(/invalid server/)
  })
})

describe('several image servers', () => {
  const name = new Map([['IMAGENAME', 'compute']])

  it('takes a list from the flag, the environment and each kernel name, each server normalized', () => {
    const fromFlag = resolveInstallParameters({
      flags: { server: '10.0.0.1,10.0.0.2:8080' },
      env: {},
      kernel: name,
    })
    expect(fromFlag.config.server).toEqual(['http://10.0.0.1:6969', 'http://10.0.0.2:8080'])
    expect(fromFlag.sources.server).toEqual({ source: 'flag', name: '--server' })
    const fromEnv = resolveInstallParameters({
      flags: {},
      env: { IMAGESERVER: '10.0.0.1, https://mirror.example' },
      kernel: name,
    })
    expect(fromEnv.config.server).toEqual(['http://10.0.0.1:6969', 'https://mirror.example'])
    for (const kernelName of ['imageswarm.server', 'IMAGESERVER', 'si.image-server']) {
      const { config, sources } = resolveInstallParameters({
        flags: {},
        env: {},
        kernel: new Map([...name, [kernelName, 'a,b:7000,http://c:6970/']]),
      })
      expect(config.server).toEqual(['http://a:6969', 'http://b:7000', 'http://c:6970'])
      expect(sources.server).toEqual({ source: 'kernel', name: kernelName })
    }
  })

  it('keeps the order given and drops a server given twice, however it is written', () => {
    expect(parseServerList('10.0.0.2,10.0.0.1,http://10.0.0.2:6969/,10.0.0.1:6969')).toEqual([
      'http://10.0.0.2:6969',
      'http://10.0.0.1:6969',
    ])
    expect(parseServerList(['10.0.0.1', '10.0.0.3,10.0.0.1'])).toEqual([
      'http://10.0.0.1:6969',
      'http://10.0.0.3:6969',
    ])
  })

  it('refuses an empty entry or a bad one, naming it and where it came from', () => {
    const resolve = (value: string) =>
      resolveInstallParameters({
        flags: {},
        env: {},
        kernel: new Map([...name, ['imageswarm.server', value]]),
      })
    for (const value of ['10.0.0.1,', '10.0.0.1,,10.0.0.2', ',10.0.0.1']) {
      expect(() => resolve(value)).toThrow(
        expect.objectContaining({
          code: 'E_CONFIG_INVALID',
          message: `invalid imageswarm.server (kernel): an empty entry in ${JSON.stringify(value)}`,
        }),
      )
    }
    expect(() => resolve('10.0.0.1,ftp://10.0.0.2')).toThrow(
      expect.objectContaining({
        code: 'E_CONFIG_INVALID',
        message: 'invalid imageswarm.server (kernel): "ftp://10.0.0.2"',
      }),
    )
  })

  it('takes one string in the schema as library callers give it, split and normalized alike', () => {
    const parse = (server: string | string[]) =>
      ClientConfigSchema.parse({ server, image: 'node' }).server
    expect(parse('http://127.0.0.1:6969')).toEqual(['http://127.0.0.1:6969'])
    expect(parse('10.0.0.1,10.0.0.2')).toEqual(['http://10.0.0.1:6969', 'http://10.0.0.2:6969'])
    expect(parse(['http://a:1', 'http://a:1/'])).toEqual(['http://a:1'])
    expect(ClientConfigSchema.safeParse({ server: '', image: 'node' }).success).toBe(false)
    expect(ClientConfigSchema.safeParse({ server: [], image: 'node' }).success).toBe(false)
  })
})

describe('the image mode and the overlay', () => {
  const resolve = (extra: [string, string][], flags: Record<string, string> = {}) =>
    resolveInstallParameters({ flags, env: {}, kernel: new Map([...kernel, ...extra]) })

  it('extracts into the target root unless told to mount the image', () => {
    const { config, sources } = resolve([])
    expect(config.imageMode).toBe('extract')
    expect(config.overlay).toBe('tmpfs')
    expect(sources.imageMode).toEqual({ source: 'default' })
  })

  it('takes imageswarm.image-mode= and imageswarm.overlay=, the flags first', () => {
    const fromKernel = resolve([
      ['imageswarm.image-mode', 'RAM'],
      ['imageswarm.overlay', 'LABEL=overlay'],
    ])
    expect(fromKernel.config.imageMode).toBe('ram')
    expect(fromKernel.config.overlay).toBe('LABEL=overlay')
    expect(fromKernel.sources.imageMode).toEqual({
      source: 'kernel',
      name: 'imageswarm.image-mode',
    })
    const fromFlag = resolve([['imageswarm.image-mode', 'ram']], {
      imageMode: 'disk',
      cache: '/dev/sda3',
    })
    expect(fromFlag.config.imageMode).toBe('disk')
    expect(fromFlag.sources.imageMode).toEqual({ source: 'flag', name: '--image-mode' })
  })

  it('refuses what cannot work, naming the setting and where it came from', () => {
    expect(() => resolve([['imageswarm.image-mode', 'roram']])).toThrow(
      /invalid imageswarm.image-mode \(kernel\): "roram"/,
    )
    // disk keeps the image in the cache.
    expect(() => resolve([['imageswarm.image-mode', 'disk']])).toThrow(
      /imageswarm.image-mode: image mode disk keeps the image in the image cache, and no cache is given/,
    )
    // An overlay without a mounted image is a mistake, not something to ignore.
    expect(() => resolve([['imageswarm.overlay', '/dev/sda4']])).toThrow(
      /imageswarm.overlay: an overlay is only for a mounted image/,
    )
    // The layer lives beneath the merged root, not inside it.
    expect(() =>
      resolve([
        ['imageswarm.image-mode', 'ram'],
        ['imageswarm.overlay', '/mnt/root/var/overlay'],
      ]),
    ).toThrow(/is inside the target root/)
  })
})
