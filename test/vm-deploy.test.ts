import { describe, expect, it } from 'vitest'
import { DEPLOY_STAGES, deploymentTimeline } from '../scripts/lib/vm-deploy.mjs'

/**
 * A node's console as the harness reads it (one line a second from t = 1000 s), from the
 * network boot into the installer to the installed system's line: the lines that date each
 * stage of the VM benchmark and the demo, with others between them.
 */
const CONSOLE = [
  'SeaBIOS (version 1.16.2-debian-1.16.2-1)',
  'iPXE (PCI 00:02.0) starting execution...ok',
  'net0: 10.77.0.11/255.255.255.0 gw 10.77.0.1',
  'http://10.77.0.1:6969/boot/ipxe... ok',
  'ipxe : 412 bytes [script]',
  '[    0.000000] Linux version 6.1.0-57-cloud-amd64 (debian-kernel@lists.debian.org)',
  '[    4.420000] Run /init as init process',
  'imageswarm: [4.43] installer ramdisk on kernel 6.1.0-57-cloud-amd64, 721 MiB memory, 482 MiB available',
  'imageswarm: [10.40] installing image bootable from http://10.77.0.1:6969 onto this node (BIOS, post action reboot)',
  'imageswarm: [14.60] partitioning /dev/vda (4096 MiB): gpt, vda1 1 MiB, vda2 4093 MiB',
  'imageswarm: [16.00] downloading from the swarm',
  'imageswarm: [26.00] downloaded in 10.0 s: 30.5 MiB from peers, 61.3 MiB from the server, 12.0 MiB uploaded',
  'imageswarm: [28.00] archive verified (sha256) in 2.0 s',
  'imageswarm: [28.01] extracting the image',
  'imageswarm: [60.00] extracted into /a in 32.0 s',
  'imageswarm: [60.10] wrote /etc/fstab (1 filesystems, by UUID)',
  'imageswarm: [61.00] installing GRUB for BIOS on /dev/vda',
  'imageswarm: [80.00] GRUB installed; /boot/grub/grub.cfg written by grub-mkconfig',
  'imageswarm: [82.00] installed image bootable on node1 in 72.0 s (layout default; 30.5 MiB from peers, 61.3 MiB from the server, 40.2 MiB uploaded)',
  'imageswarm: [82.01] rebooting into the installed system',
  '[   83.000000] reboot: Restarting system',
  // The second power-on: the disk.
  'SeaBIOS (version 1.16.2-debian-1.16.2-1)',
  'Booting from Hard Disk...',
  'GNU GRUB  version 2.06-13+deb12u1',
  '[    0.000000] Linux version 6.1.0-50-cloud-amd64',
  '[  OK  ] Reached target multi-user.target - Multi-User System.',
  'IMAGESWARM-BOOTED node1',
  'node1 login:',
].map((text, index) => ({ index, t: 1_000_000 + index * 1000, text }))

const BOOTS: {
  number: number
  device: 'network' | 'disk'
  startedAt: number
  firstLine: number
  endedAt?: number
  endReason?: string
}[] = [
  {
    number: 1,
    device: 'network',
    startedAt: 999_500,
    firstLine: 0,
    endedAt: 1_020_500,
    endReason: 'guest-reset',
  },
  { number: 2, device: 'disk', startedAt: 1_021_000, firstLine: 21 },
]

describe('reading a deployment from a node’s console', () => {
  it('dates every stage from power-on to the installed system, in order and back to back', () => {
    const timeline = deploymentTimeline('node1', CONSOLE, BOOTS)
    expect(timeline.stages.map((stage) => stage.stage)).toEqual([...DEPLOY_STAGES])
    const at = (line: number) => 1_000_000 + line * 1000
    expect(timeline.stages.map((stage) => [stage.stage, stage.start, stage.end])).toEqual([
      ['firmware-pxe', 999_500, at(5)],
      ['ramdisk', at(5), at(8)],
      ['partitioning', at(8), at(10)],
      ['download', at(10), at(11)],
      ['verify', at(11), at(13)],
      ['extract', at(13), at(14)],
      ['configure', at(14), at(16)],
      ['bootloader', at(16), at(17)],
      ['seeding', at(17), at(18)],
      ['reboot', at(18), at(22)],
      ['boot', at(22), at(26)],
    ])
    expect(timeline.poweredOn).toBe(999_500)
    expect(timeline.booted).toBe(at(26))
    expect(timeline.installer).toEqual({
      downloadSeconds: 10,
      fromPeersMiB: 30.5,
      fromServerMiB: 61.3,
      uploadedMiB: 40.2,
      installSeconds: 72,
    })
    expect(timeline.failure).toBeUndefined()
  })

  it('keeps the stages it saw and the installer’s error when a node fails', () => {
    const failed = [
      ...CONSOLE.slice(0, 9),
      {
        index: 9,
        t: 1_009_000,
        text: 'imageswarm: [14.00] error E_DISK_MISSING: the disk layout names /dev/vdb, which this node does not have; its disks: vda (4.0 GiB)',
      },
      {
        index: 10,
        t: 1_010_000,
        text: 'imageswarm: [15.00] FAILED: the installer exited with 14: the disks do not fit the layout, or partitioning failed',
      },
    ]
    const timeline = deploymentTimeline('node3', failed, [
      { number: 1, device: 'network', startedAt: 999_500, firstLine: 0 },
    ])
    expect(timeline.stages.map((stage) => stage.stage)).toEqual(['firmware-pxe', 'ramdisk'])
    expect(timeline.booted).toBeUndefined()
    expect(timeline.failure).toMatch(/error E_DISK_MISSING: the disk layout names \/dev\/vdb/)
  })
})
