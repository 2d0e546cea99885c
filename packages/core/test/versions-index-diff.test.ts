import { describe, expect, it } from 'vitest'
import {
  DEFAULT_UPDATE_EXCLUDES,
  diffFileIndexes,
  type FileIndexEntry,
  parseUpdateExcludes,
  UpdateExcludes,
  withHardlinkGroups,
} from '../src/index.js'

const file = (path: string, sha: string, extra: Partial<FileIndexEntry> = {}): FileIndexEntry => ({
  path,
  type: 'file',
  mode: 0o644,
  uid: 0,
  gid: 0,
  size: 100,
  mtime: 1_700_000_000,
  sha256: sha.repeat(64).slice(0, 64),
  ...extra,
})
const dir = (path: string, mtime = 1_700_000_000): FileIndexEntry => ({
  path,
  type: 'directory',
  mode: 0o755,
  uid: 0,
  gid: 0,
  size: 0,
  mtime,
})

describe('diffFileIndexes: what a delta holds', () => {
  it('ships changed and new entries with their metadata, lists removals, and references old contents', () => {
    const older = [
      dir('.'),
      dir('etc'),
      file('etc/motd', 'a'),
      file('etc/gone', 'b'),
      file('etc/same', 'c'),
    ]
    const newer = [
      dir('.'),
      dir('etc', 1_700_000_100),
      file('etc/motd', 'd'),
      file('etc/same', 'c'),
      file('etc/new', 'e'),
      file('etc/mode-only', 'f'),
    ]
    const diff = diffFileIndexes(older, newer)
    expect(diff.members).toEqual(['etc', 'etc/motd', 'etc/new', 'etc/mode-only'])
    expect(diff.removals).toEqual(['etc/gone'])
    // The old motd is the reference for the new one; nothing old for the new files.
    expect(diff.reference).toEqual([{ path: 'etc/motd', size: 100, sha256: 'a'.repeat(64) }])
  })

  it('finds a moved file by its name, as a kernel’s modules moving to a new directory', () => {
    const older = [file('lib/modules/6.1.0-1/kernel/ext4.ko', 'a', { size: 5000 })]
    const newer = [file('lib/modules/6.1.0-2/kernel/ext4.ko', 'b', { size: 5100 })]
    const diff = diffFileIndexes(older, newer)
    expect(diff.reference.map((ref) => ref.path)).toEqual(['lib/modules/6.1.0-1/kernel/ext4.ko'])
    expect(diff.removals).toEqual(['lib/modules/6.1.0-1/kernel/ext4.ko'])
  })

  it('ships a hardlink group whole when one of its names changes', () => {
    const leader = file('bin/busybox', 'a')
    const link = (path: string): FileIndexEntry =>
      ({
        ...file(path, 'a'),
        type: 'link',
        size: 0,
        sha256: undefined,
        hardlinkTo: 'bin/busybox',
      }) as FileIndexEntry
    const older = [leader, link('bin/ls')]
    const newer = [leader, link('bin/ls'), link('bin/cat')]
    expect(diffFileIndexes(older, newer).members).toEqual(['bin/busybox', 'bin/ls', 'bin/cat'])
    expect(withHardlinkGroups(newer, new Set(['bin/ls']))).toEqual([
      'bin/busybox',
      'bin/ls',
      'bin/cat',
    ])
  })

  it('is empty between a version and itself', () => {
    const entries = [dir('.'), file('a', 'a')]
    expect(diffFileIndexes(entries, entries)).toEqual({ members: [], removals: [], reference: [] })
  })
})

describe('UpdateExcludes: SystemImager’s patterns over index paths', () => {
  const excludes = new UpdateExcludes(DEFAULT_UPDATE_EXCLUDES)
  it('keeps a directory but not its contents for dir/*', () => {
    expect(excludes.excludes('var/log')).toBe(false)
    expect(excludes.excludes('var/log/syslog')).toBe(true)
    expect(excludes.excludes('var/log/apt/history.log')).toBe(true)
  })
  it('anchors a leading slash at the root and matches other patterns at any depth', () => {
    expect(excludes.excludes('etc/fstab')).toBe(true)
    expect(excludes.excludes('srv/etc/fstab')).toBe(false)
    expect(excludes.excludes('srv/data/.journal')).toBe(true)
    expect(excludes.excludes('etc/ssh/ssh_host_ed25519_key')).toBe(true)
    expect(excludes.excludes('etc/ssh/sshd_config')).toBe(false)
    expect(excludes.excludes('.')).toBe(false)
  })
  it('reads an exclude file’s lines, comments and blanks aside', () => {
    expect(parseUpdateExcludes('# mine\n/opt/scratch/*\n\n  /etc/motd  \n')).toEqual([
      '/opt/scratch/*',
      '/etc/motd',
    ])
    expect(excludes.with(['/etc/motd']).excludes('etc/motd')).toBe(true)
  })
})
