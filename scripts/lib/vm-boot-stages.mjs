// @ts-check
// When each stage of a node's boot began, read from its serial console: firmware, iPXE,
// DHCP, the kernel, /init, the installer's own lines (`imageswarm: ...`), the reboot, the
// boot loader and the deployed system reaching multi-user.target. The benchmark turns these
// into per-stage durations; times are when the harness read each line (within 100 ms).

/**
 * The console lines that mark a stage's start, in the order they appear in one boot. The
 * first line matching a stage's pattern in a boot dates the stage.
 * @type {readonly { stage: string, pattern: RegExp }[]}
 */
export const BOOT_STAGES = [
  // SeaBIOS, also on the serial port with -machine graphics=off.
  { stage: 'firmware', pattern: /^SeaBIOS \(version / },
  // OVMF (UEFI) prints nothing of its own before it starts a boot option.
  { stage: 'uefi-boot-option', pattern: /^BdsDxe: starting / },
  // iPXE from the NIC's option ROM (Debian's ipxe-qemu); under OVMF only its banner shows.
  {
    stage: 'ipxe',
    pattern:
      /iPXE \(PCI [^)]*\) starting execution|iPXE initialising devices|^iPXE \S+ -- Open Source Network Boot Firmware/,
  },
  // iPXE's "net0: 10.77.0.11/255.255.255.0 gw 10.77.0.1" once DHCP is done.
  { stage: 'dhcp', pattern: /^net\d+: \d+\.\d+\.\d+\.\d+\// },
  // iPXE fetched the boot script ("ipxe : 412 bytes [script]").
  { stage: 'boot-script', pattern: / : \d+ bytes \[script\]/ },
  // SeaBIOS hands over to the disk's boot loader.
  { stage: 'disk-boot', pattern: /Booting from Hard Disk/ },
  { stage: 'grub', pattern: /GNU GRUB|Booting `/ },
  // The kernel's banner (it may follow other text on the line: iPXE does not end its last).
  { stage: 'kernel', pattern: /Linux version \d/ },
  { stage: 'init', pattern: /Run \/init as init process/ },
  { stage: 'installer', pattern: /^imageswarm: / },
  { stage: 'systemd', pattern: /systemd\[1\]: .*running in system mode|Welcome to .*Debian/ },
  { stage: 'multi-user', pattern: /Reached target .*Multi-User System/ },
  { stage: 'kernel-reboot', pattern: /reboot: (Restarting system|Power down)/ },
]

/**
 * @typedef {object} BootTimeline
 * @property {number} number power-on number, from 1
 * @property {string | undefined} device 'network' or 'disk', when the harness knows
 * @property {number} startedAt ms since the epoch
 * @property {number | undefined} endedAt
 * @property {string | undefined} endReason
 * @property {Record<string, number>} stages stage → first time seen (ms since the epoch)
 * @property {{ t: number, text: string }[]} installer every `imageswarm:` line, in order
 */

/**
 * Splits a console into boots and dates each boot's stages. `boots` are the harness's
 * power-ons (VirtualMachine.boots); without them, each SeaBIOS banner starts a boot.
 * @example
 *   const [install, deployed] = parseBootStages(vm.console.lines, vm.boots)
 *   const download = install.stages['multi-user'] - install.stages.init
 * @param {readonly { index?: number, t: number, text: string }[]} lines
 * @param {readonly { number: number, device?: string, startedAt: number, firstLine: number, endedAt?: number, endReason?: string }[]} [boots]
 * @returns {BootTimeline[]}
 */
export function parseBootStages(lines, boots) {
  const starts =
    boots && boots.length > 0
      ? boots
      : lines.flatMap((line, index) =>
          /^SeaBIOS \(version /.test(line.text)
            ? [{ number: 0, startedAt: line.t, firstLine: index }]
            : [],
        )
  return starts.map((boot, position) => {
    const end = starts[position + 1]?.firstLine ?? lines.length
    /** @type {Record<string, number>} */
    const stages = {}
    /** @type {{ t: number, text: string }[]} */
    const installer = []
    for (const line of lines.slice(boot.firstLine, end)) {
      for (const { stage, pattern } of BOOT_STAGES) {
        if (stages[stage] === undefined && pattern.test(line.text)) stages[stage] = line.t
      }
      if (/^imageswarm: /.test(line.text)) installer.push({ t: line.t, text: line.text })
    }
    return {
      number: boot.number || position + 1,
      device: 'device' in boot ? boot.device : undefined,
      startedAt: boot.startedAt,
      endedAt: 'endedAt' in boot ? boot.endedAt : undefined,
      endReason: 'endReason' in boot ? boot.endReason : undefined,
      stages,
      installer,
    }
  })
}

/**
 * Seconds from power-on to each stage of a boot, in the order they happened.
 * @param {BootTimeline} boot
 * @returns {{ stage: string, seconds: number }[]}
 */
export function stageOffsets(boot) {
  return Object.entries(boot.stages)
    .sort((a, b) => a[1] - b[1])
    .map(([stage, t]) => ({ stage, seconds: Math.round((t - boot.startedAt) / 100) / 10 }))
}
