import { describe, expect, it } from 'vitest'
import { EntryGuard, isPlainPath, type MemberHeader, UnsafeEntry } from '../src/archive/policy.js'

function check(members: MemberHeader[]): string | undefined {
  const guard = new EntryGuard()
  try {
    for (const member of members) guard.check({ size: 0, ...member })
  } catch (err) {
    if (err instanceof UnsafeEntry) return err.message
    throw err
  }
  return undefined
}

describe('EntryGuard', () => {
  it('accepts what an OS image holds: absolute symlink targets, hardlinks, ./ names', () => {
    expect(
      check([
        { name: './', type: 'directory' },
        { name: './etc/', type: 'directory' },
        { name: './etc/localtime', type: 'symlink', linkname: '/usr/share/zoneinfo/UTC' },
        { name: './etc/rc', type: 'symlink', linkname: '../init.d' },
        { name: './bin/busybox', type: 'file', size: 10 },
        { name: 'bin/ls', type: 'link', linkname: './bin/busybox' },
        { name: './bin//./sh', type: 'link', linkname: 'bin/busybox' },
        { name: './etc/localtime-link', type: 'link', linkname: './etc/localtime' },
      ]),
    ).toBeUndefined()
  })

  it('keeps treating a name as a symlink when a directory entry follows it', () => {
    // GNU tar keeps an existing symlink to a directory when a directory member of the same
    // name follows, so the later file would still land where the symlink points.
    expect(
      check([
        { name: './d', type: 'symlink', linkname: '/etc' },
        { name: './d/', type: 'directory' },
        { name: './d/cron', type: 'file' },
      ]),
    ).toMatch(/'\.\/d\/cron' has its path through the symlink '\.\/d'/)
  })

  it('refuses a root entry that is not a directory', () => {
    expect(check([{ name: './', type: 'symlink', linkname: '/' }])).toMatch(/target root itself/)
  })

  it('refuses a hardlink whose target passes through a symlink', () => {
    expect(
      check([
        { name: './s', type: 'symlink', linkname: '/etc' },
        { name: './h', type: 'link', linkname: './s/shadow' },
      ]),
    ).toMatch(/hardlink target '.\/s\/shadow' through the symlink/)
  })

  it('refuses a hardlink to a directory entry', () => {
    expect(
      check([
        { name: './d/', type: 'directory' },
        { name: './h', type: 'link', linkname: './d' },
      ]),
    ).toMatch(/not an earlier member/)
  })
})

describe('isPlainPath (the fast path of name normalization)', () => {
  it('accepts exactly the names that split-and-join leaves unchanged but for one end', () => {
    const names = ['a', 'a/', 'a/b', 'a/b/', 'a//b', 'a//', '/a', '.', '..', './', 'a/.', 'a/..']
    names.push('a/./b', 'a/../b', '../a', './a', '.a', 'a.', 'a/.b', 'a/..b', '...', 'a/b/.', '')
    names.push('a/b//', 'a/b/..', '.../a', 'a/...', 'x/.hidden/', '//')
    for (const name of names) {
      const parts = name.split('/').filter((part) => part !== '' && part !== '.')
      const plain =
        !name.startsWith('/') &&
        !parts.includes('..') &&
        parts.join('/') === name.replace(/\/$/, '')
      expect(isPlainPath(name), name).toBe(plain && name !== '' && name !== '/')
    }
  })
})
