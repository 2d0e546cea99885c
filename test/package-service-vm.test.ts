// Issue 18: the image server as a system service under a real systemd. The Debian package
// scripts/package/build.mjs builds is installed (dpkg -i, in a chroot) into a copy of the
// bootable Debian test root, an image root is put under /var/lib/systemimager/images, and
// /etc/imageswarm/server.conf names it, as an administrator would; the unit is enabled with
// `systemctl enable`. The root is made an ext4 disk and booted in a VM. A oneshot unit in
// the guest asks the running server for its images with `imageswarm images`, stops the
// service with `systemctl stop`, and prints what systemd says of it and the service's
// journal on the serial console, which the test reads.
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { chmod, copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { makeSampleImage } from '../scripts/lib/sample-image.mjs'
import {
  BOOTABLE_ROOT,
  chooseAccelerator,
  createTestNetwork,
  findTestKernel,
  missingVmSupport,
  skipReason,
  startVm,
  type TestKernel,
  type TestNetwork,
} from './helpers/vm-cluster.js'

const run = promisify(execFile)
const REPO = fileURLToPath(new URL('..', import.meta.url))

const kernelFound = await findTestKernel()
const missing = skipReason(
  'the service unit under systemd',
  (await missingVmSupport()) ?? ('missing' in kernelFound ? kernelFound.missing : undefined),
)
const testKernel = kernelFound as TestKernel

/** What the guest's check prints on the serial console, one line each. */
const MARK = 'IMAGESWARM-SERVICE'
const PORT = 6969

/**
 * The guest's check, run once at boot after imageswarm.service started: the server's
 * images from the command line, then the service stopped as an administrator stops it.
 * Every loop is bounded; the guest powers off at the end whatever happened.
 */
const CHECK_SCRIPT = `#!/bin/sh
exec >/dev/ttyS0 2>&1
say() { echo "${MARK} $*"; }
tries=0
until imageswarm images --server http://127.0.0.1:${PORT} >/run/images.txt 2>&1; do
  tries=$((tries + 1))
  if [ "$tries" -ge 120 ]; then say "no answer"; break; fi
  sleep 2
done
while IFS= read -r line; do say "images: $line"; done </run/images.txt
systemctl stop imageswarm.service
for property in ActiveState Result ExecMainCode ExecMainStatus; do
  say "stopped $property=$(systemctl show -p "$property" --value imageswarm.service)"
done
journalctl -b -u imageswarm.service -o cat --no-pager | while IFS= read -r line; do
  say "journal: $line"
done
say done
systemctl poweroff
`

const CHECK_UNIT = `[Unit]
Description=imageswarm test: the image server service asked, then stopped
After=imageswarm.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/imageswarm-service-check

[Install]
WantedBy=multi-user.target
`

describe.skipIf(Boolean(missing))('the Debian package under systemd, in a VM', () => {
  let work: string
  let net: TestNetwork | undefined
  let accel: 'tcg' | 'kvm' = 'tcg'

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'imageswarm-service-'))
    accel = (await chooseAccelerator({ kernel: testKernel.kernel })).accel
  }, 60_000)

  afterAll(async () => {
    await net?.teardown()
    if (work) await rm(work, { recursive: true, force: true })
  })

  it('starts at boot from /etc/imageswarm/server.conf, serves, and stops cleanly', async () => {
    // The package, as the repository builds it.
    const out = join(work, 'out')
    await run(process.execPath, [join(REPO, 'scripts/package/build.mjs'), '--out', out, '--no-npm'])
    const debs = (await run('sh', ['-c', `ls ${out}/*.deb`])).stdout.trim().split('\n')
    expect(debs).toHaveLength(1)

    // A server machine: the bootable test root with the package installed by dpkg.
    const root = join(work, 'root')
    await run('cp', ['-a', BOOTABLE_ROOT, root])
    await copyFile(debs[0]!, join(root, 'tmp/imageswarm.deb'))
    await run('chroot', [root, 'dpkg', '-i', '/tmp/imageswarm.deb'])
    await rm(join(root, 'tmp/imageswarm.deb'))
    expect(existsSync(join(root, 'lib/systemd/system/imageswarm.service'))).toBe(true)

    // The administrator's part: an image, the configuration file, the unit enabled.
    await makeSampleImage(join(root, 'var/lib/systemimager/images/compute'), {
      dirs: 2,
      filesPerDir: 4,
      bigFiles: 1,
      bigFileBytes: 256 * 1024,
    })
    await writeFile(
      join(root, 'etc/imageswarm/server.conf'),
      `image = compute\nport = ${PORT}\nlog-level = info\n`,
    )
    await mkdir(join(root, 'usr/local/sbin'), { recursive: true })
    await writeFile(join(root, 'usr/local/sbin/imageswarm-service-check'), CHECK_SCRIPT)
    await chmod(join(root, 'usr/local/sbin/imageswarm-service-check'), 0o755)
    await writeFile(join(root, 'etc/systemd/system/imageswarm-service-check.service'), CHECK_UNIT)
    await run('systemctl', [
      `--root=${root}`,
      'enable',
      'imageswarm.service',
      'imageswarm-service-check.service',
    ])

    // Its disk: the root as one ext4 file system, booted with its own kernel and initramfs.
    const disk = join(work, 'root.ext4')
    await run('mkfs.ext4', ['-q', '-F', '-L', 'root', '-d', root, disk, '2G'])
    await rm(root, { recursive: true, force: true })

    net = await createTestNetwork()
    const vm = await startVm(net, {
      name: 'server',
      mac: '52:54:00:77:18:01',
      diskPath: disk,
      bootOrder: 'network',
      kernel: testKernel.kernel,
      initrd: join(BOOTABLE_ROOT, 'boot', `initrd.img-${testKernel.release}`),
      append: 'root=/dev/vda rw console=ttyS0 panic=-1 systemd.show_status=false',
      memoryMiB: 1024,
      accel,
    })
    // Bounds, not expectations: under TCG the boot to multi-user takes about 30 s, and
    // node about 20 times longer than on the host to start and pack the image.
    await vm.waitForConsole(new RegExp(`^${MARK} done$`), { timeoutMs: 480_000 })
    await vm.waitForPowerOff({ timeoutMs: 120_000 })

    const said = vm.console.lines
      .map((line) => line.text)
      .filter((line) => line.startsWith(`${MARK} `))
      .map((line) => line.slice(MARK.length + 1))
    // The service published the image named in its configuration file.
    expect(said, said.join('\n')).toContainEqual(expect.stringMatching(/^images: compute\s+/))
    expect(said).not.toContain('no answer')
    // Stopped by systemd's SIGTERM: a clean exit, not a kill.
    expect(said).toEqual(
      expect.arrayContaining([
        'stopped ActiveState=inactive',
        'stopped Result=success',
        'stopped ExecMainCode=1',
        'stopped ExecMainStatus=0',
      ]),
    )
    const journal = said.filter((line) => line.startsWith('journal: '))
    expect(journal).toContainEqual(expect.stringMatching(/^journal: serving 1 image at http:\/\//))
    // The journal shows the info log (server.conf's log-level): serve's own lines that say
    // the same are left out, so each thing is said once.
    expect(journal.filter((line) => line === 'journal: image server stopped')).toHaveLength(1)
    expect(journal.filter((line) => line === 'journal: SIGTERM: stopping')).toHaveLength(1)
  }, 900_000)
})
