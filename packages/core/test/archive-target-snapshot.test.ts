import {
  chmod,
  chown,
  lstat,
  mkdir,
  readdir,
  readFile,
  rm,
  stat,
  symlink,
  utimes,
  writeFile,
} from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import {
  IGNORED_TARGET_ENTRIES,
  INCOMPLETE_MARKER,
  restoreTarget,
  snapshotEmptyTarget,
} from '../src/archive/target-snapshot.js'
import { makeSandbox } from './helpers/temp-dir.js'

const KIB = 1024
const isRoot = process.getuid?.() === 0

/** A target holding the client's marker (0640) and a fresh, empty lost+found (0700). */
async function preparedTarget(): Promise<string> {
  const { target } = await makeSandbox()
  await writeFile(join(target, INCOMPLETE_MARKER), 'installing\n')
  await chmod(join(target, INCOMPLETE_MARKER), 0o640)
  await mkdir(join(target, 'lost+found'))
  await chmod(join(target, 'lost+found'), 0o700)
  return target
}

describe('snapshotEmptyTarget', () => {
  it('takes a target with nothing in it as empty, recording the root', async () => {
    const { target } = await makeSandbox()
    await chmod(target, 0o751)
    const snapshot = await snapshotEmptyTarget(target, IGNORED_TARGET_ENTRIES)
    const st = await stat(target)
    expect(snapshot).toEqual({
      kept: [],
      mode: st.mode,
      uid: st.uid,
      gid: st.gid,
      atimeMs: st.atimeMs,
      mtimeMs: st.mtimeMs,
    })
  })

  it('keeps the marker (content and mode) and an empty lost+found', async () => {
    const target = await preparedTarget()
    const snapshot = await snapshotEmptyTarget(target, IGNORED_TARGET_ENTRIES)
    const kept = [...(snapshot?.kept ?? [])].sort((a, b) => a.name.localeCompare(b.name))
    expect(kept.map(({ name, content, mode }) => ({ name, content, mode: mode & 0o7777 }))).toEqual(
      [
        { name: INCOMPLETE_MARKER, content: Buffer.from('installing\n'), mode: 0o640 },
        { name: 'lost+found', content: undefined, mode: 0o700 },
      ],
    )
  })

  it('keeps an ignored file of up to 64 KiB, not one byte more', async () => {
    const { target } = await makeSandbox()
    await writeFile(join(target, INCOMPLETE_MARKER), Buffer.alloc(64 * KIB))
    expect(await snapshotEmptyTarget(target, IGNORED_TARGET_ENTRIES)).toBeDefined()
    await writeFile(join(target, INCOMPLETE_MARKER), Buffer.alloc(64 * KIB + 1))
    expect(await snapshotEmptyTarget(target, IGNORED_TARGET_ENTRIES)).toBeUndefined()
  })

  it('refuses a target with any other entry, a non-empty or non-directory ignored entry', async () => {
    const other = await makeSandbox()
    await writeFile(join(other.target, 'etc'), '')
    expect(await snapshotEmptyTarget(other.target, IGNORED_TARGET_ENTRIES)).toBeUndefined()

    const full = await makeSandbox()
    await mkdir(join(full.target, 'lost+found'))
    await writeFile(join(full.target, 'lost+found', '#123'), 'x')
    expect(await snapshotEmptyTarget(full.target, IGNORED_TARGET_ENTRIES)).toBeUndefined()

    // A symlink under an ignored name could not be put back as it was: not kept.
    const link = await makeSandbox()
    await symlink(link.canary, join(link.target, 'lost+found'))
    expect(await snapshotEmptyTarget(link.target, IGNORED_TARGET_ENTRIES)).toBeUndefined()
  })

  it('ignores only the names it is given', async () => {
    const target = await preparedTarget()
    expect(await snapshotEmptyTarget(target, [])).toBeUndefined()
    expect(await snapshotEmptyTarget(target, ['lost+found'])).toBeUndefined()
  })
})

describe('restoreTarget', () => {
  it('removes what was added and puts the kept entries and the root back', async () => {
    const target = await preparedTarget()
    await utimes(target, 1_000_000, 1_000_000)
    const before = await stat(target)
    const snapshot = await snapshotEmptyTarget(target, IGNORED_TARGET_ENTRIES)
    if (snapshot === undefined) throw new Error('expected the target to count as empty')

    // What a refused extraction may leave: new members, a replaced marker, a filled
    // lost+found, and the root's own mode and times changed by `./`.
    await mkdir(join(target, 'etc/ssh'), { recursive: true })
    await writeFile(join(target, 'etc/ssh/sshd_config'), 'x')
    await symlink('usr/bin', join(target, 'bin'))
    await writeFile(join(target, INCOMPLETE_MARKER), 'replaced')
    await chmod(join(target, INCOMPLETE_MARKER), 0o600)
    await writeFile(join(target, 'lost+found', 'found'), 'x')
    await mkdir(join(target, 'lost+found', 'dir'))
    await chmod(join(target, 'lost+found'), 0o755)
    await chmod(target, 0o555)

    // The two entries at the top and the two inside lost+found.
    expect(await restoreTarget(target, snapshot)).toBe(4)
    expect((await readdir(target)).sort()).toEqual([INCOMPLETE_MARKER, 'lost+found'])
    expect(await readFile(join(target, INCOMPLETE_MARKER), 'utf8')).toBe('installing\n')
    expect((await stat(join(target, INCOMPLETE_MARKER))).mode & 0o7777).toBe(0o640)
    expect(await readdir(join(target, 'lost+found'))).toEqual([])
    expect((await stat(join(target, 'lost+found'))).mode & 0o7777).toBe(0o700)
    const after = await stat(target)
    expect(after.mode).toBe(before.mode)
    expect(after.mtimeMs).toBe(before.mtimeMs)
  })

  it('recreates kept entries that were removed or replaced by another type', async () => {
    const target = await preparedTarget()
    const snapshot = await snapshotEmptyTarget(target, IGNORED_TARGET_ENTRIES)
    if (snapshot === undefined) throw new Error('expected the target to count as empty')
    await rm(join(target, INCOMPLETE_MARKER))
    await rm(join(target, 'lost+found'), { recursive: true })
    await writeFile(join(target, 'lost+found'), 'a file now')

    await restoreTarget(target, snapshot)
    expect(await readFile(join(target, INCOMPLETE_MARKER), 'utf8')).toBe('installing\n')
    expect((await stat(join(target, INCOMPLETE_MARKER))).mode & 0o7777).toBe(0o640)
    expect((await lstat(join(target, 'lost+found'))).isDirectory()).toBe(true)
    expect((await stat(join(target, 'lost+found'))).mode & 0o7777).toBe(0o700)
  })

  it.skipIf(!isRoot)('puts back the owners of the kept entries and of the root', async () => {
    const target = await preparedTarget()
    await chown(join(target, INCOMPLETE_MARKER), 1234, 5678)
    await chown(target, 4321, 8765)
    const snapshot = await snapshotEmptyTarget(target, IGNORED_TARGET_ENTRIES)
    if (snapshot === undefined) throw new Error('expected the target to count as empty')
    await chown(join(target, INCOMPLETE_MARKER), 0, 0)
    await chown(target, 0, 0)

    await restoreTarget(target, snapshot)
    const marker = await stat(join(target, INCOMPLETE_MARKER))
    expect([marker.uid, marker.gid]).toEqual([1234, 5678])
    const root = await stat(target)
    expect([root.uid, root.gid]).toEqual([4321, 8765])
  })
})
