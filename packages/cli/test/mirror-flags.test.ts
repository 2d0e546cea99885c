import { isImageSwarmError } from '@imageswarm/core'
import { describe, expect, it } from 'vitest'
import { imagesToServe, seederConfigFrom } from '../src/commands/serve.js'

const dirs = { imagesDir: '/i', tarballsDir: '/t', torrentsDir: '/r', updateImage: false }

function refusal(run: () => unknown): { code: string; path?: string } {
  try {
    run()
  } catch (err) {
    if (isImageSwarmError(err)) return { code: err.code, ...(err.path ? { path: err.path } : {}) }
    throw err
  }
  throw new Error('not refused')
}

describe('serve --mirror-of', () => {
  it('serves its primary images: no --image, and the seeder gets the primary as a URL', () => {
    expect(imagesToServe({ mirrorOf: 'http://10.0.0.1:6969' })).toEqual([])
    const config = seederConfigFrom({
      ...dirs,
      mirrorOf: '10.0.0.1',
      mirrorInterval: 5,
      trustRoot: '/etc/imageswarm/root.pub',
    })
    // A bare address is an image server at the default port, as for a node's --server.
    expect(config.mirrorOf).toBe('http://10.0.0.1:6969')
    expect(config.mirrorInterval).toBe(5)
    expect(config.trustRoot).toBe('/etc/imageswarm/root.pub')
    expect(seederConfigFrom(dirs).mirrorInterval).toBe(10)
  })

  it('refuses --image beside it, neither of them, and --trust-root without it', () => {
    expect(refusal(() => imagesToServe({ mirrorOf: 'http://a:1', image: ['node'] }))).toEqual({
      code: 'E_USAGE',
      path: '--mirror-of',
    })
    expect(refusal(() => imagesToServe({}))).toEqual({ code: 'E_USAGE', path: '--image' })
    expect(refusal(() => imagesToServe({ image: ['node'], trustRoot: '/root.pub' }))).toEqual({
      code: 'E_USAGE',
      path: '--trust-root',
    })
    expect(imagesToServe({ image: ['node'] })).toEqual(['node'])
  })

  it('refuses a primary that is not an http(s) server address', () => {
    expect(refusal(() => seederConfigFrom({ ...dirs, mirrorOf: 'ftp://10.0.0.1' })).code).toBe(
      'E_CONFIG_INVALID',
    )
  })
})
