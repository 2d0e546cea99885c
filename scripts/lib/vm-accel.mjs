// @ts-check
// KVM or TCG. /dev/kvm can exist and even run the firmware while a Linux guest never gets
// past its real-mode setup: measured on this machine, SeaBIOS printed its whole POST under
// KVM, then the cloud kernel stopped after "Probing EDD" and printed nothing in 40 s (with
// -cpu host QEMU aborted at once: "failed to set MSR 0x10a"). So KVM is used only after a
// Linux kernel booted under it to /init within the probe's time; otherwise TCG.
import { constants } from 'node:fs'
import { access, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FileTail } from './vm-console.mjs'
import { buildInitramfs } from './vm-initramfs.mjs'
import { run, startProcess } from './vm-process.mjs'

const PROBE_MARKER = 'imageswarm-accel-probe: init reached'

/** @type {Map<string, Promise<{ accel: 'kvm' | 'tcg', reason: string }>>} */
const probes = new Map()

/**
 * The accelerator VMs should use, with the reason. Probed once per machine boot and kernel
 * (the answer is kept in the temporary directory); IMAGESWARM_VM_ACCEL=tcg|kvm decides
 * without a probe.
 * @example const { accel, reason } = await chooseAccelerator({ kernel: '/boot/vmlinuz' })
 * @param {{ kernel: string, timeoutMs?: number }} options
 *   timeoutMs: how long a KVM boot may take to reach /init (default 20 s; it takes under 2 s
 *   where KVM works, 2-4 s under TCG)
 * @returns {Promise<{ accel: 'kvm' | 'tcg', reason: string }>}
 */
export function chooseAccelerator(options) {
  const forced = process.env.IMAGESWARM_VM_ACCEL
  if (forced === 'tcg' || forced === 'kvm') {
    return Promise.resolve({ accel: forced, reason: `IMAGESWARM_VM_ACCEL=${forced}` })
  }
  let probe = probes.get(options.kernel)
  if (!probe) {
    probe = probeOnce(options)
    probes.set(options.kernel, probe)
  }
  return probe
}

/**
 * @param {{ kernel: string, timeoutMs?: number }} options
 * @returns {Promise<{ accel: 'kvm' | 'tcg', reason: string }>}
 */
async function probeOnce({ kernel, timeoutMs = 20_000 }) {
  try {
    await access('/dev/kvm', constants.R_OK | constants.W_OK)
  } catch {
    return { accel: 'tcg', reason: 'no usable /dev/kvm' }
  }
  const bootId = (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim()
  const { stdout: qemuVersion } = await run('qemu-system-x86_64', ['--version'])
  const kernelStat = await stat(kernel)
  const key = JSON.stringify([bootId, qemuVersion.split('\n')[0], kernel, kernelStat.size])
  const cachePath = join(tmpdir(), 'imageswarm-vm-accel.json')
  try {
    const cached = JSON.parse(await readFile(cachePath, 'utf8'))
    if (cached.key === key)
      return { accel: cached.accel, reason: `${cached.reason} (probed before)` }
  } catch {}
  const result = await probeKvm(kernel, timeoutMs)
  await writeFile(cachePath, JSON.stringify({ key, ...result }))
  return result
}

/**
 * Boots `kernel` under KVM with a tiny initramfs whose /init prints a marker.
 * @param {string} kernel
 * @param {number} timeoutMs
 * @returns {Promise<{ accel: 'kvm' | 'tcg', reason: string }>}
 */
async function probeKvm(kernel, timeoutMs) {
  const dir = await mkdtemp(join(tmpdir(), 'imageswarm-accel-'))
  try {
    const initrd = join(dir, 'probe.cpio')
    await buildInitramfs({
      output: initrd,
      init: `#!/bin/busybox sh\necho "${PROBE_MARKER}"\n/bin/busybox poweroff -f\n`,
    })
    const consolePath = join(dir, 'console.log')
    const qemu = await startProcess('QEMU (KVM probe)', 'qemu-system-x86_64', [
      '-machine',
      'q35,accel=kvm',
      '-m',
      '256',
      '-nodefaults',
      '-no-user-config',
      '-display',
      'none',
      '-serial',
      `file:${consolePath}`,
      '-kernel',
      kernel,
      '-initrd',
      initrd,
      '-append',
      'console=ttyS0 panic=-1',
      '-no-reboot',
    ])
    const serial = new FileTail(consolePath)
    /** @type {string | undefined} */
    let exit
    const exited = qemu.exited.then(({ code, signal }) => {
      exit = `QEMU exited under KVM (${signal ?? code}): ${qemu.recentOutput(2)}`
      return exit
    })
    try {
      await serial.waitFor(new RegExp(PROBE_MARKER), { timeoutMs, abandon: exited })
      return { accel: 'kvm', reason: 'a kernel booted to /init under KVM' }
    } catch {
      return {
        accel: 'tcg',
        reason:
          exit ?? `a kernel under KVM did not reach /init within ${Math.round(timeoutMs / 1000)} s`,
      }
    } finally {
      await qemu.stop({ signal: 'SIGKILL' })
      await serial.stop()
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}
