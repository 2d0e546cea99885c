import { configuredFormat, resolveSeederConfig } from '@imageswarm/seeder'
import { describe, expect, it } from 'vitest'
import { formatFlag } from '../src/options.js'

describe('--format', () => {
  /** The flag as commander folds repeated values: each one with what came before. */
  const fold = (...values: string[]) =>
    values.reduce<ReturnType<typeof formatFlag> | undefined>(
      (previous, value) => formatFlag(value, previous),
      undefined,
    )

  it('sets every image, or one image by name, and the two combine', () => {
    expect(fold('squashfs')).toBe('squashfs')
    expect(fold('hpc=squashfs')).toEqual({ hpc: 'squashfs' })
    expect(fold('hpc=squashfs', 'tar')).toEqual({ hpc: 'squashfs', '*': 'tar' })
    expect(fold('squashfs', 'login=tar')).toEqual({ '*': 'squashfs', login: 'tar' })
  })

  it('reaches the seeder as one format per image', () => {
    const config = resolveSeederConfig({ format: fold('hpc=squashfs', 'tar') })
    expect(configuredFormat(config, 'hpc')).toBe('squashfs')
    expect(configuredFormat(config, 'login')).toBe('tar')
    // Unset for an image: as it was last published.
    const some = resolveSeederConfig({ format: fold('hpc=squashfs') })
    expect(configuredFormat(some, 'login')).toBeUndefined()
  })

  it('refuses a format or an image name that is not one', () => {
    expect(() => formatFlag('erofs')).toThrow(/--format takes tar or squashfs/)
    expect(() => formatFlag('hpc=cpio')).toThrow(/not "hpc=cpio"/)
    expect(() => formatFlag('../x=squashfs')).toThrow(/image name/)
  })
})
