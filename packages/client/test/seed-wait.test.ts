import { describe, expect, it } from 'vitest'
import { resolveInstallParameters } from '../src/parameters.js'
import { UploadFloor } from '../src/upload-floor.js'

const base: [string, string][] = [
  ['IMAGESERVER', '10.0.0.1'],
  ['IMAGENAME', 'compute'],
]
const resolve = (more: [string, string][], env: NodeJS.ProcessEnv = {}) =>
  resolveInstallParameters({ flags: {}, env, kernel: new Map([...base, ...more]) })

describe('SystemImager’s BITTORRENT_SEED_WAIT and BITTORRENT_UPLOAD_MIN', () => {
  it('without them, seeds as imageswarm does: while others download, at most the seed time', () => {
    const { config } = resolve([])
    expect(config.seedTimeSeconds).toBe(600)
    expect(config.seedUploadMin).toBe(0)
  })

  it('BITTORRENT_SEED_WAIT=n leaves the swarm once installed: no seed time', () => {
    const { config, sources } = resolve([['BITTORRENT_SEED_WAIT', 'n']])
    expect(config.seedTimeSeconds).toBe(0)
    expect(sources.seedTimeSeconds).toEqual({ source: 'kernel', name: 'BITTORRENT_SEED_WAIT' })
  })

  it('BITTORRENT_SEED_WAIT=y seeds until the upload falls below 50 KiB/s, SystemImager’s default', () => {
    const { config, sources } = resolve([['BITTORRENT_SEED_WAIT', 'y']])
    expect(config.seedTimeSeconds).toBe(600)
    expect(sources.seedTimeSeconds).toEqual({ source: 'default' })
    expect(config.seedUploadMin).toBe(50 * 1024)
  })

  it('BITTORRENT_UPLOAD_MIN gives the minimum in KiB/s; imageswarm’s own names win over it', () => {
    const wait: [string, string] = ['BITTORRENT_SEED_WAIT', 'y']
    expect(resolve([wait, ['BITTORRENT_UPLOAD_MIN', '200']]).config.seedUploadMin).toBe(200 * 1024)
    expect(
      resolve([wait, ['BITTORRENT_UPLOAD_MIN', '200'], ['imageswarm.seed-upload-min', '1M']]).config
        .seedUploadMin,
    ).toBe(1024 * 1024)
    expect(
      resolve([['BITTORRENT_SEED_WAIT', 'n']], { IMAGESWARM_SEED_TIME: '30' }).config
        .seedTimeSeconds,
    ).toBe(30)
  })

  it('refuses values SystemImager did not take, naming the parameter', () => {
    expect(() => resolve([['BITTORRENT_SEED_WAIT', 'maybe']])).toThrow(
      /invalid BITTORRENT_SEED_WAIT \(kernel\): "maybe"/,
    )
    expect(() => resolve([['BITTORRENT_UPLOAD_MIN', '50K']])).toThrow(
      /invalid BITTORRENT_UPLOAD_MIN \(kernel\): "50K"/,
    )
  })
})

describe('UploadFloor', () => {
  it('says leave once a whole 5 s window uploads less than the minimum', () => {
    const floor = new UploadFloor(50 * 1024)
    expect(floor.observe(0, 0)).toBe(false)
    expect(floor.observe(2_000, 400 * 1024)).toBe(false) // window not over yet
    expect(floor.observe(5_000, 1000 * 1024)).toBe(false) // 200 KiB/s
    expect(floor.observe(10_000, 1100 * 1024)).toBe(true) // 20 KiB/s
  })

  it('never says leave without a minimum, nor when the clock goes back', () => {
    expect(new UploadFloor(0).observe(10_000, 0)).toBe(false)
    const floor = new UploadFloor(1024)
    floor.observe(10_000, 0)
    expect(floor.observe(5_000, 0)).toBe(false)
    expect(floor.observe(9_999, 0)).toBe(false)
  })
})
