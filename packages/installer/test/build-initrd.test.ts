import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, posix } from 'node:path'
import { promisify } from 'node:util'
import { writeKeyDirectoryFixture } from '@imageswarm/core/testing'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type BuildInitrdResult, buildInitrd } from '../src/ramdisk/build-initrd.js'
import type { RamdiskContents } from '../src/ramdisk/initrd-manifest.js'
import { RamdiskTree } from '../src/ramdisk/ramdisk-tree.js'
import { sharedLibraries } from '../src/ramdisk/shared-libraries.js'
import { FAKE_RELEASE, type FakeKernel, makeFakeKernel } from './fake-kernel.js'

const execFileAsync = promisify(execFile)
const isRoot = process.getuid?.() === 0

/** Unpacks a zstd cpio archive (without its device node, which needs root) and lists its names. */
async function unpack(initrd: string, into: string): Promise<string[]> {
  await mkdir(into, { recursive: true })
  const { stdout } = await execFileAsync(
    'sh',
    [
      '-c',
      'zstd -dc "$1" | cpio -idm --quiet --no-absolute-filenames -f "dev/console" && zstd -dc "$1" | cpio -it --quiet',
      'unpack',
      initrd,
    ],
    { cwd: into, maxBuffer: 64 << 20 },
  )
  return stdout.trim().split('\n')
}

/** Follows symlinks as the node would see them, with `root` as /; the regular file reached. */
async function resolveInRamdisk(root: string, path: string): Promise<string> {
  let current = path.replace(/^\/+/, '')
  for (let hops = 0; hops < 40; hops++) {
    // Resolve the directories first: /lib is a symlink to usr/lib in the ramdisk.
    const parts = current.split('/')
    let resolved = ''
    for (let i = 0; i < parts.length; i++) {
      const next = resolved === '' ? parts[i]! : `${resolved}/${parts[i]}`
      const info = await lstat(join(root, next))
      if (info.isSymbolicLink()) {
        const target = await readlink(join(root, next))
        const base = target.startsWith('/')
          ? target.slice(1)
          : posix.normalize(posix.join(posix.dirname(next), target))
        current = [base, ...parts.slice(i + 1)].join('/')
        resolved = ''
        break
      }
      resolved = next
    }
    if (resolved !== '' && resolved === current) return resolved
  }
  throw new Error(`too many symlinks at ${path}`)
}

async function sha256(path: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(path))
    .digest('hex')
}

describe('buildInitrd on a fake kernel', () => {
  let kernel: FakeKernel
  let work: string
  let program: string
  let first: BuildInitrdResult
  let names: string[]
  let root: string

  beforeAll(async () => {
    kernel = await makeFakeKernel()
    work = await mkdtemp(join(tmpdir(), 'imageswarm-initrd-test-'))
    program = join(work, 'imageswarm-install.mjs')
    await writeFile(program, "console.log('the install-only client')\n")
    first = await buildInitrd({
      output: join(work, 'out1'),
      program,
      kernel: { vmlinuz: kernel.vmlinuz, modulesDir: kernel.modulesDir },
      workDir: work,
    })
    root = join(work, 'unpacked')
    names = await unpack(first.initrd, root)
  })
  afterAll(async () => {
    await kernel?.remove()
    if (work) await rm(work, { recursive: true, force: true })
  })

  it('writes vmlinuz, initrd.img and the manifest, and nothing half-written beside them', async () => {
    expect((await readdir(join(work, 'out1'))).sort()).toEqual([
      'initrd.img',
      'initrd.manifest.json',
      'vmlinuz',
    ])
    expect(await readFile(first.vmlinuz)).toEqual(await readFile(kernel.vmlinuz))
    const manifest = JSON.parse(await readFile(first.manifestPath, 'utf8'))
    expect(manifest.initrd.sha256).toBe(await sha256(first.initrd))
    expect(manifest.vmlinuz.sha256).toBe(await sha256(first.vmlinuz))
    expect(manifest.contents.kernel).toEqual({ release: FAKE_RELEASE, source: { kind: 'files' } })
  })

  it('carries an executable /init, its library, the DHCP script and the program', async () => {
    expect(((await lstat(join(root, 'init'))).mode & 0o777).toString(8)).toBe('755')
    expect(names).toEqual(
      expect.arrayContaining([
        'usr/lib/imageswarm/imageswarm-lib.sh',
        'usr/lib/imageswarm/udhcpc.script',
        'usr/lib/imageswarm/imageswarm-install.mjs',
      ]),
    )
    expect(await readFile(join(root, 'usr/lib/imageswarm/imageswarm-install.mjs'), 'utf8')).toBe(
      "console.log('the install-only client')\n",
    )
    if (isRoot) expect(names).toContain('dev/console')
  })

  it('carries node and every real tool with each shared library they load', async () => {
    const contents: RamdiskContents = JSON.parse(
      await readFile(join(root, 'etc/imageswarm/ramdisk.json'), 'utf8'),
    )
    expect(contents.node.version).toBe(process.version)
    expect(await resolveInRamdisk(root, '/usr/bin/node')).toBe('usr/bin/node')
    for (const tool of contents.programs) {
      const file = await resolveInRamdisk(root, `/usr/bin/${tool.name}`).catch(() =>
        resolveInRamdisk(root, `/usr/sbin/${tool.name}`),
      )
      expect((await lstat(join(root, file))).isFile(), tool.name).toBe(true)
      for (const library of await sharedLibraries('ldd', tool.source)) {
        const inRamdisk = await resolveInRamdisk(root, library)
        expect((await lstat(join(root, inRamdisk))).isFile(), `${tool.name}: ${library}`).toBe(true)
      }
    }
    for (const library of await sharedLibraries('ldd', process.execPath)) {
      expect(names).toContain(RamdiskTree.ramdiskPath(library))
      await resolveInRamdisk(root, library)
    }
    // mkfs.ext4 stays a link to mke2fs, which reads the name it was started by.
    expect(await readlink(join(root, 'usr/sbin/mkfs.ext4'))).toBe('mke2fs')
    expect(contents.programs.find((tool) => tool.name === 'tar')?.debianPackage).toBe('tar')
  })

  it('links busybox applets only where no real tool is installed', async () => {
    expect(await readlink(join(root, 'usr/bin/sh'))).toBe('/usr/bin/busybox')
    expect(await readlink(join(root, 'usr/sbin/udhcpc'))).toBe('/usr/bin/busybox')
    for (const real of ['usr/bin/mount', 'usr/bin/tar', 'usr/bin/touch', 'usr/sbin/losetup']) {
      expect((await lstat(join(root, real))).isSymbolicLink(), real).toBe(false)
    }
  })

  it('carries the selected modules with their dependencies, indexed for modprobe', async () => {
    const dir = `usr/lib/modules/${FAKE_RELEASE}`
    const modules = names.filter(
      (name) => name.startsWith(`${dir}/kernel/`) && name.endsWith('.ko'),
    )
    expect(modules.map((name) => name.slice(dir.length + 1))).toEqual(
      expect.arrayContaining([
        'kernel/drivers/virtio/virtio_pci.ko',
        'kernel/drivers/virtio/virtio_ring.ko',
        'kernel/fs/xfs/xfs.ko',
        'kernel/lib/libcrc32c.ko',
        'kernel/crypto/crc32c_generic.ko',
      ]),
    )
    expect(modules.join(' ')).not.toMatch(/scsi_debug|btrfs|snd/)
    // A compressed module goes in plain, under the name modprobe then looks for.
    const e1000e = 'kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko'
    expect(await readFile(join(root, dir, e1000e), 'utf8')).toBe(`fake module ${e1000e}\n`)
    // depmod ran on the subset: its index names exactly the modules in the ramdisk.
    const dep = await readFile(join(root, dir, 'modules.dep'), 'utf8')
    const indexed = dep
      .trim()
      .split('\n')
      .map((line) => `${dir}/${line.slice(0, line.indexOf(':'))}`)
    expect(indexed.sort()).toEqual([...modules].sort())
    expect(names).toContain(`${dir}/modules.builtin`)
  })

  it('gives every entry the same time and owner', async () => {
    const { stdout } = await execFileAsync(
      'sh',
      ['-c', 'zstd -dc "$1" | cpio -itv --quiet', 'list', first.initrd],
      {
        maxBuffer: 64 << 20,
      },
    )
    const lines = stdout.trim().split('\n')
    expect(lines.length).toBe(names.length)
    for (const line of lines) expect(line).toMatch(/^\S+\s+\d+ root\s+root\s+.*Jan {2}1 {2}1970 /)
  })

  it('gives the same bytes when built again, whatever the umask', async () => {
    const umask = process.umask(0o077)
    let second: BuildInitrdResult
    try {
      second = await buildInitrd({
        output: join(work, 'out2'),
        program,
        kernel: { vmlinuz: kernel.vmlinuz, modulesDir: kernel.modulesDir },
        workDir: work,
      })
    } finally {
      process.umask(umask)
    }
    expect(second.manifest.initrd.sha256).toBe(first.manifest.initrd.sha256)
    // Buffer.equals: a deep comparison of two 40 MB buffers would take the test's memory.
    expect((await readFile(second.initrd)).equals(await readFile(first.initrd))).toBe(true)
  })

  it('bakes a root key in as the installer’s trust root, with a key list floor', async () => {
    const keys = join(work, 'keys')
    const { root } = await writeKeyDirectoryFixture(keys, { now: new Date() })
    const built = await buildInitrd({
      output: join(work, 'out-trust'),
      program,
      kernel: { vmlinuz: kernel.vmlinuz, modulesDir: kernel.modulesDir },
      workDir: work,
      compressionLevel: 1,
      trustRoot: join(keys, 'root.pub'),
      minKeyListVersion: 3,
    })
    expect(built.manifest.contents.trust).toEqual({
      rootKeyId: root.keyId,
      path: '/etc/imageswarm/root.pub',
      minKeyListVersion: 3,
    })
    const unpacked = join(work, 'unpacked-trust')
    await unpack(built.initrd, unpacked)
    expect(await readFile(join(unpacked, 'etc/imageswarm/root.pub'))).toEqual(
      await readFile(join(keys, 'root.pub')),
    )
    expect(await readFile(join(unpacked, 'etc/imageswarm/installer.env'), 'utf8')).toMatch(
      /^IMAGESWARM_TRUST_ROOT=\/etc\/imageswarm\/root.pub\nIMAGESWARM_MIN_KEY_LIST_VERSION=3\n$/m,
    )
    const contents = JSON.parse(
      await readFile(join(unpacked, 'etc/imageswarm/ramdisk.json'), 'utf8'),
    ) as RamdiskContents
    expect(contents.trust?.rootKeyId).toBe(root.keyId)
  })

  it('refuses a trust root that is not a minisign public key, before doing any work', async () => {
    const notAKey = join(work, 'not-a-key.pub')
    await writeFile(notAKey, 'untrusted comment: x\nnot base64\n')
    await expect(
      buildInitrd({
        output: join(work, 'out4'),
        program,
        kernel: { vmlinuz: kernel.vmlinuz, modulesDir: kernel.modulesDir },
        workDir: work,
        trustRoot: notAKey,
      }),
    ).rejects.toMatchObject({ code: 'E_KEY_FILE_INVALID', path: notAKey })
    await expect(lstat(join(work, 'out4'))).rejects.toThrow()
  })

  it('refuses a program file that does not exist, before doing any work', async () => {
    await expect(
      buildInitrd({
        output: join(work, 'out3'),
        program: join(work, 'imageswarm-installer.mjs'),
        kernel: { vmlinuz: kernel.vmlinuz, modulesDir: kernel.modulesDir },
        workDir: work,
      }),
    ).rejects.toMatchObject({ code: 'E_USAGE', hint: expect.stringContaining('pnpm build') })
    await expect(lstat(join(work, 'out3'))).rejects.toThrow()
  })
})
