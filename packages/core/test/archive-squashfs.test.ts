import { execFile } from 'node:child_process'
import { mkdir, readdir, readFile, stat, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import {
  detectFormat,
  extractArchive,
  HoleFinder,
  type ImageSwarmError,
  packSquashfs,
  SquashfsAdmission,
  validateArchive,
} from '../src/index.js'
import { compareTrees } from '../src/testing/compare-trees.js'
import { buildFidelityTree, FIDELITY_COMMANDS, SPARSE_SIZE } from '../src/testing/fixture-tree.js'
import { missingRequirements } from '../src/testing/system-tools.js'
import { makeSandbox, makeTempDir } from './helpers/temp-dir.js'

const run = promisify(execFile)
const skipReason = missingRequirements([...FIDELITY_COMMANDS, 'tar2sqfs', 'sqfs2tar', 'mksquashfs'])
if (skipReason) console.warn(`SquashFS tests skipped: ${skipReason}`)

/** The fidelity tree without its POSIX ACLs, which SquashFS cannot hold (refused below). */
async function admissibleTree(root: string): Promise<{ sparse: string }> {
  const built = await buildFidelityTree(root)
  await run('setfacl', ['-b', join(root, 'srv/acl-file'), join(root, 'srv/shared')])
  await run('setfacl', ['-k', join(root, 'srv'), join(root, 'srv/shared')])
  // setfacl touched the ctime only; the mtimes buildFidelityTree set are unchanged.
  return built
}

async function errorOf(promise: Promise<unknown>): Promise<ImageSwarmError> {
  try {
    await promise
  } catch (err) {
    return err as ImageSwarmError
  }
  throw new Error('expected a rejection')
}

describe.skipIf(Boolean(skipReason))('SquashFS images', { timeout: 60_000 }, () => {
  it('packs every kind of metadata SquashFS holds and extracts it exactly', async () => {
    const dir = await makeTempDir()
    const root = join(dir, 'root')
    const { sparse } = await admissibleTree(root)
    const output = join(dir, 'image.sqfs')
    const packed = await packSquashfs({ root, output, compression: 'zstd', pieceLength: 1 << 16 })
    expect(await detectFormat(output)).toBe('squashfs')
    expect(packed.size).toBe((await stat(output)).size)
    expect(packed.pieces?.length).toBe(Math.ceil(packed.size / (1 << 16)) * 20)
    // The tree's pre-1970 times: clamped and listed, not refused.
    expect(packed.losses.clampedMtimes).toEqual(['etc/empty', 'srv/readonly'])

    const target = join(dir, 'target')
    await mkdir(target)
    const progress: number[] = []
    const result = await extractArchive({
      archive: output,
      target,
      onProgress: (bytes) => progress.push(bytes),
    })
    expect(result.validation).toBe('before-extracting')
    expect(progress.at(-1)).toBe(packed.size)
    // Zero differences, mtimes taken as SquashFS holds them (whole seconds). The sparse
    // file, written in full by sqfs2tar | tar, was made sparse again.
    expect(await compareTrees(root, target, { mtimes: 'squashfs' })).toEqual([])
    const restored = await stat(join(target, sparse))
    expect(restored.size).toBe(SPARSE_SIZE)
    expect(restored.blocks * 512).toBeLessThan(256 * 1024)
  })

  it('packs the same tree to the same bytes', async () => {
    const dir = await makeTempDir()
    const root = join(dir, 'root')
    await admissibleTree(root)
    const first = await packSquashfs({ root, output: join(dir, 'a.sqfs'), compression: 'zstd' })
    const second = await packSquashfs({ root, output: join(dir, 'b.sqfs'), compression: 'zstd' })
    expect(second.sha256).toBe(first.sha256)
    expect(first.deterministic).toBe(process.getuid?.() === 0)
    expect((await readFile(join(dir, 'a.sqfs'))).equals(await readFile(join(dir, 'b.sqfs')))).toBe(
      true,
    )
  })

  it('refuses a root with POSIX ACLs, naming the first file that has one', async () => {
    const dir = await makeTempDir()
    const root = join(dir, 'root')
    await buildFidelityTree(root)
    const output = join(dir, 'image.sqfs')
    const error = await errorOf(packSquashfs({ root, output, compression: 'zstd' }))
    expect(error.code).toBe('E_FORMAT_UNSUPPORTED')
    // ./srv (a default ACL) comes before ./srv/acl-file in the sorted tree.
    expect(error.message).toContain(`${root}/srv has a POSIX ACL`)
    expect(error.hint).toContain('--format tar')
    // Nothing left behind: no image, no partial file.
    expect((await readdir(dir)).sort()).toEqual(['root'])
  })

  /**
   * A SquashFS image made with uncompressed directory tables (mksquashfs -noI -noD) whose
   * names are then patched byte for byte: what a hostile server could hand out.
   */
  async function hostileImage(dir: string, patch: [string, string]): Promise<string> {
    const tree = join(dir, 'tree')
    await mkdir(join(tree, 'dir'), { recursive: true })
    await writeFile(join(tree, 'dir/zzfile'), 'x\n')
    await writeFile(join(tree, 'qqqq'), 'y\n')
    await symlink(join(dir, 'outside'), join(tree, 'lnk1'))
    await mkdir(join(tree, 'lnk2'))
    await writeFile(join(tree, 'lnk2/passwd'), 'owned\n')
    const plain = join(dir, 'plain.sqfs')
    await run('mksquashfs', [
      tree,
      plain,
      '-noappend',
      '-quiet',
      '-no-progress',
      '-noI',
      '-noD',
      '-noF',
      '-noX',
      '-all-root',
      '-mkfs-time',
      '0',
    ])
    const bytes = await readFile(plain)
    const [from, to] = patch.map((s) => Buffer.from(s, 'latin1')) as [Buffer, Buffer]
    const at = bytes.indexOf(from)
    expect(at).toBeGreaterThan(0)
    expect(bytes.indexOf(from, at + 1)).toBe(-1)
    to.copy(bytes, at)
    const hostile = join(dir, 'hostile.sqfs')
    await writeFile(hostile, bytes)
    return hostile
  }

  for (const [what, patch] of [
    ['a name that climbs out of the root', ['qqqq', '../q']],
    ['a name with a slash in it', ['zzfile', 'zz/fil']],
    ['a directory written through a symlink that leaves the root', ['lnk2', 'lnk1']],
  ] as const) {
    it(`refuses ${what} before anything is written`, async () => {
      const sandbox = await makeSandbox()
      await mkdir(join(sandbox.dir, 'outside'))
      const hostile = await hostileImage(sandbox.dir, [...patch])
      const validation = await errorOf(validateArchive(hostile, undefined, { squashfs: true }))
      expect(validation.code).toBe('E_ARCHIVE_UNSAFE')
      const error = await errorOf(extractArchive({ archive: hostile, target: sandbox.target }))
      expect(error.code).toBe('E_ARCHIVE_UNSAFE')
      expect(await readdir(sandbox.target)).toEqual([])
      expect(await readdir(join(sandbox.dir, 'outside'))).toEqual([])
    })
  }
})

describe('HoleFinder', () => {
  const member = (name: string, size: number, mode = 0o644, pax = {}) =>
    ({ name, type: 'file', size, mode, uid: 0, gid: 0, mtime: 7, offset: 0, end: 0, pax }) as const
  const feed = (finder: HoleFinder, bytes: Buffer, chunk: number) => {
    for (let at = 0; at < bytes.length; at += chunk) finder.data(bytes.subarray(at, at + chunk))
  }

  it('finds the files with a whole, aligned block of zeros, however the data is cut', () => {
    const block = 4096
    const holey = Buffer.alloc(3 * block, 1)
    holey.fill(0, block, 2 * block)
    const unaligned = Buffer.alloc(3 * block, 1)
    unaligned.fill(0, block / 2, block / 2 + block)
    for (const chunk of [100, block, 3 * block]) {
      const finder = new HoleFinder(block)
      finder.member(member('./holey', holey.length))
      feed(finder, holey, chunk)
      finder.member(member('./unaligned', unaligned.length))
      feed(finder, unaligned, chunk)
      // Shorter than a block: SquashFS would store it in a fragment, never as a hole.
      finder.member(member('./small', block - 1))
      feed(finder, Buffer.alloc(block - 1), chunk)
      finder.member(member('./setuid', holey.length, 0o4755))
      feed(finder, holey, chunk)
      expect(finder.files).toEqual([
        { name: './holey', mtime: 7, privileged: false },
        { name: './setuid', mtime: 7, privileged: true },
      ])
    }
  })
})

describe('SquashfsAdmission', () => {
  it('reads tar’s listing: refuses the first ACL, lists the years SquashFS clamps', () => {
    const admission = new SquashfsAdmission('/images/hpc')
    admission.admitIndex(
      [
        'drwxr-xr-x  0/0               0 2022-04-15 05:20 ./',
        '-rw-r--r--* 0/0               6 2023-11-14 22:13 ./etc/hostname',
        '-rw-r--r--  0/0               0 1930-11-18 00:28 ./etc/empty',
        'lrwxrwxrwx  0/0               0 2107-01-01 00:00 ./etc/late -> x -> y',
        'hrw-r--r--  0/0               0 2026-12-04 14:47 ./bin/ls link to ./bin/busybox',
      ].join('\n'),
    )
    expect(admission.losses.clampedMtimes).toEqual(['etc/empty', 'etc/late'])
    expect(() =>
      admission.admitIndex('-rw-rwxr--+ 0/0               4 2026-12-04 14:47 ./srv/acl file\n'),
    ).toThrow(/^\/images\/hpc\/srv\/acl file has a POSIX ACL, which SquashFS cannot store/)
  })

  it('refuses any other system.* xattr from tar2sqfs’s warning, saying how to find it', () => {
    const admission = new SquashfsAdmission('/images/hpc')
    admission.admitPackerWarnings('')
    const error = (() => {
      try {
        admission.admitPackerWarnings(
          'WARNING: squashfs does not support xattr prefix of system.nfs4_acl\n',
        )
      } catch (err) {
        return err as ImageSwarmError
      }
      throw new Error('expected a refusal')
    })()
    expect(error.code).toBe('E_FORMAT_UNSUPPORTED')
    expect(error.message).toContain('has xattr system.nfs4_acl')
    expect(error.hint).toContain("getfattr -R -m '^system\\.' /images/hpc")
  })
})
