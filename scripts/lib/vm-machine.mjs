// @ts-check
// A QEMU virtual machine on the test network: q35, virtio NIC on a tap on the bridge (its
// ROM is iPXE), a sparse virtio disk, the serial console in a file, QMP for resets and
// power, and the boot device chosen by the harness at every (re)boot.
//
// Boot order. QEMU runs with -no-reboot: every reset, the guest's own reboot or a QMP
// system_reset, ends the QEMU process, and the harness starts it again with the boot device
// of its choice (same tap, disk and console file). So the choice is made while the guest is
// stopped, never racing the installer's reboot. A disk-first firmware order is not an
// option: once the installer has partitioned the disk, its protective MBR carries the boot
// signature with no boot code, and SeaBIOS hangs at "Booting from Hard Disk..." instead of
// falling back to the network (measured: 40 s, nothing more, with a GPT label written by
// sfdisk), so a node reset mid-install would never reinstall. `-boot strict=on` makes the
// firmware try only the device chosen: a failed network boot stops at "No bootable
// device." rather than booting a half-written disk.
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { copyFile, mkdir, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { FileTail } from './vm-console.mjs'
import { createDisk } from './vm-disk.mjs'
import { settlesWithin } from './vm-process.mjs'
import { connectQmp } from './vm-qmp.mjs'

/**
 * 'network': iPXE from the NIC's ROM (or the `kernel` given, booted directly) at every boot;
 * 'disk': the disk's boot loader; 'network-then-disk': the network until the guest reboots
 * itself (after `diskAfter` printed, if given), then the disk: the installer's flow.
 * @typedef {'network' | 'disk' | 'network-then-disk'} BootOrder
 */

/**
 * @typedef {object} VmOptions
 * @property {string} name also its directory under the network's
 * @property {string} mac e.g. 52:54:00:77:00:01
 * @property {number} [diskGiB] sparse raw disk size (default 4)
 * @property {string} [diskPath] use this disk instead of NAME/disk.img
 * @property {number} [memoryMiB] default 768
 * @property {BootOrder} [bootOrder] default 'network'
 * @property {RegExp} [diskAfter] with 'network-then-disk': switch to the disk only after a
 *   reboot whose boot printed this (the installer's success line); default: any guest reboot
 * @property {string} [kernel] boot this kernel directly where the order says network
 * @property {string} [initrd]
 * @property {string} [append] kernel command line
 * @property {'tcg' | 'kvm'} [accel] default 'tcg' (chooseAccelerator proves KVM first)
 * @property {'bios' | 'uefi'} [firmware] SeaBIOS (default) or OVMF (Debian's ovmf package),
 *   each with the NIC ROM's iPXE; under OVMF a kernel line needs `initrd=NAME` for the EFI stub
 * @property {number} [maxBoots] power-ons before the harness gives up on a reboot loop (8)
 * @property {string[]} [extraArgs] more QEMU arguments
 */

/**
 * One power-on of the VM: from QEMU's start to its exit.
 * @typedef {object} VmBoot
 * @property {number} number from 1
 * @property {'network' | 'disk'} device what the firmware booted
 * @property {number} startedAt ms since the epoch (QEMU started, guest about to run)
 * @property {number} firstLine index of this boot's first console line
 * @property {number} [endedAt]
 * @property {string} [endReason] QEMU's SHUTDOWN reason: guest-shutdown, guest-reset,
 *   host-qmp-system-reset, host-qmp-quit, host-signal, ... or how QEMU ended without one
 */

/** Debian's ovmf package: the firmware, and the variable store each VM gets a copy of. */
export const OVMF_CODE = '/usr/share/OVMF/OVMF_CODE_4M.fd'
export const OVMF_VARS = '/usr/share/OVMF/OVMF_VARS_4M.fd'

/**
 * QEMU's command line for one boot.
 * @param {{ name: string, mac: string, tap: string, diskPath: string, consolePath: string, qmpPath: string, memoryMiB: number, accel: string, device: 'network' | 'disk', uefiVars?: string, kernel?: string, initrd?: string, append?: string, extraArgs?: string[] }} config
 *   uefiVars: the VM's copy of OVMF's variable store (boots OVMF instead of SeaBIOS)
 */
export function qemuArgs(config) {
  const direct = config.device === 'network' && config.kernel
  return [
    '-name',
    config.name,
    // graphics=off makes SeaBIOS copy its screen (and iPXE's) to the serial port.
    '-machine',
    `q35,accel=${config.accel},graphics=off`,
    '-m',
    String(config.memoryMiB),
    '-smp',
    '1',
    '-nodefaults',
    '-no-user-config',
    '-display',
    'none',
    ...(config.uefiVars
      ? [
          '-drive',
          `if=pflash,format=raw,readonly=on,file=${OVMF_CODE}`,
          '-drive',
          `if=pflash,format=raw,file=${config.uefiVars}`,
        ]
      : []),
    // append=on: the console of every boot of this VM goes into one file, in order.
    '-chardev',
    `file,id=serial0,path=${config.consolePath},append=on`,
    '-serial',
    'chardev:serial0',
    // wait=on: the guest starts only once the harness is connected and can see every event.
    '-qmp',
    `unix:${config.qmpPath},server=on,wait=on`,
    '-netdev',
    `tap,id=net0,ifname=${config.tap},script=no,downscript=no`,
    '-device',
    `virtio-net-pci,netdev=net0,mac=${config.mac}${config.device === 'network' && !direct ? ',bootindex=1' : ''}`,
    // cache=unsafe drops only the host's fsync on guest flushes: the guest's writes still
    // reach the file (the host's page cache) before QEMU exits.
    '-drive',
    `file=${config.diskPath},if=none,id=disk0,format=raw,cache=unsafe,discard=unmap`,
    '-device',
    `virtio-blk-pci,drive=disk0${config.device === 'disk' ? ',bootindex=1' : ''}`,
    '-boot',
    'strict=on',
    '-no-reboot',
    ...(direct
      ? [
          '-kernel',
          /** @type {string} */ (config.kernel),
          ...(config.initrd ? ['-initrd', config.initrd] : []),
          '-append',
          config.append ?? '',
        ]
      : []),
    ...(config.extraArgs ?? []),
  ]
}

/**
 * Creates the VM's disk (if it has none) and tap, and powers it on.
 * @example
 *   const vm = await startVm(net, { name: 'node1', mac: '52:54:00:77:00:01' })
 *   await vm.waitForConsole(/Run \/init/, { timeoutMs: 120_000 })
 *   await vm.stop()
 * @param {import('./vm-network.mjs').TestNetwork} network
 * @param {VmOptions} options
 */
export async function startVm(network, options) {
  const vm = new VirtualMachine(network, options)
  await vm.prepare()
  await vm.start()
  return vm
}

export class VirtualMachine {
  /** @type {VmBoot[]} */
  boots = []
  #network
  #options
  #tap = ''
  /** @type {import('./vm-process.mjs').ManagedProcess | undefined} */
  #qemu
  /** @type {import('./vm-qmp.mjs').QmpClient | undefined} */
  #qmp
  /** @type {'network' | 'disk'} */
  #device
  #stopping = false
  /** @type {string | undefined} */
  #offReason = 'not started'
  /** @type {{ promise: Promise<string>, resolve: (reason: string) => void }} */
  #poweredOff
  /** @type {Promise<void> | undefined} */
  #transition
  /** @type {((boot: VmBoot) => void)[]} */
  #bootListeners = []

  /**
   * @param {import('./vm-network.mjs').TestNetwork} network
   * @param {VmOptions} options
   */
  constructor(network, options) {
    this.#network = network
    this.#options = options
    this.name = options.name
    this.mac = options.mac.toLowerCase()
    this.dir = join(network.dir, options.name)
    this.diskPath = options.diskPath ?? join(this.dir, 'disk.img')
    this.consolePath = join(this.dir, 'console.log')
    this.qmpPath = join(this.dir, 'qmp.sock')
    this.accel = options.accel ?? 'tcg'
    this.firmware = options.firmware ?? 'bios'
    this.uefiVars = this.firmware === 'uefi' ? join(this.dir, 'OVMF_VARS.fd') : undefined
    this.bootOrder = options.bootOrder ?? 'network'
    this.#device = this.bootOrder === 'disk' ? 'disk' : 'network'
    this.console = new FileTail(this.consolePath)
    this.#poweredOff = deferred()
    this.#poweredOff.resolve('not started')
  }

  async prepare() {
    await mkdir(this.dir, { recursive: true })
    if (!existsSync(this.diskPath)) await createDisk(this.diskPath, this.#options.diskGiB ?? 4)
    // The VM's own UEFI variables (boot entries the installer or OVMF write) last its life.
    if (this.uefiVars && !existsSync(this.uefiVars)) await copyFile(OVMF_VARS, this.uefiVars)
    this.#tap = await this.#network.addTap(this.name)
    this.#network.track({ describe: `VM ${this.name}`, stop: () => this.stop() })
  }

  /** QEMU's PID while the VM runs. */
  get pid() {
    return this.#qemu?.pid
  }

  /** The tap on the bridge (it outlives QEMU restarts). */
  get tap() {
    return this.#tap
  }

  /** What the firmware boots next (or is booting). */
  get device() {
    return this.#device
  }

  /** 'running', or 'off' with the reason (see VmBoot.endReason). */
  get state() {
    return this.#offReason === undefined ? 'running' : `off (${this.#offReason})`
  }

  get running() {
    return this.#offReason === undefined
  }

  /**
   * Powers the VM on (again), booting `device` (default: what the boot order says next).
   * @param {{ device?: 'network' | 'disk' }} [options]
   */
  async start(options = {}) {
    if (this.running) throw new Error(`VM ${this.name} is already running`)
    if (options.device) this.#device = options.device
    this.#stopping = false
    this.#poweredOff = deferred()
    this.console.follow()
    await this.#launch()
  }

  async #launch() {
    await rm(this.qmpPath, { force: true })
    // Everything in the console so far is from earlier boots (their QEMU has exited).
    await this.console.poll()
    const firstLine = this.console.lines.length
    const args = qemuArgs({
      name: this.name,
      mac: this.mac,
      tap: this.#tap,
      diskPath: this.diskPath,
      consolePath: this.consolePath,
      qmpPath: this.qmpPath,
      memoryMiB: this.#options.memoryMiB ?? 768,
      accel: this.accel,
      device: this.#device,
      uefiVars: this.uefiVars,
      kernel: this.#options.kernel,
      initrd: this.#options.initrd,
      append: this.#options.append,
      extraArgs: this.#options.extraArgs,
    })
    const qemu = await this.#network.spawn(`QEMU of VM ${this.name}`, 'qemu-system-x86_64', args)
    /** @type {import('./vm-qmp.mjs').QmpClient} */
    let qmp
    try {
      qmp = await connectQmp(this.qmpPath, { exited: qemu.exited, timeoutMs: 60_000 })
    } catch (error) {
      await qemu.stop()
      // Its last words (why it would not start) may still be in the pipe.
      await settlesWithin(once(qemu.child, 'close'), 2_000)
      this.#off(`QEMU did not start: ${qemu.recentOutput()}`)
      throw new Error(
        `VM ${this.name}: QEMU did not start: ${/** @type {Error} */ (error).message}\n${qemu.recentOutput()}`,
        { cause: error },
      )
    }
    /** @type {VmBoot} */
    const boot = {
      number: this.boots.length + 1,
      device: this.#device,
      startedAt: Date.now(),
      firstLine,
    }
    this.boots.push(boot)
    this.#qemu = qemu
    this.#qmp = qmp
    this.#offReason = undefined
    /** @type {string | undefined} */
    let shutdown
    qmp.onEvent((event) => {
      if (event.event === 'SHUTDOWN') shutdown = String(event.data?.reason ?? 'unknown')
    })
    for (const listener of this.#bootListeners) listener(boot)
    this.#transition = (async () => {
      const { code, signal } = await qemu.exited
      // QEMU's last event may still be in the socket when its exit is noticed.
      await settlesWithin(qmp.closed, 5_000)
      qmp.close()
      await this.console.poll()
      boot.endedAt = Date.now()
      boot.endReason =
        shutdown ?? `QEMU exited (${signal ?? `code ${code}`}) ${qemu.recentOutput(5)}`
      await this.#afterExit(boot)
    })()
  }

  /** @param {VmBoot} boot */
  async #afterExit(boot) {
    const reason = /** @type {string} */ (boot.endReason)
    const reset = reason === 'guest-reset' || reason === 'host-qmp-system-reset'
    if (this.#stopping || !reset) {
      this.#off(reason)
      return
    }
    if (this.boots.length >= (this.#options.maxBoots ?? 8)) {
      this.#off(`reset ${this.boots.length} times: the harness stops a reboot loop there`)
      return
    }
    if (
      reason === 'guest-reset' &&
      this.bootOrder === 'network-then-disk' &&
      this.#device === 'network'
    ) {
      const after = this.#options.diskAfter
      if (
        !after ||
        this.console.lines.slice(boot.firstLine).some((line) => after.test(line.text))
      ) {
        this.#device = 'disk'
      }
    }
    try {
      await this.#launch()
    } catch (error) {
      this.#off(`restart failed: ${/** @type {Error} */ (error).message}`)
    }
  }

  /** @param {string} reason */
  #off(reason) {
    this.#offReason = reason
    this.#qemu = undefined
    this.#qmp = undefined
    this.#poweredOff.resolve(reason)
  }

  /**
   * The index the next console line will have: pass it as `from` to wait for a line printed
   * after this point.
   */
  async consoleMark() {
    await this.console.poll()
    return this.console.lines.length
  }

  /**
   * The first console line from `from` on matching `pattern`. Rejects after `timeoutMs`, or
   * as soon as the VM is off for good, with the VM's state and its last console lines.
   * @param {RegExp} pattern
   * @param {{ timeoutMs: number, from?: number }} options
   */
  waitForConsole(pattern, options) {
    return this.console.waitFor(pattern, {
      ...options,
      describe: `VM ${this.name} (${this.accel}, ${this.state})`,
      abandon: this.#poweredOff.promise.then((reason) => `the VM powered off (${reason})`),
    })
  }

  /**
   * Waits until the VM is off for good (not restarting); resolves with the reason.
   * @param {{ timeoutMs: number }} options
   */
  async waitForPowerOff({ timeoutMs }) {
    if (await settlesWithin(this.#poweredOff.promise, timeoutMs)) return this.#poweredOff.promise
    throw new Error(
      `VM ${this.name} still ${this.state} after ${timeoutMs} ms; last console lines:\n${this.console.tail(25)}`,
    )
  }

  /**
   * Waits for power-on number `number` (1 is the first); resolves with it.
   * @param {number} number
   * @param {{ timeoutMs: number }} options
   * @returns {Promise<VmBoot>}
   */
  async waitForBoot(number, { timeoutMs }) {
    const existing = this.boots[number - 1]
    if (existing) return existing
    /** @type {(boot: VmBoot) => void} */
    let listener = () => {}
    /** @type {NodeJS.Timeout | undefined} */
    let timer
    const started = new Promise((resolve) => {
      listener = (boot) => {
        if (boot.number === number) resolve(boot)
      }
      this.#bootListeners.push(listener)
    })
    try {
      const outcome = await Promise.race([
        started,
        this.#poweredOff.promise.then((reason) => `the VM powered off (${reason})`),
        new Promise((resolve) => {
          timer = setTimeout(resolve, timeoutMs, `not within ${timeoutMs} ms`)
        }),
      ])
      if (typeof outcome === 'string') {
        throw new Error(`VM ${this.name}: no power-on number ${number}: ${outcome}`)
      }
      return /** @type {VmBoot} */ (outcome)
    } finally {
      clearTimeout(timer)
      this.#bootListeners = this.#bootListeners.filter((entry) => entry !== listener)
    }
  }

  /**
   * Resets the VM as its reset button would (QMP system_reset); it boots the same device
   * again. Resolves once the new boot has started.
   */
  async reset() {
    const qmp = this.#requireRunning('reset')
    const next = this.boots.length + 1
    // QEMU (-no-reboot) exits on the reset; its answer can be lost with the socket.
    await qmp.execute('system_reset').catch((error) => {
      if (!/closed QMP/.test(error.message)) throw error
    })
    return this.waitForBoot(next, { timeoutMs: 60_000 })
  }

  /**
   * Presses the power button (ACPI): a guest that handles it shuts down cleanly.
   * @param {{ timeoutMs: number }} options
   */
  async powerdown({ timeoutMs }) {
    await this.#requireRunning('power down').execute('system_powerdown')
    return this.waitForPowerOff({ timeoutMs })
  }

  /**
   * The memory QEMU holds now (its resident set: guest RAM touched plus QEMU's own), in
   * bytes; undefined while the VM is off.
   */
  async residentBytes() {
    const pid = this.#qemu?.pid
    if (!pid) return undefined
    const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '')
    const kib = /^VmRSS:\s+(\d+) kB/m.exec(status)?.[1]
    return kib === undefined ? undefined : Number(kib) * 1024
  }

  /** QEMU's run state ('running', 'paused', 'shutdown', ...) or 'off'. */
  async powerState() {
    if (!this.#qmp) return 'off'
    const status = await this.#qmp.execute('query-status').catch(() => undefined)
    return status?.status ?? 'off'
  }

  /**
   * Pulls the plug: QMP quit, then SIGKILL if QEMU is still there after 10 s. Resolves once
   * QEMU has exited; the console stays readable.
   */
  async stop() {
    this.#stopping = true
    // A restart may be under way when this is called: its QEMU is stopped in the next round.
    for (let round = 0; round < 3 && this.running; round += 1) {
      const qemu = this.#qemu
      if (qemu?.running()) {
        await this.#qmp?.execute('quit', undefined, 10_000).catch(() => {})
        if (!(await settlesWithin(qemu.exited, 10_000))) await qemu.stop({ signal: 'SIGKILL' })
      }
      await this.#transition
    }
    if (this.running) this.#off('stopped')
    await this.console.stop()
  }

  /** @param {string} action */
  #requireRunning(action) {
    if (!this.#qmp) throw new Error(`cannot ${action} VM ${this.name}: it is ${this.state}`)
    return this.#qmp
  }
}

/** @returns {{ promise: Promise<string>, resolve: (reason: string) => void }} */
function deferred() {
  /** @type {(reason: string) => void} */
  let resolve = () => {}
  const promise = new Promise((done) => {
    resolve = done
  })
  return { promise, resolve }
}
