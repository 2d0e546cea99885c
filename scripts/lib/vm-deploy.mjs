// @ts-check
// A whole deployment on the VM harness, as the VM demo and the VM benchmark run it: the
// installer ramdisk, a copy of the bootable test image that says when it has booted,
// `imageswarm serve` on the test network, and N VMs that network-boot the installer,
// install over the swarm (or over plain HTTP), reboot from their disks and boot the
// installed system. What each node did, and when, is read back from its serial console.
//
//   const net = await createTestNetwork()
//   const image = await prepareBootableImage(BOOTABLE_ROOT, join(work, 'images', 'bootable'))
//   const boot = await buildRamdisk(join(work, 'boot'))
//   const server = await serveImages(net, { dir: work, images: ['bootable'], bootDir: boot })
//   const nodes = await deployNodes(net, { nodes: planNodes(net, 3), timeoutMs: 1_800_000 })
import { execFile } from 'node:child_process'
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises'
import { cpus } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { CLI, startServer } from './deployment.mjs'
import { parseBootStages } from './vm-boot-stages.mjs'
import { startVm } from './vm-machine.mjs'

const exec = promisify(execFile)

/** The bootable test root (scripts/make-debian-root.sh --bootable, scripts/setup.sh --test). */
export const BOOTABLE_ROOT_DEFAULT =
  process.env.IMAGESWARM_BOOTABLE_ROOT ?? '/var/cache/imageswarm-tests/bookworm-bootable'

/** The program /init runs (`pnpm build`). */
export const INSTALLER_BUNDLE = fileURLToPath(
  new URL('../../packages/cli/dist/imageswarm-installer.mjs', import.meta.url),
)

/** The line the installed system prints on its serial console once at multi-user.target. */
export const BOOTED_LINE = /^IMAGESWARM-BOOTED (\S+)$/

/** A oneshot unit, after multi-user.target: says on the serial console that the node is up. */
const BOOTED_UNIT = `[Unit]
Description=Say on the serial console that the installed system reached multi-user.target
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo "IMAGESWARM-BOOTED $(hostname)" >/dev/ttyS0'

[Install]
WantedBy=multi-user.target
`

/**
 * Copies a bootable root (scripts/make-debian-root.sh --bootable) to `dest` and enables the
 * unit that prints `IMAGESWARM-BOOTED HOSTNAME` on ttyS0. `padMiB` adds a file of that many
 * MiB of random bytes (`/var/lib/imageswarm-bench/padding`), which no compressor shrinks:
 * a larger archive for the benchmark without more files to extract.
 * @param {string} source
 * @param {string} dest
 * @param {{ padMiB?: number }} [options]
 */
export async function prepareBootableImage(source, dest, options = {}) {
  await mkdir(join(dest, '..'), { recursive: true })
  await exec('cp', ['-a', source, dest], { timeout: 300_000 })
  await writeFile(join(dest, 'etc/systemd/system/imageswarm-booted.service'), BOOTED_UNIT)
  await symlink(
    '/etc/systemd/system/imageswarm-booted.service',
    join(dest, 'etc/systemd/system/multi-user.target.wants/imageswarm-booted.service'),
  )
  if (options.padMiB) {
    await mkdir(join(dest, 'var/lib/imageswarm-bench'), { recursive: true })
    await exec(
      'dd',
      [
        'if=/dev/urandom',
        `of=${join(dest, 'var/lib/imageswarm-bench/padding')}`,
        'bs=1M',
        `count=${options.padMiB}`,
        'status=none',
      ],
      { timeout: 300_000 },
    )
  }
  return dest
}

/**
 * `imageswarm initrd --output DIR` with the whole installer; resolves with DIR.
 * @param {string} dir
 */
export async function buildRamdisk(dir) {
  await exec(
    process.execPath,
    [CLI, 'initrd', '--output', dir, '--installer-bundle', INSTALLER_BUNDLE],
    {
      timeout: 600_000,
      maxBuffer: 16 << 20,
    },
  )
  return dir
}

/**
 * `imageswarm serve` on the network's bridge (port 6969), handing out `bootDir`'s kernel and
 * ramdisk; stopped at the network's teardown (or by `stop()`). Resolves once every image is
 * published.
 * @param {import('./vm-network.mjs').TestNetwork} network
 * @param {{ dir: string, images: string[], bootDir: string, bootAppend?: string, uploadLimit?: string, keys?: string, scriptsDir?: string, overridesDir?: string, onLog?: (record: any) => void }} options
 *   dir holds images/ (the roots), and gets tarballs/, torrents/ and serve.pid; keys signs
 *   the manifests and node configs (serve --keys)
 */
export async function serveImages(network, options) {
  await mkdir(join(options.dir, 'tarballs'), { recursive: true })
  await mkdir(join(options.dir, 'torrents'), { recursive: true })
  const server = await startServer({
    netns: network.namespace,
    address: network.hostAddress,
    port: 6969,
    images: options.images,
    imagesDir: join(options.dir, 'images'),
    tarballsDir: join(options.dir, 'tarballs'),
    torrentsDir: join(options.dir, 'torrents'),
    pidFile: join(options.dir, 'serve.pid'),
    bootDir: options.bootDir,
    scriptsDir: options.scriptsDir ?? join(options.dir, 'scripts'),
    overridesDir: options.overridesDir ?? join(options.dir, 'overrides'),
    ...(options.bootAppend ? { bootAppend: options.bootAppend } : {}),
    args: [
      ...(options.uploadLimit ? ['--upload-limit', options.uploadLimit] : []),
      ...(options.keys ? ['--keys', options.keys] : []),
    ],
    readyTimeoutMs: 900_000,
    onLog: options.onLog,
  })
  const resource = network.track({
    describe: 'imageswarm serve',
    stop: async () => void (await server.stop()),
  })
  return {
    ...server,
    url: `http://${network.hostAddress}:6969`,
    async stop() {
      network.untrack(resource)
      await server.stop()
    },
  }
}

/**
 * The stages of one node's deployment, in order, each from the console line that starts it
 * to the one that starts the next (host clock, ms since the epoch):
 * firmware and PXE (power-on → the kernel's banner), the ramdisk (kernel, /init, drivers,
 * DHCP, node starting the installer), partitioning (manifest, node config, disks), download,
 * verification (sha256), extraction, configuration (fstab, host name, overrides), the
 * bootloader (grub-install, grub-mkconfig), post-install and seeding until done, the reboot
 * (to SeaBIOS booting the disk), and the installed system's boot (GRUB, kernel, systemd, to
 * the unit's line).
 */
export const DEPLOY_STAGES = /** @type {const} */ ([
  'firmware-pxe',
  'ramdisk',
  'partitioning',
  'download',
  'verify',
  'extract',
  'configure',
  'bootloader',
  'seeding',
  'reboot',
  'boot',
])

/**
 * @typedef {object} NodeTimeline
 * @property {string} node
 * @property {number} poweredOn ms since the epoch
 * @property {number | undefined} booted when the installed system said it was up
 * @property {{ stage: typeof DEPLOY_STAGES[number], start: number, end: number }[]} stages
 *   only those whose start and end were both seen
 * @property {{ downloadSeconds?: number, fromPeersMiB?: number, fromServerMiB?: number, uploadedMiB?: number, installSeconds?: number }} installer
 *   from the installer's own lines
 * @property {string | undefined} failure the installer's error line, if it failed
 */

/**
 * Reads a node's deployment from its console and power-ons: the first network boot that
 * installed, and the disk boot after it.
 * @param {string} node
 * @param {readonly { t: number, text: string }[]} lines
 * @param {readonly import('./vm-machine.mjs').VmBoot[]} boots
 * @returns {NodeTimeline}
 */
export function deploymentTimeline(node, lines, boots) {
  const timeline = parseBootStages(lines, boots)
  const install = timeline.find((boot) => boot.device === 'network') ?? timeline[0]
  const disk = timeline.find((boot) => boot.device === 'disk')
  const installLines = install?.installer ?? []
  const at = (/** @type {RegExp} */ pattern) => installLines.find((line) => pattern.test(line.text))
  const downloaded = at(/ downloaded in /)
  const installed = at(/ installed image /)
  const diskLines = lines.slice(
    boots.find((boot) => boot.device === 'disk')?.firstLine ?? lines.length,
  )
  const booted = diskLines.find((line) => BOOTED_LINE.test(line.text))?.t
  const marks = [
    ['firmware-pxe', install?.startedAt],
    ['ramdisk', install?.stages.kernel],
    ['partitioning', at(/ installing image /)?.t],
    ['download', at(/ downloading from the swarm$/)?.t],
    ['verify', downloaded?.t],
    ['extract', at(/ extracting the image$/)?.t],
    ['configure', at(/ extracted into /)?.t],
    ['bootloader', at(/ installing GRUB /)?.t],
    ['seeding', at(/ GRUB installed/)?.t],
    ['reboot', installed?.t],
    ['boot', disk?.stages['disk-boot'] ?? disk?.stages.firmware],
    ['end', booted],
  ]
  /** @type {NodeTimeline['stages']} */
  const stages = []
  for (let index = 0; index < marks.length - 1; index += 1) {
    const [stage, start] = /** @type {[typeof DEPLOY_STAGES[number], number | undefined]} */ (
      marks[index]
    )
    const end = /** @type {number | undefined} */ (marks[index + 1]?.[1])
    if (start !== undefined && end !== undefined) stages.push({ stage, start, end })
  }
  const mib = (/** @type {string | undefined} */ text, /** @type {RegExp} */ pattern) => {
    const value = text && pattern.exec(text)?.[1]
    return value === undefined || value === '' ? undefined : Number(value)
  }
  return {
    node,
    poweredOn: install?.startedAt ?? boots[0]?.startedAt ?? 0,
    booted,
    stages,
    installer: {
      downloadSeconds: mib(downloaded?.text, /downloaded in ([\d.]+) s/),
      fromPeersMiB: mib(downloaded?.text, /([\d.]+) MiB from peers/),
      fromServerMiB: mib(downloaded?.text, /([\d.]+) MiB from the server/),
      uploadedMiB: mib(installed?.text, /([\d.]+) MiB uploaded\)/),
      installSeconds: mib(installed?.text, / in ([\d.]+) s \(/),
    },
    failure: installLines.find((line) => / error E_|FAILED: /.test(line.text))?.text,
  }
}

/**
 * Network-boots `nodes` at once, each into the installer and then, after the installer's
 * reboot, from its own disk, and waits until each has printed BOOTED_LINE (or failed, or
 * `timeoutMs` passed). Samples every QEMU's memory (resident set) and CPU time every 2 s.
 * The VMs keep running; stop them (or tear the network down) when done.
 * @param {import('./vm-network.mjs').TestNetwork} network
 * @param {{ nodes: { hostname: string, mac: string }[], memoryMiB?: number, diskGiB?: number, timeoutMs: number, onLine?: (node: string, line: { t: number, text: string }) => void }} options
 */
export async function deployNodes(network, options) {
  const started = Date.now()
  const vms = await Promise.all(
    options.nodes.map((node) =>
      startVm(network, {
        name: node.hostname,
        mac: node.mac,
        memoryMiB: options.memoryMiB ?? 768,
        diskGiB: options.diskGiB ?? 4,
        accel: 'tcg',
        bootOrder: 'network-then-disk',
        diskAfter: / installed image /,
        maxBoots: 3,
      }),
    ),
  )
  const usage = new ResourceSampler(vms)
  usage.start()
  /** @type {Map<string, number>} */
  const reported = new Map()
  const follow = setInterval(() => {
    for (const vm of vms) {
      const from = reported.get(vm.name) ?? 0
      for (const line of vm.console.lines.slice(from)) options.onLine?.(vm.name, line)
      reported.set(vm.name, vm.console.lines.length)
    }
  }, 500)
  try {
    const outcomes = await Promise.all(
      vms.map(async (vm) => {
        try {
          await vm.waitForConsole(BOOTED_LINE, {
            timeoutMs: Math.max(options.timeoutMs - (Date.now() - started), 1000),
          })
          return { vm, ok: true, error: undefined }
        } catch (error) {
          return { vm, ok: false, error: /** @type {Error} */ (error).message }
        }
      }),
    )
    return {
      started,
      vms,
      outcomes,
      usage: await usage.stop(),
      timelines: vms.map((vm) => deploymentTimeline(vm.name, vm.console.lines, vm.boots)),
    }
  } finally {
    clearInterval(follow)
    await usage.stop()
  }
}

/**
 * What the machine spent on the VMs: the peak resident set of each VM's QEMU (over all its
 * power-ons), the CPU seconds of all of them, and how busy the host's CPUs were
 * (/proc/stat), sampled every 2 s.
 */
export class ResourceSampler {
  /** @type {Map<string, number>} peak RSS by VM */
  peakRss = new Map()
  /** @type {Map<number, { vm: string, seconds: number }>} CPU seconds by QEMU PID (the last sample) */
  #cpuByPid = new Map()
  #vms
  /** @type {NodeJS.Timeout | undefined} */
  #timer
  /** @type {{ busy: number, total: number } | undefined} */
  #hostFrom
  /** @type {{ busy: number, total: number } | undefined} */
  #hostTo
  #startedAt = 0
  #endedAt = 0
  /** @type {Promise<void> | undefined} */
  #sampling

  /** @param {{ name: string, pid: number | undefined, residentBytes: () => Promise<number | undefined> }[]} [vms] */
  constructor(vms = []) {
    this.#vms = [...vms]
  }

  /**
   * Samples this VM too from now on.
   * @param {{ name: string, pid: number | undefined, residentBytes: () => Promise<number | undefined> }} vm
   */
  add(vm) {
    this.#vms.push(vm)
  }

  start() {
    this.#startedAt = Date.now()
    this.#sampling = this.#sample(true)
    this.#timer = setInterval(() => {
      this.#sampling = this.#sample(false)
    }, 2000)
  }

  /** @param {boolean} first */
  async #sample(first) {
    const host = await hostCpu()
    if (first) this.#hostFrom = host
    this.#hostTo = host
    for (const vm of this.#vms) {
      const rss = await vm.residentBytes()
      if (rss !== undefined)
        this.peakRss.set(vm.name, Math.max(this.peakRss.get(vm.name) ?? 0, rss))
      const pid = vm.pid
      if (pid) {
        const seconds = await processCpuSeconds(pid)
        if (seconds !== undefined) this.#cpuByPid.set(pid, { vm: vm.name, seconds })
      }
    }
  }

  /**
   * Stops sampling (once) and sums up.
   * @returns {Promise<{ seconds: number, cores: number, hostBusy: number, qemuCpuSeconds: number, cpuSeconds: Record<string, number>, peakRss: Record<string, number> }>}
   */
  async stop() {
    if (this.#timer) {
      clearInterval(this.#timer)
      this.#timer = undefined
      await this.#sampling
      await this.#sample(false)
      this.#endedAt = Date.now()
    }
    const from = this.#hostFrom
    const to = this.#hostTo
    /** @type {Map<string, number>} */
    const cpuByVm = new Map()
    for (const { vm, seconds } of this.#cpuByPid.values()) {
      cpuByVm.set(vm, (cpuByVm.get(vm) ?? 0) + seconds)
    }
    return {
      seconds: (this.#endedAt - this.#startedAt) / 1000,
      cores: cpus().length,
      // Share of all the host's CPU time that was busy (1 = every core busy all along).
      hostBusy:
        from && to && to.total > from.total ? (to.busy - from.busy) / (to.total - from.total) : 0,
      qemuCpuSeconds: [...this.#cpuByPid.values()].reduce((sum, entry) => sum + entry.seconds, 0),
      cpuSeconds: Object.fromEntries(cpuByVm),
      peakRss: Object.fromEntries(this.peakRss),
    }
  }
}

/** The host's CPU time, busy and in all, in clock ticks (/proc/stat's first line). */
async function hostCpu() {
  const text = await readFile('/proc/stat', 'utf8')
  const fields = (text.split('\n')[0] ?? '').trim().split(/\s+/).slice(1).map(Number)
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0)
  const total = fields.reduce((sum, value) => sum + value, 0)
  return { busy: total - idle, total }
}

/**
 * A process's CPU time (user + system), in seconds; undefined once it is gone.
 * @param {number} pid
 */
export async function processCpuSeconds(pid) {
  const text = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined)
  if (!text) return undefined
  // Fields after the command name (which may hold spaces) start after its closing ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ')
  // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
  return (Number(fields[11]) + Number(fields[12])) / 100
}
