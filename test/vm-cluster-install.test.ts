// The installer end to end, on a cluster of QEMU VMs (TCG): a network namespace with a bridge,
// `imageswarm serve` handing out the installer ramdisk and the bootable test image, dnsmasq
// handing iPXE the server's boot script, and VMs that network-boot, partition their empty
// disks, install over the swarm, make themselves bootable and boot the installed system. The
// bad-input cases run beside the cluster on the same server: every VM test of the installer is
// here, sharing one ramdisk build, one published image and one network (the two cores of CI
// allow about three VMs at once; see VM_SLOTS).
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import {
  chmod,
  chown,
  mkdir,
  mkdtemp,
  open,
  readdir,
  readFile,
  rm,
  stat,
  writeFile,
} from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { compareTrees } from '@imageswarm/core/testing'
import { afterAll, beforeAll, describe, type ExpectStatic, it } from 'vitest'
import { CLI } from '../scripts/lib/deployment.mjs'
import { prepareBootableImage, ResourceSampler, serveImages } from '../scripts/lib/vm-deploy.mjs'
import { biosLayoutXml } from './helpers/disks-layout.js'
import {
  BOOTABLE_ROOT,
  createTestNetwork,
  INSTALLER_BUNDLE,
  missingInstallerParts,
  missingVmSupport,
  mountPartitionReadOnly,
  parseBootStages,
  planNodes,
  readPartitionTable,
  skipReason,
  stageOffsets,
  startDnsmasq,
  startVm,
  type TestNetwork,
} from './helpers/vm-cluster.js'

const run = promisify(execFile)

type Vm = Awaited<ReturnType<typeof startVm>>
type Node = ReturnType<typeof planNodes>[number]

async function missingRequirement(): Promise<string | undefined> {
  const vm = await missingVmSupport()
  if (vm) return vm
  if (!existsSync(join(BOOTABLE_ROOT, 'boot'))) {
    return `no bootable Debian root at ${BOOTABLE_ROOT} (scripts/make-debian-root.sh --bootable builds it)`
  }
  return missingInstallerParts()
}

const missing = skipReason('VM cluster install tests', await missingRequirement())

// Bounds, not expectations. Measured here under TCG on two loaded cores: the ramdisk build
// 10-30 s, publishing the 274 MB image 20-90 s, one install 1.5-4 min of wall time (the
// extraction is emulated CPU work: 28-50 s alone), the installed system's boot 30-60 s.
const BUILD_TIMEOUT_MS = 300_000
const SERVE_TIMEOUT_MS = 600_000
const INSTALL_TIMEOUT_MS = 1_200_000
const BOOT_TIMEOUT_MS = 600_000
const FAILURE_TIMEOUT_MS = 900_000

/**
 * VMs running at once. Each TCG VM keeps one host core busy; with two cores, three VMs
 * keep both busy while one of them waits on the network, and the cluster's two never wait
 * long for CPU. (Measured here: see the log line "VM test wall time" of a run.)
 */
const VM_SLOTS = 3

/** A post-install script the image carries: it runs chrooted, with SystemImager's variables. */
const IMAGE_SCRIPT = `#!/bin/sh
. /tmp/post-install/variables.txt
echo "post-install ran on $HOSTNAME ($BASE_HOSTNAME) for $IMAGENAME from $IMAGESERVER" >/etc/imageswarm-post-install.txt
`

/**
 * Everything the installer writes into the new system on purpose, as compareTrees reports
 * it (`"PATH": what`): the disk must equal the image in everything else. Each entry says
 * which differences it allows.
 */
const WRITTEN_ON_PURPOSE: readonly { path: string; allows: RegExp; why: string }[] = [
  { path: 'etc/fstab', allows: /^(size|blocks|sha256|mtimeNs) /, why: 'the layout, by UUID' },
  { path: 'etc/hostname', allows: /^(size|blocks|sha256|mtimeNs) /, why: 'the node’s name' },
  { path: 'etc/hosts', allows: /^only in target$/, why: '127.0.1.1 NAME (the image has none)' },
  // The image's machine-id is empty already (make-debian-root.sh): the installer leaves it.
  { path: 'lost+found', allows: /^only in target$/, why: 'mke2fs' },
  // The site's files (this test's): the overrides, the server's and the image's scripts.
  { path: 'etc/imageswarm-override.txt', allows: /^only in target$/, why: 'overrides' },
  { path: 'etc/imageswarm-rack1.txt', allows: /^only in target$/, why: 'override rack1' },
  { path: 'etc/imageswarm-server-script.txt', allows: /^only in target$/, why: 'post-install' },
  { path: 'etc/imageswarm-post-install.txt', allows: /^only in target$/, why: 'post-install' },
  // With a trust root: what the node runs, and the floor for its next install.
  { path: 'etc/imageswarm/installed.json', allows: /^only in target$/, why: 'signed image' },
  // Directories where a file was made: their mtime changes.
  { path: 'etc', allows: /^mtimeNs /, why: 'hosts and the site’s files made in it' },
  { path: 'boot/grub', allows: /^mtimeNs /, why: 'grub-install and grub-mkconfig' },
]
/** GRUB's own files under boot/grub (modules, core.img, grub.cfg, grubenv): new, or rewritten. */
const GRUB_FILES = /^boot\/grub\/.+/
const GRUB_ALLOWS = /^(only in target|mtimeNs .*)$/

/** The differences between the image and the disk that are not the installer's doing. */
function unexpectedDifferences(differences: readonly string[]): string[] {
  return differences.filter((line) => {
    const match = /^"((?:[^"\\]|\\.)*)": (.*)$/.exec(line)
    if (!match) return true
    const path = JSON.parse(`"${match[1]}"`) as string
    const what = match[2] as string
    if (GRUB_FILES.test(path)) return !GRUB_ALLOWS.test(what)
    const entry = WRITTEN_ON_PURPOSE.find((allowed) => allowed.path === path)
    return !entry?.allows.test(what)
  })
}

/** A few VMs at a time: see VM_SLOTS. */
class VmSlots {
  #free: number
  #queue: (() => void)[] = []

  constructor(count: number) {
    this.#free = count
  }

  async use<T>(count: number, body: () => Promise<T>): Promise<T> {
    while (this.#free < count) await new Promise<void>((resolve) => this.#queue.push(resolve))
    this.#free -= count
    try {
      return await body()
    } finally {
      this.#free += count
      for (const wake of this.#queue.splice(0)) wake()
    }
  }
}

/**
 * The site's SystemImager files on the server. node1 and node2 are in group rack1
 * (cluster.txt), whose override is copied over the image, then node1's own (its file wins,
 * with its owner and mode); two post-install scripts are theirs (classes all and rack1), one
 * is another node's. node3's layout names a disk it lacks, node4's does not fit its disk,
 * node5 installs the image without a kernel.
 */
async function writeSiteFiles(root: string) {
  const scripts = join(root, 'scripts')
  await mkdir(join(scripts, 'post-install'), { recursive: true })
  await mkdir(join(scripts, 'disks-layouts'), { recursive: true })
  await writeFile(
    join(scripts, 'cluster.txt'),
    [
      '# hostname:group:imagename:override',
      'node1:rack1:bootable:rack1',
      'node2:rack1:bootable:rack1',
      'node3:rack2:bootable:',
      'node4:rack2:bootable:',
      'node5:rack2:nokernel:',
      '',
    ].join('\n'),
  )
  const script = (name: string, body: string) =>
    writeFile(
      join(scripts, 'post-install', name),
      `#!/bin/sh\n. /tmp/post-install/variables.txt\n${body}\n`,
      { mode: 0o755 },
    )
  await script(
    '10all.hello',
    'echo "$HOSTNAME groups=$GROUPNAMES overrides=$OVERRIDES" >/etc/imageswarm-server-script.txt',
  )
  await script('20rack1.group', 'echo "rack1 after all" >>/etc/imageswarm-server-script.txt')
  await script(
    '30node9.other',
    'echo "never on these nodes" >>/etc/imageswarm-server-script.txt; exit 1',
  )
  const override = async (
    name: string,
    file: string,
    text: string,
    mode: number,
    owner: number,
  ) => {
    const dir = join(root, 'overrides', name, 'etc')
    await mkdir(dir, { recursive: true, mode: 0o755 })
    await writeFile(join(dir, file), text)
    await chmod(join(dir, file), mode)
    await chown(join(dir, file), owner, owner)
  }
  await override('rack1', 'imageswarm-override.txt', 'rack1\n', 0o644, 0)
  await override('rack1', 'imageswarm-rack1.txt', 'rack1 only\n', 0o644, 0)
  await override('node1', 'imageswarm-override.txt', 'node1\n', 0o640, 1234)
  // node3's layout: a second disk the VM does not have.
  await writeFile(join(scripts, 'disks-layouts', 'node3.xml'), biosLayoutXml({ disk: '/dev/vdb' }))
  // node4's layout: a 6 GiB root on its 4 GiB disk.
  await writeFile(join(scripts, 'disks-layouts', 'node4.xml'), biosLayoutXml({ rootMiB: 6144 }))
}

/**
 * An image that cannot boot: a small root with GRUB's tools and modules for BIOS but no
 * kernel, so the installer's check names exactly what is missing.
 */
async function writeImageWithoutKernel(image: string) {
  for (const dir of ['boot', 'etc', 'tmp', 'usr/sbin', 'usr/lib/grub/i386-pc', 'var']) {
    await mkdir(join(image, dir), { recursive: true })
  }
  await chmod(join(image, 'tmp'), 0o1777)
  await writeFile(join(image, 'etc/os-release'), 'PRETTY_NAME="no kernel"\nID=debian\n')
  for (const tool of ['grub-install', 'grub-mkconfig']) {
    await writeFile(join(image, 'usr/sbin', tool), '#!/bin/sh\nexit 1\n', { mode: 0o755 })
  }
  await writeFile(join(image, 'usr/lib/grub/i386-pc/modinfo.sh'), 'grub_target_cpu=i386\n')
}

/** The uptime stamp of the first console line matching `pattern` (installer or /init). */
function stamp(lines: readonly string[], pattern: RegExp): number | undefined {
  const line = lines.find((text) => pattern.test(text))
  const match = line && /^imageswarm: \[([\d.]+)\]/.exec(line)
  return match ? Number(match[1]) : undefined
}

/** `12.3 MiB` in a console line, as bytes/MiB. */
function mib(text: string): number {
  return Number(/([\d.]+) MiB/.exec(text)?.[1] ?? Number.NaN)
}

interface DashboardNode {
  peerId: string
  node: string | null
  state: string
  uploaded: number
  downloaded: number
  downloadedFromServer: number
  error: { code: string; message: string } | null
  phaseSeconds: Record<string, number>
}

describe.skipIf(Boolean(missing))('installing network-booted VMs with imageswarm', () => {
  const slots = new VmSlots(VM_SLOTS)
  // Every VM's CPU time and memory, and how busy the host was: printed at the end.
  const usage = new ResourceSampler()
  let work: string
  let boot: string
  let keys: string
  let imagesDir: string
  let net: TestNetwork | undefined
  let serverUrl: string
  let nodes: Node[]
  let dhcp: Awaited<ReturnType<typeof startDnsmasq>>
  const suiteStarted = Date.now()

  /** The server's dashboard entries for an image (curl inside the namespace). */
  async function dashboard(image: string): Promise<DashboardNode[]> {
    const { stdout } = await (net as TestNetwork).exec('curl', [
      '-sf',
      `${serverUrl}/api/images/${image}/nodes`,
    ])
    return (JSON.parse(stdout) as { nodes: DashboardNode[] }).nodes
  }

  function node(name: string): Node {
    const found = nodes.find((entry) => entry.hostname === name)
    if (!found) throw new Error(`no ${name} planned`)
    return found
  }

  /**
   * A VM booted straight into the installer ramdisk (QEMU's -kernel/-initrd) with the kernel
   * parameters given, as a site's own PXE setup would: the cheap failure cases, which the
   * network boot (proved by the cluster) would only make slower. Each names the server and
   * image in another of the installer's vocabularies.
   */
  async function directBootVm(entry: Node, parameters: string[]) {
    return sampled(
      startVm(net as TestNetwork, {
        name: entry.hostname,
        mac: entry.mac,
        kernel: join(boot, 'vmlinuz'),
        initrd: join(boot, 'initrd.img'),
        append: [
          'console=ttyS0',
          `BOOTIF=01-${entry.mac.replaceAll(':', '-')}`,
          ...parameters,
          'imageswarm.on-failure=poweroff',
          'imageswarm.failure-delay=0',
        ].join(' '),
        memoryMiB: 768,
        diskGiB: 4,
        accel: 'tcg',
      }),
    )
  }

  async function sampled(starting: Promise<Vm>): Promise<Vm> {
    const vm = await starting
    usage.add(vm)
    return vm
  }

  /** A VM that boots iPXE from its NIC's ROM, which dnsmasq points at the server's script. */
  function networkBootVm(entry: Node, options: { maxBoots?: number } = {}) {
    return sampled(
      startVm(net as TestNetwork, {
        name: entry.hostname,
        mac: entry.mac,
        memoryMiB: 768,
        diskGiB: 4,
        accel: 'tcg',
        bootOrder: 'network',
        // The harness stops the VM at the reboot after this many power-ons, so the disk can be
        // read before the installed system first runs and changes it.
        maxBoots: options.maxBoots ?? 1,
      }),
    )
  }

  beforeAll(
    async () => {
      work = await mkdtemp(join(tmpdir(), 'imageswarm-vm-cluster-'))
      boot = join(work, 'boot')
      await mkdir(boot)
      // The ramdisk is built while the image is copied and published; serve hands out the
      // boot files once they are there. zstd level 3: the VMs unpack it as fast as level 9's
      // and it builds in 1.5 s instead of 7.5 s (packages/installer's README).
      // The server signs (serve --keys) and the ramdisk trusts its root key (initrd
      // --trust-root): every node installs signed images and signed node configs only.
      keys = join(work, 'keys')
      await run(process.execPath, [CLI, 'key', 'generate', '--output', keys], {
        timeout: BUILD_TIMEOUT_MS,
      })
      const built = Date.now()
      const building = run(
        process.execPath,
        [
          CLI,
          'initrd',
          '--output',
          boot,
          '--installer-bundle',
          INSTALLER_BUNDLE,
          '--compression-level',
          '3',
          '--trust-root',
          join(keys, 'root.pub'),
        ],
        { timeout: BUILD_TIMEOUT_MS, maxBuffer: 16 << 20 },
      ).then(
        ({ stdout }) =>
          `imageswarm initrd (${((Date.now() - built) / 1000).toFixed(1)} s):\n${stdout}`,
      )
      building.catch(() => {})

      // The served images: a copy of the bootable root with the unit printing
      // IMAGESWARM-BOOTED and this test's post-install script, and a root without a kernel.
      const serverDir = join(work, 'server')
      imagesDir = join(serverDir, 'images')
      const image = await prepareBootableImage(BOOTABLE_ROOT, join(imagesDir, 'bootable'))
      await mkdir(join(image, 'etc/imageswarm/post-install.d'), { recursive: true })
      await writeFile(join(image, 'etc/imageswarm/post-install.d/10-record'), IMAGE_SCRIPT)
      await chmod(join(image, 'etc/imageswarm/post-install.d/10-record'), 0o755)
      await writeFile(
        join(image, 'etc/imageswarm/post-install.d/README'),
        'not executable: skipped\n',
      )
      await writeImageWithoutKernel(join(imagesDir, 'nokernel'))
      await writeSiteFiles(serverDir)

      net = await createTestNetwork()
      const network = net
      nodes = planNodes(network, 6)
      serverUrl = `http://${network.hostAddress}:6969`
      dhcp = await startDnsmasq(network, { hosts: nodes, bootUrl: `${serverUrl}/boot/ipxe` })
      const publishing = Date.now()
      await serveImages(network, {
        dir: serverDir,
        // The small image first: it is published while the large one waits its turn.
        images: ['nokernel', 'bootable'],
        bootDir: boot,
        keys,
        // The server's uplink below what one node downloads at (3-4 MiB/s under TCG): the two
        // cluster nodes must overlap to trade pieces, which an unbounded server on a fast day
        // could make a race (one node fetching everything before the other asks).
        uploadLimit: '2M',
        // Failures power the node off at once: the test reads the console, not a shell.
        bootAppend: 'imageswarm.on-failure=poweroff imageswarm.failure-delay=0',
      })
      const published = ((Date.now() - publishing) / 1000).toFixed(1)
      usage.start()
      console.log(
        `${await building}\nimageswarm serve on ${serverUrl}: nokernel, bootable published in ${published} s`,
      )
    },
    BUILD_TIMEOUT_MS + SERVE_TIMEOUT_MS + 240_000,
  )

  afterAll(async () => {
    const used = await usage.stop()
    console.log(
      `VM test wall time: ${((Date.now() - suiteStarted) / 1000).toFixed(0)} s; while VMs ran (${used.seconds.toFixed(0)} s) the host's ${used.cores} cores were ${(used.hostBusy * 100).toFixed(0)} % busy; QEMU CPU seconds: ${Object.entries(
        used.cpuSeconds,
      )
        .map(([name, seconds]) => `${name} ${seconds.toFixed(0)}`)
        .join(', ')}; peak RSS (MiB): ${Object.entries(used.peakRss)
        .map(([name, bytes]) => `${name} ${(bytes / 2 ** 20).toFixed(0)}`)
        .join(', ')}`,
    )
    await net?.teardown()
    if (work && process.env.IMAGESWARM_VM_KEEP !== '1')
      await rm(work, { recursive: true, force: true })
  })

  it.concurrent(
    'two nodes network-boot, install over the swarm trading pieces (one reset mid-install installs again from scratch), equal the image on disk, and boot it',
    async ({ expect }) => {
      await slots.use(2, async () => {
        const started = Date.now()
        // Started together, so the two downloads overlap: node2 is reset while it extracts,
        // and its next boot installs again over the half-written disk.
        const [vm1, vm2] = await Promise.all([
          networkBootVm(node('node1')),
          networkBootVm(node('node2'), { maxBoots: 2 }),
        ])
        const installed = await Promise.all([
          installAndCompare(vm1, { resetWhileExtracting: false }),
          installAndCompare(vm2, { resetWhileExtracting: true }),
        ])

        // They traded pieces: each got part of the archive from the other (the only other
        // node in the swarm while they downloaded), and the dashboard counts their uploads.
        const [first1, first2] = installed.map((entry) => entry.firstDownload)
        expect(mib(first1 ?? ''), first1).toBeGreaterThan(0)
        expect(mib(first2 ?? ''), first2).toBeGreaterThan(0)
        const entries = await dashboard('bootable')
        for (const name of ['node1', 'node2']) {
          const mine = entries.filter((entry) => entry.node === name)
          expect(
            Math.max(...mine.map((entry) => entry.uploaded)),
            `${name}'s uploads in ${JSON.stringify(mine)}`,
          ).toBeGreaterThan(0)
          // Reported installed once, by the boot that finished.
          expect(mine.filter((entry) => entry.state === 'done')).toHaveLength(1)
        }
        const done1 = entries.find((entry) => entry.node === 'node1' && entry.state === 'done')
        for (const state of ['partitioning', 'downloading', 'extracting', 'configuring']) {
          expect(
            done1?.phaseSeconds[state],
            `${state} in ${JSON.stringify(done1)}`,
          ).toBeGreaterThan(0)
        }

        // Both boot the installed system from their own disks to multi-user.target.
        await Promise.all(installed.map((entry) => bootInstalled(entry.vm, entry.rootUuid)))
        const report = installed.map((entry) => {
          const timeline = parseBootStages(entry.vm.console.lines, entry.vm.boots)
          return [
            `${entry.vm.name}: ${entry.summary}`,
            ...timeline.map(
              (bootEntry) =>
                `  power-on ${bootEntry.number} (${bootEntry.device}, ${bootEntry.endReason ?? 'running'}): ${stageOffsets(
                  bootEntry,
                )
                  .map((offset) => `${offset.stage} ${offset.seconds}`)
                  .join(', ')}`,
            ),
          ].join('\n')
        })
        console.log(
          `cluster of 2 installed and booted in ${((Date.now() - started) / 1000).toFixed(0)} s of wall time\n${report.join('\n')}\ndashboard: ${JSON.stringify(
            entries.map((entry) => ({
              node: entry.node,
              state: entry.state,
              downloaded: entry.downloaded,
              fromServer: entry.downloadedFromServer,
              uploaded: entry.uploaded,
            })),
          )}`,
        )
        await Promise.all([vm1.stop(), vm2.stop()])
      })

      /**
       * One node's install: (reset while it extracts, and the next boot installs from
       * scratch), the console's steps, the disk against the image.
       */
      async function installAndCompare(vm: Vm, options: { resetWhileExtracting: boolean }) {
        const name = vm.name
        let installBoot = vm.boots[0]
        if (options.resetWhileExtracting) {
          await vm.waitForConsole(/^imageswarm: \[[\d.]+\] extracting the image$/, {
            timeoutMs: INSTALL_TIMEOUT_MS,
          })
          installBoot = await vm.reset()
          expect(installBoot.number).toBe(2)
        }
        const from = installBoot?.firstLine ?? 0
        await vm.waitForConsole(
          new RegExp(`^imageswarm: \\[[\\d.]+\\] installed image bootable on ${name} in [\\d.]+ s`),
          { timeoutMs: INSTALL_TIMEOUT_MS, from },
        )
        // The reboot into the installed system; the harness holds the VM off there.
        expect(await vm.waitForPowerOff({ timeoutMs: 180_000 })).toMatch(/^reset \d times/)
        expect(vm.boots.map((entry) => entry.endReason)).toEqual(
          options.resetWhileExtracting ? ['host-qmp-system-reset', 'guest-reset'] : ['guest-reset'],
        )
        const lines = vm.console.lines.map((line) => line.text)
        const before = lines.slice(0, from)
        const install = lines.slice(from)
        const said = (pattern: RegExp) => install.some((text) => pattern.test(text))
        if (options.resetWhileExtracting) {
          // The first boot partitioned the disk and was extracting onto it when reset.
          expect(before.some((text) => /partitioning \/dev\/vda/.test(text))).toBe(true)
          expect(before.some((text) => /extracting the image$/.test(text))).toBe(true)
        }
        const overrides = name === 'node1' ? 'rack1 node1' : 'rack1'
        for (const step of [
          // iPXE from the NIC's ROM fetched the server's script, kernel and ramdisk.
          /iPXE \(PCI [^)]*\) starting execution|iPXE initialising devices/,
          / : \d+ bytes \[script\]/,
          /^imageswarm: \[[\d.]+\] installer ramdisk on kernel /,
          /^imageswarm: \[[\d.]+\] signed images only: root key \/etc\/imageswarm\/root\.pub \(baked into this ramdisk\)$/,
          /^imageswarm: \[[\d.]+\] node config signed by key [0-9A-F]{16} \(key list version 1\), for this node's MAC and serial 1; /,
          /^imageswarm: \[[\d.]+\] installing image bootable from http:\/\/[\d.]+:6969 onto this node \(BIOS, post action reboot\)$/,
          new RegExp(
            `^imageswarm: \\[[\\d.]+\\] node config: host name ${name}, groups rack1, layout default, overrides ${overrides}, 2 post-install scripts$`,
          ),
          /^imageswarm: \[[\d.]+\] default layout on \/dev\/vda: gpt, BIOS boot 1 MiB, ext4 \/ on the rest$/,
          /^imageswarm: \[[\d.]+\] partitioning \/dev\/vda \(4096 MiB\): gpt, vda1 1 MiB, vda2 4093 MiB$/,
          /^imageswarm: \[[\d.]+\] making ext4 on \/dev\/vda2 \(\/\)$/,
          /^imageswarm: \[[\d.]+\] mounted \/dev\/vda2 on \/ under \/a$/,
          /^imageswarm: \[[\d.]+\] downloaded in [\d.]+ s: /,
          /^imageswarm: \[[\d.]+\] extracted into \/a in [\d.]+ s$/,
          /^imageswarm: \[[\d.]+\] wrote \/etc\/fstab \(1 filesystems, by UUID\)$/,
          new RegExp(
            `^imageswarm: \\[[\\d.]+\\] host name ${name}: /etc/hostname, 127\\.0\\.1\\.1 in /etc/hosts$`,
          ),
          /^imageswarm: \[[\d.]+\] override rack1: \d+ entries \([\d.]+ MiB\) copied over the image$/,
          /^imageswarm: \[[\d.]+\] installing GRUB for BIOS on \/dev\/vda$/,
          /^imageswarm: \[[\d.]+\] GRUB installed; \/boot\/grub\/grub\.cfg written by grub-mkconfig$/,
          /^imageswarm: \[[\d.]+\] post-install: \/etc\/imageswarm\/post-install\.d\/README \(not executable\): skipped$/,
          /^imageswarm: \[[\d.]+\] post-install: running 10-record \(the image's \/etc\/imageswarm\/post-install\.d\)$/,
          /^imageswarm: \[[\d.]+\] post-install: running 10all\.hello \(the server\)$/,
          /^imageswarm: \[[\d.]+\] post-install: running 20rack1\.group \(the server\)$/,
          /^imageswarm: \[[\d.]+\] post-install scripts done: 10-record, 10all\.hello, 20rack1\.group$/,
          /^imageswarm: \[[\d.]+\] signed image: serial 1, signing key [0-9A-F]{16}, key list version 1 /,
          /^imageswarm: \[[\d.]+\] rebooting into the installed system$/,
        ]) {
          expect(said(step), `${name}: console line ${step}`).toBe(true)
        }
        if (name === 'node1') {
          expect(
            said(
              /^imageswarm: \[[\d.]+\] override node1: \d+ entries \([\d.]+ MiB\) copied over the image$/,
            ),
            'node1 override',
          ).toBe(true)
          expect(
            said(/^imageswarm: \[[\d.]+\] overrides applied: rack1, node1$/),
            'node1 overrides',
          ).toBe(true)
        }
        // The first download's totals (before any reset): what came from the other node.
        const firstDownload = lines.find((text) =>
          /^imageswarm: \[[\d.]+\] downloaded in /.test(text),
        )
        const fromPeers = /downloaded in [\d.]+ s: ([\d.]+ MiB) from peers/.exec(
          firstDownload ?? '',
        )?.[1]

        // The disk: gpt, BIOS boot + Linux filesystem; its root equals the image but for
        // what the installer writes on purpose.
        const table = await readPartitionTable(vm.diskPath)
        expect(table.label).toBe('gpt')
        expect(table.partitions.map((part) => [part.start, part.sectors, part.type])).toEqual([
          [2048, 2048, '21686148-6449-6E6F-744E-656564454649'],
          [4096, 8382464, '0FC63DAF-8483-4772-8E79-3D69D8477DE4'],
        ])
        const root = await mountPartitionReadOnly(vm.diskPath, 2, {
          type: 'ext4',
          track: (net as TestNetwork).track,
        })
        let differences: string[]
        let rootUuid: string
        try {
          const image = join(imagesDir, 'bootable')
          // What the server leaves out of every archive (core's DEFAULT_EXCLUDES): the
          // contents of run/, proc/, sys/ and dev/pts/ in the image.
          const excluded: string[] = []
          for (const dir of ['run', 'proc', 'sys', 'dev/pts']) {
            for (const entry of await readdir(join(image, dir)).catch(() => [] as string[])) {
              excluded.push(`${dir}/${entry}`)
            }
          }
          differences = await compareTrees(image, root.path, { skipPaths: excluded })
          const fstab = await readFile(join(root.path, 'etc/fstab'), 'utf8')
          rootUuid = /^UUID=([0-9a-f-]{36})\s+\/\s+ext4\s+defaults\s+0\s+1$/m.exec(fstab)?.[1] ?? ''
          expect(rootUuid, fstab).not.toBe('')
          expect(await readFile(join(root.path, 'etc/hostname'), 'utf8')).toBe(`${name}\n`)
          expect(await readFile(join(root.path, 'etc/hosts'), 'utf8')).toMatch(
            new RegExp(`^127\\.0\\.0\\.1\\tlocalhost\\n127\\.0\\.1\\.1\\t${name}\\n`),
          )
          expect(await readFile(join(root.path, 'etc/machine-id'), 'utf8')).toBe('')
          expect(await readFile(join(root.path, 'etc/imageswarm-post-install.txt'), 'utf8')).toBe(
            `post-install ran on ${name} (node) for bootable from ${(net as TestNetwork).hostAddress}\n`,
          )
          // The server's: overrides in order with their owners and modes, its scripts in
          // SystemImager's class order after the image's.
          const overridden = await stat(join(root.path, 'etc/imageswarm-override.txt'))
          if (name === 'node1') {
            expect(await readFile(join(root.path, 'etc/imageswarm-override.txt'), 'utf8')).toBe(
              'node1\n',
            )
            expect([overridden.uid, overridden.gid, overridden.mode & 0o7777]).toEqual([
              1234, 1234, 0o640,
            ])
          } else {
            expect(await readFile(join(root.path, 'etc/imageswarm-override.txt'), 'utf8')).toBe(
              'rack1\n',
            )
            expect([overridden.uid, overridden.gid, overridden.mode & 0o7777]).toEqual([
              0, 0, 0o644,
            ])
          }
          expect(await readFile(join(root.path, 'etc/imageswarm-rack1.txt'), 'utf8')).toBe(
            'rack1 only\n',
          )
          expect(await readFile(join(root.path, 'etc/imageswarm-server-script.txt'), 'utf8')).toBe(
            `${name} groups=rack1 overrides=${overrides}\nrack1 after all\n`,
          )
          const grubCfg = await readFile(join(root.path, 'boot/grub/grub.cfg'), 'utf8')
          expect(grubCfg).toContain(`root=UUID=${rootUuid}`)
          expect(existsSync(join(root.path, 'boot/grub/i386-pc/core.img'))).toBe(true)
          expect(existsSync(join(root.path, 'tmp/post-install'))).toBe(false)
          expect(
            JSON.parse(await readFile(join(root.path, 'etc/imageswarm/installed.json'), 'utf8')),
          ).toMatchObject({ image: 'bootable', serial: 1 })
          expect(existsSync(join(root.path, '.imageswarm-incomplete'))).toBe(false)
        } finally {
          await root.unmount()
        }
        expect(unexpectedDifferences(differences)).toEqual([])
        // And each thing written on purpose was written.
        for (const { path } of WRITTEN_ON_PURPOSE) {
          expect(
            differences.some((line) => line.startsWith(`"${path}": `)),
            `${name}: ${path} differs from the image`,
          ).toBe(true)
        }
        expect(differences.filter((line) => GRUB_FILES.test(line.slice(1))).length).toBeGreaterThan(
          0,
        )
        const grubLines = differences.filter((line) => line.startsWith('"boot/grub/'))
        const summary = `${differences.length} differences from the image, all written on purpose: ${grubLines.length} under boot/grub/ (GRUB's modules, core.img, grub.cfg, grubenv), and\n    ${differences
          .filter((line) => !grubLines.includes(line))
          .join('\n    ')}\n  install: ${install
          .filter((text) => text.startsWith('imageswarm:'))
          .filter((text) =>
            /downloaded in|extracted into|GRUB installed|installed image/.test(text),
          )
          .join('\n    ')}\n  first download from peers: ${fromPeers}`
        return { vm, rootUuid, firstDownload: fromPeers, summary }
      }

      /** Boots the installed system from the node's own disk to multi-user.target. */
      async function bootInstalled(vm: Vm, rootUuid: string) {
        const mark = await vm.consoleMark()
        await vm.start({ device: 'disk' })
        await vm.waitForConsole(new RegExp(`^IMAGESWARM-BOOTED ${vm.name}$`), {
          timeoutMs: BOOT_TIMEOUT_MS,
          from: mark,
        })
        const lines = vm.console.lines.slice(mark).map((line) => line.text)
        expect(
          lines.some((text) => /GNU GRUB|Booting `Debian/.test(text)),
          'GRUB from the disk',
        ).toBe(true)
        expect(lines.some((text) => text.includes(`root=UUID=${rootUuid}`))).toBe(true)
        expect(lines.some((text) => /Reached target .*Multi-User System/.test(text))).toBe(true)
      }
    },
    2 * INSTALL_TIMEOUT_MS + BOOT_TIMEOUT_MS,
  )

  /**
   * A node that must fail: it says the error on its console, /init powers it off
   * (imageswarm.on-failure=poweroff), the dashboard has it failed with the code, and it
   * never says it installed.
   */
  async function expectFailure(
    expect: ExpectStatic,
    vm: Vm,
    failure: { image: string; code: string; exit: number; lines: RegExp[] },
  ): Promise<string[]> {
    await vm.waitForConsole(/^imageswarm: \[[\d.]+\] powering off$/, {
      timeoutMs: FAILURE_TIMEOUT_MS,
    })
    expect(await vm.waitForPowerOff({ timeoutMs: 60_000 })).toBe('guest-shutdown')
    const lines = vm.console.lines.map((line) => line.text)
    for (const pattern of [
      ...failure.lines,
      new RegExp(`^imageswarm: \\[[\\d.]+\\] FAILED: the installer exited with ${failure.exit}: `),
    ]) {
      expect(
        lines.some((text) => pattern.test(text)),
        `${vm.name}: console line ${pattern}\n${vm.console.tail(20)}`,
      ).toBe(true)
    }
    expect(lines.some((text) => /installed image/.test(text))).toBe(false)
    const mine = (await dashboard(failure.image)).filter((entry) => entry.node === vm.name)
    expect(mine, JSON.stringify(mine)).toHaveLength(1)
    expect(mine[0]).toMatchObject({ state: 'failed', error: { code: failure.code } })
    return lines.filter((text) => text.startsWith('imageswarm:'))
  }

  /**
   * Whether nothing was written to the disk image: no block allocated but the first 4 KiB,
   * which qemu-img allocates itself (zeros, for QEMU's alignment probing), and those zeros.
   */
  async function untouched(path: string): Promise<boolean> {
    if ((await stat(path)).blocks * 512 > 4096) return false
    const disk = await open(path, 'r')
    try {
      const { buffer } = await disk.read(Buffer.alloc(4096), 0, 4096, 0)
      return buffer.every((byte) => byte === 0)
    } finally {
      await disk.close()
    }
  }

  it.concurrent(
    'a layout naming a disk the node does not have: E_DISK_MISSING listing its disks, nothing written, never installed',
    async ({ expect }) => {
      await slots.use(1, async () => {
        // SystemImager 4's names.
        const host = (net as TestNetwork).hostAddress
        const vm = await directBootVm(node('node3'), [`IMAGESERVER=${host}`, 'IMAGENAME=bootable'])
        const said = await expectFailure(expect, vm, {
          image: 'bootable',
          code: 'E_DISK_MISSING',
          exit: 14,
          lines: [
            /^imageswarm: \[[\d.]+\] node config: host name node3, groups rack2, layout node3(\.xml)?, overrides none, 1 post-install scripts$/,
            /^imageswarm: \[[\d.]+\] error E_DISK_MISSING: the disk layout names \/dev\/vdb, which this node does not have; its disks: (\/dev\/)?vda \(4\.0 GiB\)$/,
            /^imageswarm: \[[\d.]+\] {3}hint: fix the disk names in the layout/,
          ],
        })
        expect(await untouched(vm.diskPath)).toBe(true)
        console.log(`node3 (disk missing):\n${said.join('\n')}`)
      })
    },
    FAILURE_TIMEOUT_MS + 120_000,
  )

  it.concurrent(
    'a disk too small for its layout: E_DISK_TOO_SMALL with the sizes, nothing written, never installed',
    async ({ expect }) => {
      await slots.use(1, async () => {
        // SystemImager 5's names.
        const host = (net as TestNetwork).hostAddress
        const vm = await directBootVm(node('node4'), [
          `si.image-server=${host}`,
          'si.image-name=bootable',
        ])
        const said = await expectFailure(expect, vm, {
          image: 'bootable',
          code: 'E_DISK_TOO_SMALL',
          exit: 14,
          lines: [
            /^imageswarm: \[[\d.]+\] error E_DISK_TOO_SMALL: disk \/dev\/vda has 4096 MiB \(4294967296 bytes\); its layout needs at least 6147 MiB: partitions 1: 1 MiB, 2: 6144 MiB and 1 MiB at each end for the gpt label$/,
            /^imageswarm: \[[\d.]+\] {3}hint: give the node a larger disk, or make the layout fit/,
          ],
        })
        expect(await untouched(vm.diskPath)).toBe(true)
        console.log(`node4 (disk too small):\n${said.join('\n')}`)
      })
    },
    FAILURE_TIMEOUT_MS + 120_000,
  )

  it.concurrent(
    'an image without a kernel: E_IMAGE_NOT_BOOTABLE naming it, the boot area untouched, never installed',
    async ({ expect }) => {
      await slots.use(1, async () => {
        // imageswarm's own names.
        const vm = await directBootVm(node('node5'), [
          `imageswarm.server=${serverUrl}`,
          'imageswarm.image=nokernel',
        ])
        const said = await expectFailure(expect, vm, {
          image: 'nokernel',
          code: 'E_IMAGE_NOT_BOOTABLE',
          exit: 15,
          lines: [
            /^imageswarm: \[[\d.]+\] extracted into \/a in [\d.]+ s$/,
            /^imageswarm: \[[\d.]+\] error E_IMAGE_NOT_BOOTABLE: image nokernel cannot boot this node: it has no kernel \(\/boot\/vmlinuz-\*\)$/,
            /^imageswarm: \[[\d.]+\] {3}hint: add to the image: a kernel package \(Debian linux-image-amd64, RHEL kernel\); then republish it$/,
            /FAILED: the installer exited with 15: the image cannot be made bootable$/,
          ],
        })
        // GRUB never ran: the disk's boot code (the MBR's first 440 bytes) is still zeros.
        const disk = await open(vm.diskPath, 'r')
        try {
          const { buffer } = await disk.read(Buffer.alloc(440), 0, 440, 0)
          expect(buffer.every((byte) => byte === 0)).toBe(true)
        } finally {
          await disk.close()
        }
        console.log(`node5 (image without a kernel):\n${said.join('\n')}`)
      })
    },
    FAILURE_TIMEOUT_MS + 120_000,
  )

  it.concurrent(
    'the image server unreachable: the ramdisk loads its drivers and gets its lease, the installer retries, then says so and /init powers off',
    async ({ expect }) => {
      await slots.use(1, async () => {
        const network = net as TestNetwork
        const entry = node('node6')
        const manifest = JSON.parse(await readFile(join(boot, 'initrd.manifest.json'), 'utf8'))
        expect(manifest.contents.kernel.source).toMatchObject({
          kind: 'debian-package',
          requested: 'linux-image-cloud-amd64',
        })
        // Nothing listens on this port: the installer is told a server that is not there.
        // Booted from the ramdisk directly (a network boot needs the server).
        const unreachable = `http://${network.hostAddress}:6970`
        const connectTimeout = 10
        const vm = await directBootVm(entry, [
          `imageswarm.server=${unreachable}`,
          'imageswarm.image=bootable',
          `imageswarm.connect-timeout=${connectTimeout}`,
        ])
        await vm.waitForConsole(/^imageswarm: \[[\d.]+\] powering off$/, {
          timeoutMs: FAILURE_TIMEOUT_MS,
        })
        expect(await vm.waitForPowerOff({ timeoutMs: 60_000 })).toBe('guest-shutdown')
        const lines = vm.console.lines.map((line) => line.text)
        const line = (pattern: RegExp) => lines.find((text) => pattern.test(text))
        expect(
          line(
            /^imageswarm: \[[\d.]+\] installer ramdisk on kernel \d+\.\d+\.\d+-\d+-cloud-amd64, \d+ MiB memory, \d+ MiB available$/,
          ),
        ).toBeDefined()
        const drivers = line(/^imageswarm: \[[\d.]+\] drivers loaded: /) ?? ''
        for (const driver of ['virtio_pci', 'virtio_net', 'virtio_blk'])
          expect(drivers).toContain(` ${driver} `)
        expect(
          line(new RegExp(`^imageswarm: \\[[\\d.]+\\] DHCP on \\w+ \\(${entry.mac}\\)$`)),
        ).toBeDefined()
        expect(
          line(
            new RegExp(
              `^imageswarm: \\[[\\d.]+\\] address ${entry.ip.replaceAll('.', '\\.')}/24 on \\w+, router \\S+, host name ${entry.hostname}$`,
            ),
          ),
        ).toBeDefined()
        // The site's DHCP server gave it its fixed address and name.
        expect(
          dhcp
            .acks()
            .filter((ack) => ack.mac === entry.mac)
            .at(-1),
        ).toMatchObject({
          ip: entry.ip,
          hostname: entry.hostname,
        })
        expect(
          line(
            /^imageswarm: \[[\d.]+\] starting imageswarm-installer\.mjs with node v\d+\.\d+\.\d+$/,
          ),
        ).toBeDefined()
        const error = line(
          new RegExp(
            `^imageswarm: \\[[\\d.]+\\] error E_SERVER_UNREACHABLE: image server ${unreachable} did not answer within ${connectTimeout} s \\(.*ECONNREFUSED.*\\)$`,
          ),
        )
        expect(error, vm.console.tail(20)).toBeDefined()
        // It kept trying for the whole connect timeout (guest uptime, the console's clock):
        // the first request went out after "installing image", the error came after retries.
        const asked = stamp(lines, /installing image bootable from /) ?? Number.NaN
        const gaveUp = stamp(lines, /error E_SERVER_UNREACHABLE/) ?? Number.NaN
        expect(gaveUp - asked).toBeGreaterThanOrEqual(connectTimeout)
        expect(
          line(
            /^imageswarm: \[[\d.]+\] FAILED: the installer exited with 4: the image server is unreachable$/,
          ),
        ).toBeDefined()
        expect(
          line(/^imageswarm: \[[\d.]+\] will poweroff in 0 s \(imageswarm.on-failure=poweroff\)$/),
        ).toBeDefined()
        expect(line(/reboot: Power down/)).toBeDefined()
        expect(await untouched(vm.diskPath)).toBe(true)
        console.log(
          `node6 (server unreachable):\n${lines.filter((text) => text.startsWith('imageswarm:')).join('\n')}\n` +
            `initrd ${(manifest.initrd.bytes / 1e6).toFixed(1)} MB (${(manifest.contents.unpackedBytes / 1e6).toFixed(1)} MB unpacked); gave up ${(gaveUp - asked).toFixed(1)} s after the first request`,
        )
      })
    },
    FAILURE_TIMEOUT_MS + 120_000,
  )
})
