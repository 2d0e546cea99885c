import {
  chmod,
  lstat,
  mkdir,
  mkdtemp,
  readFile,
  readlink,
  rm,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type Disk, DiskLayoutSchema, ImageSwarmError, silentLogger } from '@imageswarm/core'
import { afterEach, describe, expect, it } from 'vitest'
import { describeDisks, diskOf, listDisks } from '../src/node/block-devices.js'
import { planBootloader } from '../src/node/boot-requirements.js'
import { findImageGrub } from '../src/node/bootloader.js'
import { linkDisksByUuid } from '../src/node/configure-target.js'
import { defaultLayout } from '../src/node/default-layout.js'
import { fetchNodeConfig, nodeConfigPath } from '../src/node/node-config.js'
import { planPartitions } from '../src/node/partition-plan.js'
import { pathInRoot } from '../src/node/root-path.js'
import {
  resetMachineId,
  withGrubTimeout,
  writeHostname,
  writeTargetFile,
} from '../src/node/target-files.js'

const made: string[] = []
const servers: Server[] = []
afterEach(async () => {
  for (const server of servers.splice(0)) await new Promise((done) => server.close(done))
  for (const dir of made.splice(0)) await rm(dir, { recursive: true, force: true })
})

async function workDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'imageswarm-node-'))
  made.push(dir)
  return dir
}

async function thrown(promise: Promise<unknown>): Promise<ImageSwarmError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  )
  if (err instanceof ImageSwarmError) return err
  throw new Error(`expected an ImageSwarmError, got ${String(err)}`)
}

describe('paths inside the new system', () => {
  it('follow symlinks as the installed system will: absolute ones start again at its root', async () => {
    const root = await workDir()
    await mkdir(join(root, 'boot'))
    await mkdir(join(root, 'run'))
    await mkdir(join(root, 'etc'))
    await writeFile(join(root, 'boot/vmlinuz-6.1'), '')
    await symlink('boot/vmlinuz-6.1', join(root, 'vmlinuz'))
    await symlink('/run/hostname', join(root, 'etc/hostname'))
    await symlink('../../../../etc', join(root, 'boot/up'))
    expect(await pathInRoot(root, '/vmlinuz')).toBe(join(root, 'boot/vmlinuz-6.1'))
    expect(await pathInRoot(root, '/etc/hostname')).toBe(join(root, 'run/hostname'))
    // `..` stops at the root, as in a chroot.
    expect(await pathInRoot(root, '/boot/up/passwd')).toBe(join(root, 'etc/passwd'))
    await symlink('loop', join(root, 'loop'))
    await expect(pathInRoot(root, '/loop/x')).rejects.toThrow(/too many symbolic links/)
  })

  it('writes the host name through the image’s symlink, never outside it, and keeps modes', async () => {
    const root = await workDir()
    await mkdir(join(root, 'etc'))
    await mkdir(join(root, 'run'))
    await symlink('/run/hostname', join(root, 'etc/hostname'))
    await writeFile(join(root, 'etc/hosts'), '127.0.0.1\tlocalhost\n127.0.1.1\tgolden\n', {
      mode: 0o640,
    })
    await chmod(join(root, 'etc/hosts'), 0o640)
    await writeHostname(root, 'node3', undefined)
    expect(await readFile(join(root, 'run/hostname'), 'utf8')).toBe('node3\n')
    expect(await readlink(join(root, 'etc/hostname'))).toBe('/run/hostname')
    expect(await readFile(join(root, 'etc/hosts'), 'utf8')).toBe(
      '127.0.0.1\tlocalhost\n127.0.1.1\tnode3\n',
    )
    expect((await stat(join(root, 'etc/hosts'))).mode & 0o777).toBe(0o640)
    await writeTargetFile(root, '/etc/fstab', 'x\n')
    expect((await stat(join(root, 'etc/fstab'))).mode & 0o777).toBe(0o644)
  })

  it('empties machine-id, leaves an empty one alone and removes dbus’s copy unless it is a symlink', async () => {
    const root = await workDir()
    await mkdir(join(root, 'etc'))
    await mkdir(join(root, 'var/lib/dbus'), { recursive: true })
    await writeFile(join(root, 'etc/machine-id'), '0123456789abcdef0123456789abcdef\n', {
      mode: 0o444,
    })
    await writeFile(join(root, 'var/lib/dbus/machine-id'), '0123456789abcdef0123456789abcdef\n')
    await resetMachineId(root)
    expect((await stat(join(root, 'etc/machine-id'))).size).toBe(0)
    expect((await stat(join(root, 'etc/machine-id'))).mode & 0o777).toBe(0o444)
    await expect(lstat(join(root, 'var/lib/dbus/machine-id'))).rejects.toThrow(/ENOENT/)

    const before = (await stat(join(root, 'etc/machine-id'), { bigint: true })).mtimeNs
    await symlink('/etc/machine-id', join(root, 'var/lib/dbus/machine-id'))
    await resetMachineId(root)
    expect((await stat(join(root, 'etc/machine-id'), { bigint: true })).mtimeNs).toBe(before)
    expect((await lstat(join(root, 'var/lib/dbus/machine-id'))).isSymbolicLink()).toBe(true)

    const bare = await workDir()
    await mkdir(join(bare, 'etc'))
    await resetMachineId(bare)
    expect((await stat(join(bare, 'etc/machine-id'))).mode & 0o777).toBe(0o444)
  })

  it('sets GRUB_TIMEOUT in /etc/default/grub, replacing the image’s line or adding one', () => {
    expect(withGrubTimeout('GRUB_DEFAULT=0\nGRUB_TIMEOUT=5\nX=1\n', 2)).toBe(
      'GRUB_DEFAULT=0\nGRUB_TIMEOUT=2\nX=1\n',
    )
    expect(withGrubTimeout('GRUB_DEFAULT=0', 0)).toBe('GRUB_DEFAULT=0\nGRUB_TIMEOUT=0\n')
  })
})

describe('the links GRUB looks for', () => {
  it('makes udev’s /dev/disk/by-uuid links where there are none, so grub-mkconfig writes root=UUID=', async () => {
    const dev = await workDir()
    await mkdir(join(dev, 'disk/by-uuid'), { recursive: true })
    await symlink('../../sda1', join(dev, 'disk/by-uuid/ABCD-1234'))
    await linkDisksByUuid(
      new Map([
        [join(dev, 'vda2'), '2f0fd895-e774-4f71-af40-6fb2ff72fb09'],
        [join(dev, 'nvme0n1p1'), 'ABCD-1234'],
      ]),
      silentLogger(),
      dev,
    )
    expect(await readlink(join(dev, 'disk/by-uuid/2f0fd895-e774-4f71-af40-6fb2ff72fb09'))).toBe(
      '../../vda2',
    )
    // One udev made stays as it is.
    expect(await readlink(join(dev, 'disk/by-uuid/ABCD-1234'))).toBe('../../sda1')
  })
})

describe('an image that cannot boot the node', () => {
  async function image(files: string[]): Promise<string> {
    const root = await workDir()
    for (const file of files) {
      await mkdir(join(root, file, '..'), { recursive: true })
      await writeFile(join(root, file), '')
    }
    return root
  }

  it('is found bootable with a kernel and GRUB for the firmware, Debian’s or RHEL’s names', async () => {
    const debian = await image([
      'boot/vmlinuz-6.1.0-50-cloud-amd64',
      'usr/sbin/grub-install',
      'usr/sbin/grub-mkconfig',
      'usr/lib/grub/i386-pc/modinfo.sh',
    ])
    expect(await findImageGrub(debian, 'deb', 'legacy')).toEqual({
      install: '/usr/sbin/grub-install',
      mkconfig: '/usr/sbin/grub-mkconfig',
      config: '/boot/grub/grub.cfg',
    })
    const rhel = await image([
      'boot/vmlinuz-5.14.0-427.el9.x86_64',
      'usr/sbin/grub2-install',
      'usr/sbin/grub2-mkconfig',
      'usr/lib/grub/x86_64-efi/modinfo.sh',
    ])
    expect((await findImageGrub(rhel, 'rocky', 'efi')).config).toBe('/boot/grub2/grub.cfg')
  })

  it('is E_IMAGE_NOT_BOOTABLE (exit 15) naming everything missing and the packages to add', async () => {
    const noKernel = await image([
      'usr/sbin/grub-install',
      'usr/sbin/grub-mkconfig',
      'usr/lib/grub/i386-pc/modinfo.sh',
    ])
    const err = await thrown(findImageGrub(noKernel, 'minbase', 'legacy'))
    expect(err.code).toBe('E_IMAGE_NOT_BOOTABLE')
    expect(err.exitCode).toBe(15)
    expect(err.message).toBe(
      'image minbase cannot boot this node: it has no kernel (/boot/vmlinuz-*)',
    )
    expect(err.hint).toBe(
      'add to the image: a kernel package (Debian linux-image-amd64, RHEL kernel); then republish it',
    )
    const biosOnly = await image([
      'boot/vmlinuz-6.1',
      'usr/sbin/grub-install',
      'usr/sbin/grub-mkconfig',
      'usr/lib/grub/i386-pc/modinfo.sh',
    ])
    const efi = await thrown(findImageGrub(biosOnly, 'deb', 'efi'))
    expect(efi.message).toBe(
      'image deb cannot boot this node: it has no GRUB modules for UEFI (/usr/lib/grub/x86_64-efi)',
    )
    expect(efi.hint).toBe(
      'add to the image: Debian/Ubuntu grub-efi-amd64, RHEL grub2-efi-x64; then republish it',
    )
    const nothing = await thrown(findImageGrub(await image(['etc/os-release']), 'empty', 'legacy'))
    expect(nothing.message).toBe(
      'image empty cannot boot this node: it has no kernel (/boot/vmlinuz-*), no GRUB (grub-install, grub-mkconfig), no GRUB modules for BIOS (/usr/lib/grub/i386-pc)',
    )
  })
})

describe('the bootloader a layout needs', () => {
  const GiB = 1024 ** 3
  const plansOf = (layout: ReturnType<typeof defaultLayout>) =>
    layout.disks.map((disk) => planPartitions(disk as Disk, 8 * GiB, 512, layout.filesystems))

  it('is GRUB for BIOS on the disk holding /, or for UEFI on the ESP', () => {
    const bios = defaultLayout('/dev/vda', 'bios')
    expect(planBootloader(bios, plansOf(bios), 'bios')).toEqual({
      installType: 'legacy',
      targets: ['/dev/vda'],
    })
    const uefi = defaultLayout('/dev/vda', 'uefi')
    expect(planBootloader(uefi, plansOf(uefi), 'uefi')).toEqual({ installType: 'efi', targets: [] })
  })

  it('refuses, before any disk is touched, what GRUB cannot boot', () => {
    const noBiosBoot = DiskLayoutSchema.parse({
      disks: [{ dev: '/dev/vda', label: 'gpt', partitions: [{ num: 1, size: '*' }] }],
      filesystems: [{ device: '/dev/vda1', mountPoint: '/', type: 'ext4' }],
    })
    expect(() => planBootloader(noBiosBoot, plansOf(noBiosBoot), 'bios')).toThrow(
      'GRUB for BIOS on gpt disk /dev/vda needs a BIOS boot partition to embed itself in; the layout has none',
    )
    expect(() => planBootloader(noBiosBoot, plansOf(noBiosBoot), 'uefi')).toThrow(
      'booting by UEFI needs an EFI system partition mounted at /boot/efi (vfat); the layout has none',
    )
    const efiLayout = DiskLayoutSchema.parse({
      ...defaultLayout('/dev/vda', 'uefi'),
      bootloader: { flavor: 'grub2', installType: 'efi' },
    })
    expect(() => planBootloader(efiLayout, plansOf(efiLayout), 'bios')).toThrow(
      /installs GRUB for UEFI \(install_type="efi"\), but this node booted by BIOS/,
    )
    const msdos = DiskLayoutSchema.parse({
      disks: [
        { dev: '/dev/sda', label: 'msdos', partitions: [{ num: 1, size: '*', flags: ['boot'] }] },
      ],
      filesystems: [{ device: '/dev/sda1', mountPoint: '/', type: 'ext4' }],
    })
    expect(planBootloader(msdos, plansOf(msdos), 'bios').targets).toEqual(['/dev/sda'])
  })
})

describe('the disks of the node', () => {
  it('are read from /sys/block: whole disks only, size in 512-byte sectors whatever their own', async () => {
    const sys = await workDir()
    const add = async (name: string, files: Record<string, string>) => {
      for (const [file, text] of Object.entries(files)) {
        await mkdir(join(sys, name, file, '..'), { recursive: true })
        await writeFile(join(sys, name, file), `${text}\n`)
      }
    }
    await add('vda', {
      size: '8388608',
      removable: '0',
      ro: '0',
      'queue/logical_block_size': '512',
    })
    await add('nvme0n1', {
      size: '16777216',
      removable: '0',
      ro: '0',
      'queue/logical_block_size': '4096',
    })
    await add('sr0', { size: '2097152', removable: '1' })
    await add('loop0', { size: '0' })
    await add('zram0', { size: '1024' })
    await add('sdb', { size: '1000', removable: '1', ro: '1' })
    const disks = await listDisks(sys)
    expect(disks).toEqual([
      {
        name: 'nvme0n1',
        device: '/dev/nvme0n1',
        bytes: 8 * 1024 ** 3,
        sectorSize: 4096,
        removable: false,
        readOnly: false,
      },
      {
        name: 'sdb',
        device: '/dev/sdb',
        bytes: 512000,
        sectorSize: 512,
        removable: true,
        readOnly: true,
      },
      {
        name: 'vda',
        device: '/dev/vda',
        bytes: 4 * 1024 ** 3,
        sectorSize: 512,
        removable: false,
        readOnly: false,
      },
    ])
    expect(describeDisks(disks)).toBe(
      'nvme0n1 (8.0 GiB), sdb (0.0 GiB, removable, read-only), vda (4.0 GiB)',
    )
    expect(diskOf('/dev/nvme0n1p2', disks)?.name).toBe('nvme0n1')
    expect(diskOf('/dev/vda12', disks)?.name).toBe('vda')
    expect(diskOf('/dev/vdab1', disks)).toBeUndefined()
  })
})

describe('the node config from the server', () => {
  async function serve(handler: (url: URL) => { status: number; body: string }): Promise<string> {
    const server = createServer((req, res) => {
      const { status, body } = handler(new URL(req.url ?? '/', 'http://x'))
      res.writeHead(status, { 'content-type': 'application/json' }).end(body)
    })
    servers.push(server)
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done))
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  }
  const request = (server: string) => ({ server, connectTimeoutSeconds: 5 })

  it('asks with what the node knows of itself', () => {
    expect(nodeConfigPath({ image: 'compute', mac: '52:54:00:77:00:01', hostname: 'node1' })).toBe(
      '/install/node.json?image=compute&mac=52%3A54%3A00%3A77%3A00%3A01&hostname=node1',
    )
    expect(nodeConfigPath({ image: 'compute', layout: 'rack' })).toBe(
      '/install/node.json?image=compute&layout=rack',
    )
  })

  it('falls back to the default on a 404 (an older server): no layout, overrides or scripts', async () => {
    const server = await serve(() => ({
      status: 404,
      body: '{"error":{"code":"E_UNKNOWN_IMAGE","message":"no such endpoint"}}',
    }))
    expect(await fetchNodeConfig({ image: 'compute', hostname: 'node1' }, request(server))).toEqual(
      {
        source: 'default',
        config: {
          image: 'compute',
          hostname: 'node1',
          groups: [],
          layoutName: null,
          layout: null,
          overrides: [],
          postInstall: [],
        },
      },
    )
    // A layout asked for by name is never replaced by the default (which wipes the first disk).
    const err = await thrown(fetchNodeConfig({ image: 'compute', layout: 'rack' }, request(server)))
    expect(err.code).toBe('E_LAYOUT_INVALID')
  })

  it('takes the server’s answer, and refuses one that is not a node config', async () => {
    let answer = ''
    const server = await serve(() => ({ status: 200, body: answer }))
    const config = {
      image: 'compute',
      hostname: 'node1',
      groups: ['rack1'],
      layoutName: 'compute',
      layout: defaultLayout('/dev/sda', 'bios'),
      overrides: ['compute', 'node1'],
      postInstall: ['10all.hello'],
    }
    answer = JSON.stringify(config)
    expect(await fetchNodeConfig({ image: 'compute' }, request(server))).toEqual({
      source: 'server',
      config,
    })
    answer = JSON.stringify({ ...config, layout: { disks: [] } })
    const bad = await thrown(fetchNodeConfig({ image: 'compute' }, request(server)))
    expect(bad.code).toBe('E_SERVER_RESPONSE')
    expect(bad.message).toMatch(/^the server's node config is invalid: layout\.disks: /)
    answer = JSON.stringify({ ...config, image: 'other' })
    expect((await thrown(fetchNodeConfig({ image: 'compute' }, request(server)))).message).toBe(
      "the server's node config is invalid: it is for image other",
    )
    answer = 'not json'
    expect((await thrown(fetchNodeConfig({ image: 'compute' }, request(server)))).message).toBe(
      "the server's node config is invalid: it is not JSON",
    )
  })
})
