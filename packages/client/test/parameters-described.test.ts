import { describe, expect, it } from 'vitest'
import { ClientConfigSchema } from '../src/config.js'
import {
  describeInstallParameters,
  resolveInstallParameters,
  unknownKernelParameters,
} from '../src/parameters.js'

const DEFAULTS = ClientConfigSchema.parse({ server: 'http://defaults', image: 'defaults' })

describe('durations', () => {
  it('takes seconds with or without a unit from every source', () => {
    const { config, sources } = resolveInstallParameters({
      flags: { server: '10.0.0.1', image: 'compute', seedTimeSeconds: '10m' },
      env: { IMAGESWARM_CONNECT_TIMEOUT: '1h' },
      kernel: new Map([
        ['imageswarm.stall-timeout', '90s'],
        ['imageswarm.image-timeout', '600'],
      ]),
    })
    expect(config.seedTimeSeconds).toBe(600)
    expect(config.connectTimeoutSeconds).toBe(3600)
    expect(config.stallTimeoutSeconds).toBe(90)
    expect(config.imageTimeoutSeconds).toBe(600)
    expect(sources.seedTimeSeconds).toEqual({ source: 'flag', name: '--seed-time' })
  })

  it('refuses a unit it does not know, naming the setting and what it takes', () => {
    expect(() =>
      resolveInstallParameters({
        flags: { server: '10.0.0.1', image: 'compute', seedTimeSeconds: '10 minutes' },
        env: {},
        kernel: new Map(),
      }),
    ).toThrow(/invalid --seed-time \(flag\): "10 minutes"/)
  })
})

describe('describeInstallParameters', () => {
  it('shows every setting with its source, and a wrong one where it is', () => {
    const described = describeInstallParameters(
      {
        flags: { server: 'ftp://nowhere', seedTimeSeconds: '5m' },
        env: { IMAGENAME: 'compute' },
        kernel: new Map([['imageswarm.upload-limit', 'fast']]),
      },
      DEFAULTS,
    )
    const byKey = new Map(described.map((entry) => [entry.parameter.key, entry]))
    expect(byKey.get('server')?.problem).toMatch(/invalid --server \(flag\)/)
    expect(byKey.get('image')).toMatchObject({
      value: 'compute',
      source: 'environment',
      name: 'IMAGENAME',
    })
    expect(byKey.get('seedTimeSeconds')).toMatchObject({ value: 300, source: 'flag' })
    expect(byKey.get('swarm.uploadLimit')?.problem).toMatch(
      /invalid imageswarm.upload-limit \(kernel\): "fast"/,
    )
    expect(byKey.get('target')).toMatchObject({ value: '/a', source: 'default' })
    // Every setting is described, none twice.
    expect(new Set(described.map((entry) => entry.parameter.key)).size).toBe(described.length)
  })
})

describe('unknownKernelParameters', () => {
  it('names a misspelt imageswarm.* parameter with the closest known one', () => {
    const kernel = new Map([
      ['imageswarm.seedtime', '30'],
      ['imageswarm.on-failure', 'reboot'],
      ['imageswarm.server', '10.0.0.1'],
      ['imageswarm.colour', 'blue'],
      ['quiet', ''],
      ['IMAGESERVER', '10.0.0.1'],
    ])
    expect(unknownKernelParameters(kernel, ['imageswarm.on-failure'])).toEqual([
      { name: 'imageswarm.seedtime', suggestion: 'imageswarm.seed-time' },
      { name: 'imageswarm.colour' },
    ])
  })
})
