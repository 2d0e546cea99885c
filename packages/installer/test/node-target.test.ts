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
import { ImageServers } from '@imageswarm/client'
import {
  type Disk,
  DiskLayoutSchema,
  type NodeInstallConfig,
  parsePublicKeyFile,
  sha256Hex,
  signNodeConfig,
  silentLogger,
} from '@imageswarm/core'
import { writeKeyDirectoryFixture } from '@imageswarm/core/testing'
import { afterEach, describe, expect, it } from 'vitest'
import { describeDisks, diskOf, listDisks } from '../src/node/block-devices.js'
import { planBootloader } from '../src/node/boot-requirements.js'
import { findImageGrub } from '../src/node/bootloader.js'
import { linkDisksByUuid } from '../src/node/configure-target.js'
import { defaultLayout } from '../src/node/default-layout.js'
import { fetchNodeConfig, nodeConfigPath } from '../src/node/node-config.js'
import { applyOverrides } from '../src/node/overrides.js'
import { planPartitions } from '../src/node/partition-plan.js'
import { runPostInstallScripts } from '../src/node/post-install.js'
import { pathInRoot } from '../src/node/root-path.js'
import {
  resetMachineId,
  withGrubTimeout,
  writeHostname,
  writeTargetFile,
} from '../src/node/target-files.js'
import { rejected } from './helpers/thrown.js'

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
    const err = await rejected(findImageGrub(noKernel, 'minbase', 'legacy'))
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
    const efi = await rejected(findImageGrub(biosOnly, 'deb', 'efi'))
    expect(efi.message).toBe(
      'image deb cannot boot this node: it has no GRUB modules for UEFI (/usr/lib/grub/x86_64-efi)',
    )
    expect(efi.hint).toBe(
      'add to the image: Debian/Ubuntu grub-efi-amd64, RHEL grub2-efi-x64; then republish it',
    )
    const nothing = await rejected(
      findImageGrub(await image(['etc/os-release']), 'empty', 'legacy'),
    )
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
    const err = await rejected(
      fetchNodeConfig({ image: 'compute', layout: 'rack' }, request(server)),
    )
    expect(err.code).toBe('E_LAYOUT_INVALID')
  })

  it('comes from the first image server that answers, the others asked when one is down', async () => {
    const probe = createServer()
    await new Promise<void>((done) => probe.listen(0, '127.0.0.1', done))
    const down = `http://127.0.0.1:${(probe.address() as AddressInfo).port}`
    await new Promise((done) => probe.close(done))
    const config = {
      image: 'compute',
      hostname: 'node1',
      groups: [],
      layoutName: null,
      layout: null,
      overrides: [],
      postInstall: [],
    }
    const up = await serve(() => ({ status: 200, body: JSON.stringify(config) }))
    const imageServers = new ImageServers([down, up])
    // A connect timeout of 10 minutes: the server that is down costs a moment, not that.
    const answered = await imageServers.firstAnswer(
      { what: 'node config' },
      { connectTimeoutSeconds: 600 },
      (to) => fetchNodeConfig({ image: 'compute' }, to),
    )
    expect(answered).toEqual({ value: { source: 'server', config }, server: up })
    expect(imageServers.current).toBe(up)
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
    const bad = await rejected(fetchNodeConfig({ image: 'compute' }, request(server)))
    expect(bad.code).toBe('E_SERVER_RESPONSE')
    expect(bad.message).toMatch(/^the server's node config is invalid: layout\.disks: /)
    answer = JSON.stringify({ ...config, image: 'other' })
    expect((await rejected(fetchNodeConfig({ image: 'compute' }, request(server)))).message).toBe(
      "the server's node config is invalid: it is for image other",
    )
    answer = 'not json'
    expect((await rejected(fetchNodeConfig({ image: 'compute' }, request(server)))).message).toBe(
      "the server's node config is invalid: it is not JSON",
    )
  })
})

describe('a signed node config (a node with a trust root)', () => {
  const MAC = '52:54:00:77:00:01'
  const quietConsole = { say: () => {} }

  /**
   * A server with a key list and one signed node config for image compute serial 7, whose
   * answers a test may replace (`files`: path → body, or 404).
   */
  async function signedServer(change: (config: NodeInstallConfig) => NodeInstallConfig = (c) => c) {
    const dir = await workDir()
    const now = new Date()
    const keys = await writeKeyDirectoryFixture(join(dir, 'keys'), { now })
    const script = Buffer.from('#!/bin/sh\necho signed\n')
    const config: NodeInstallConfig = {
      image: 'compute',
      hostname: 'node1',
      groups: [],
      layoutName: null,
      layout: null,
      overrides: [],
      postInstall: ['10all.hello'],
      signed: {
        mac: MAC,
        serial: 7,
        expires: new Date(now.getTime() + 3_600_000).toISOString(),
        overrideSha256: {},
        postInstallSha256: { '10all.hello': sha256Hex(script) },
      },
    }
    const { bytes, signature } = signNodeConfig(change(config), keys.signing)
    const files = new Map<string, Buffer | 404>([
      ['/keys.json', await readFile(join(keys.dir, 'keys.json'))],
      ['/keys.json.minisig', await readFile(join(keys.dir, 'keys.json.minisig'))],
      ['/install/node.json', bytes],
      ['/install/node.json.minisig', Buffer.from(signature)],
      ['/install/post-install/10all.hello', script],
    ])
    const server = createServer((req, res) => {
      const body = files.get(new URL(req.url ?? '/', 'http://x').pathname) ?? 404
      if (body === 404) res.writeHead(404).end('{"error":{"code":"E_IMAGE_NOT_FOUND"}}')
      else res.writeHead(200).end(body)
    })
    servers.push(server)
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done))
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    const root = parsePublicKeyFile(await readFile(join(keys.dir, 'root.pub'), 'utf8'), 'root.pub')
    const trust = {
      root: { publicKey: root, source: 'root.pub', testMode: false },
      floor: { reasons: [] },
      serial: 7,
      logger: silentLogger(),
    }
    return { url, files, trust, bytes, dir }
  }
  const request = (server: string) => ({ server, connectTimeoutSeconds: 5 })

  it('is taken when it is signed for this node’s MAC, the image and its serial', async () => {
    const { url, trust } = await signedServer()
    const fetched = await fetchNodeConfig({ image: 'compute', mac: MAC }, request(url), trust)
    expect(fetched.source).toBe('server')
    expect(fetched.signed?.keyListVersion).toBe(1)
    expect(fetched.config.postInstall).toEqual(['10all.hello'])
  })

  it('is refused unsigned, missing (an older server), altered, or signed for another MAC, serial or image', async () => {
    const unsigned = await signedServer()
    unsigned.files.set('/install/node.json.minisig', 404)
    const missing = await rejected(
      fetchNodeConfig({ image: 'compute', mac: MAC }, request(unsigned.url), unsigned.trust),
    )
    expect([missing.code, missing.exitCode]).toEqual(['E_SIGNATURE_MISSING', 17])

    unsigned.files.set('/install/node.json', 404)
    const older = await rejected(
      fetchNodeConfig({ image: 'compute', mac: MAC }, request(unsigned.url), unsigned.trust),
    )
    expect([older.code, older.exitCode]).toEqual(['E_SIGNATURE_MISSING', 17])
    expect(older.message).toMatch(/no node config .* so no signed one/)

    const altered = await signedServer()
    altered.files.set(
      '/install/node.json',
      Buffer.from(altered.bytes.toString('utf8').replace('"groups": []', '"groups": ["x"]')),
    )
    const forged = await rejected(
      fetchNodeConfig({ image: 'compute', mac: MAC }, request(altered.url), altered.trust),
    )
    expect([forged.code, forged.exitCode]).toEqual(['E_SIGNATURE_INVALID', 18])

    const { url, trust } = await signedServer()
    const other = await rejected(
      fetchNodeConfig({ image: 'compute', mac: '52:54:00:77:00:02' }, request(url), trust),
    )
    expect(other.code).toBe('E_SIGNATURE_INVALID')
    expect(other.message).toMatch(
      /is for the node with MAC 52:54:00:77:00:01, not 52:54:00:77:00:02/,
    )
    const serial = await rejected(
      fetchNodeConfig({ image: 'compute', mac: MAC }, request(url), { ...trust, serial: 8 }),
    )
    expect(serial.message).toMatch(/is for serial 7 of image compute, not serial 8/)
    const image = await signedServer((c) => ({ ...c, image: 'login' }))
    const wrong = await rejected(
      fetchNodeConfig({ image: 'compute', mac: MAC }, request(image.url), image.trust),
    )
    expect(wrong.message).toMatch(/is for image login, not compute/)
  })

  it('is refused once expired', async () => {
    const { url, trust } = await signedServer()
    const later = () => new Date(Date.now() + 2 * 3_600_000)
    const expired = await rejected(
      fetchNodeConfig({ image: 'compute', mac: MAC }, request(url), { ...trust, now: later }),
    )
    expect([expired.code, expired.exitCode]).toEqual(['E_MANIFEST_EXPIRED', 20])
  })

  it('stops a post-install script or an override that does not match its digest before it is used', async () => {
    const { url, files, dir } = await signedServer()
    files.set('/install/post-install/10all.hello', Buffer.from('#!/bin/sh\necho evil\n'))
    const target = join(dir, 'target')
    await mkdir(join(target, 'tmp'), { recursive: true })
    const err = await rejected(
      runPostInstallScripts({
        target,
        serverScripts: ['10all.hello'],
        variables: {
          image: 'compute',
          server: url,
          groups: [],
          overrides: [],
          layoutName: 'default',
          postAction: 'reboot',
        },
        servers: new ImageServers([url]),
        request: { connectTimeoutSeconds: 5 },
        digests: { '10all.hello': sha256Hex(Buffer.from('#!/bin/sh\necho signed\n')) },
        console: quietConsole,
        logger: silentLogger(),
      }),
    )
    expect([err.code, err.exitCode]).toEqual(['E_SIGNATURE_INVALID', 18])
    expect(err.message).toMatch(
      /^post-install script 10all.hello \(http:.*\/install\/post-install\/10all.hello\) does not match the signed node config/,
    )
    // Nothing was left in the new system, and nothing ran.
    expect(await stat(join(target, 'tmp', 'post-install')).catch(() => 'absent')).toBe('absent')

    const applySite = () =>
      applyOverrides({
        names: ['site'],
        target,
        workDir: join(dir, 'work'),
        servers: new ImageServers([url]),
        request: { connectTimeoutSeconds: 5 },
        digests: { site: sha256Hex(Buffer.from('the signed tar')) },
        console: quietConsole,
        logger: silentLogger(),
      })
    files.set('/install/overrides/site.tar', Buffer.from('not the signed tar'))
    const override = await rejected(applySite())
    expect(override.code).toBe('E_SIGNATURE_INVALID')
    expect(override.message).toMatch(/^override site .* does not match the signed node config/)
    // A signed config names it, so a 404 is no longer "the site has none".
    files.set('/install/overrides/site.tar', 404)
    const gone = await rejected(applySite())
    expect(gone.message).toMatch(
      /named in the signed node config, but the server does not serve it/,
    )
  })
})
