import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { EXIT_CODES } from '@imageswarm/core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const execFileAsync = promisify(execFile)
const ASSETS = fileURLToPath(new URL('../ramdisk/', import.meta.url))
const LIB = join(ASSETS, 'imageswarm-lib.sh')

/**
 * Runs `script` after sourcing imageswarm-lib.sh in busybox sh (the ramdisk's shell), with
 * `cmdline` as the kernel command line. Rebooting, powering off, the shell and sleeping
 * print a word instead, so what the library decided shows in the output.
 */
async function runLib(dir: string, cmdline: string, script: string, lib = dir): Promise<string> {
  const cmdlineFile = join(dir, 'cmdline')
  await writeFile(cmdlineFile, `${cmdline}\n`)
  const prelude = [
    `. '${LIB}'`,
    'imageswarm_reboot() { echo REBOOT; exit 0; }',
    'imageswarm_poweroff() { echo POWEROFF; exit 0; }',
    'imageswarm_shell() { echo SHELL; }',
    'sleep() { echo "SLEEP $1"; }',
  ].join('\n')
  const { stdout } = await execFileAsync('busybox', ['sh', '-c', `${prelude}\n${script}`], {
    env: { PATH: process.env.PATH, IMAGESWARM_CMDLINE: cmdlineFile, IMAGESWARM_LIB: lib },
  })
  return stdout
}

describe('the ramdisk scripts', () => {
  let dir: string
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'imageswarm-ramdisk-scripts-'))
  })
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('parse as POSIX shell (busybox sh and dash)', async () => {
    for (const script of ['init', 'imageswarm-lib.sh', 'udhcpc.script']) {
      await execFileAsync('busybox', ['sh', '-n', join(ASSETS, script)])
      await execFileAsync('dash', ['-n', join(ASSETS, script)])
    }
  })

  it('read kernel parameters: the first name given wins, a bare name is 1, globs stay text', async () => {
    const out = await runLib(
      dir,
      'console=ttyS0 si.post-action=poweroff imageswarm.post-action=shell imageswarm.debug x=*',
      'cmdline_arg imageswarm.post-action si.post-action; cmdline_arg imageswarm.debug; cmdline_arg x; cmdline_arg missing || echo none',
    )
    expect(out.split('\n')).toEqual(['shell', '1', '*', 'none', ''])
  })

  it('read the boot NIC’s MAC from BOOTIF as iPXE and PXELINUX give it', async () => {
    const macOf = (cmdline: string) => runLib(dir, cmdline, 'bootif_mac || echo none')
    expect(await macOf('BOOTIF=52:54:00:AB:cd:01')).toBe('52:54:00:ab:cd:01\n')
    expect(await macOf('BOOTIF=01-52-54-00-ab-cd-01')).toBe('52:54:00:ab:cd:01\n')
    expect(await macOf('quiet')).toBe('none\n')
    // iPXE left its variable unexpanded (no net0): no MAC.
    // biome-ignore lint/suspicious/noTemplateCurlyInString: iPXE's syntax, not JavaScript's
    expect(await macOf('BOOTIF=${net0/mac}')).toBe('none\n')
  })

  it('reboot after a successful install unless told otherwise', async () => {
    expect(await runLib(dir, 'quiet', 'post_action')).toMatch(
      /post action: reboot\nimageswarm: \[[\d.]+\] rebooting\nREBOOT\n$/,
    )
  })

  it('take SystemImager 5’s si.post-action: shutdown powers off, directboot reboots and says so', async () => {
    expect(await runLib(dir, 'si.post-action=shutdown', 'post_action')).toMatch(
      /post action: poweroff\n.*\nPOWEROFF\n$/,
    )
    const directboot = await runLib(dir, 'si.post-action=directboot', 'post_action')
    expect(directboot).toContain(
      'post action directboot: imageswarm reboots into the installed system instead',
    )
    expect(directboot).toMatch(/REBOOT\n$/)
  })

  it('open a shell on failure by default, and reboot when it is left', async () => {
    const out = await runLib(dir, '', 'fail "no network"')
    expect(out).toContain('FAILED: no network')
    expect(out).toMatch(
      /opening a shell \(imageswarm.on-failure=shell\); leave it to reboot\nSHELL\n.*rebooting\nREBOOT\n$/,
    )
  })

  it('power off or reboot on failure after imageswarm.failure-delay, 60 s unless it is a number', async () => {
    const off = await runLib(
      dir,
      'imageswarm.on-failure=poweroff imageswarm.failure-delay=5',
      'fail "disk"',
    )
    expect(off).toMatch(
      /will poweroff in 5 s \(imageswarm.on-failure=poweroff\)\nSLEEP 5\n.*powering off\nPOWEROFF\n$/,
    )
    const reboot = await runLib(
      dir,
      'imageswarm.on-failure=reboot imageswarm.failure-delay=soon',
      'fail "disk"',
    )
    expect(reboot).toContain('imageswarm.failure-delay=soon is not a number of seconds')
    expect(reboot).toMatch(/SLEEP 60\n.*\nREBOOT\n$/)
  })

  it('explain every exit code imageswarm has', async () => {
    for (const code of new Set(Object.values(EXIT_CODES))) {
      const meaning = await runLib(dir, '', `exit_meaning ${code}`)
      expect(meaning, `exit code ${code}`).not.toMatch(/^exit code/)
    }
  })

  it('run the program with node, and fail with what its exit code means', async () => {
    const lib = join(dir, 'lib')
    await execFileAsync('mkdir', ['-p', lib])
    await writeFile(
      join(lib, 'imageswarm-install.mjs'),
      "console.log('client ran'); process.exit(4)\n",
    )
    const out = await runLib(
      dir,
      'imageswarm.on-failure=poweroff imageswarm.failure-delay=0',
      'install_and_finish',
      lib,
    )
    expect(out).toMatch(/starting imageswarm-install.mjs with node v\d+/)
    expect(out).toContain('client ran')
    expect(out).toContain('FAILED: the installer exited with 4: the image server is unreachable')
    expect(out).toMatch(/POWEROFF\n$/)
  })

  it('export the settings baked into the ramdisk to the installer, never running them as shell', async () => {
    const lib = join(dir, 'baked')
    const etc = join(dir, 'baked-etc')
    const ran = join(dir, 'baked-ran')
    await execFileAsync('mkdir', ['-p', lib, etc])
    await writeFile(
      join(lib, 'imageswarm-install.mjs'),
      // biome-ignore lint/suspicious/noTemplateCurlyInString: the program's JavaScript, written to a file
      "for (const [k, v] of Object.entries(process.env).sort()) if (k.startsWith('IMAGESWARM_') && k !== 'IMAGESWARM_CMDLINE' && k !== 'IMAGESWARM_LIB') console.log(`${k}=${v}`)\n",
    )
    await writeFile(
      join(etc, 'installer.env'),
      [
        '# Baked in by imageswarm initrd --trust-root',
        'IMAGESWARM_TRUST_ROOT=/etc/imageswarm/root.pub',
        'IMAGESWARM_MIN_KEY_LIST_VERSION=3',
        `IMAGESWARM_X=$(touch ${ran})`,
        'PATH=/nowhere',
        'IMAGESWARM_bad-name=1',
        '',
      ].join('\n'),
    )
    const out = await runLib(
      dir,
      'imageswarm.post-action=poweroff',
      `IMAGESWARM_ETC='${etc}'; install_and_finish`,
      lib,
    )
    expect(out).toContain('ramdisk setting IMAGESWARM_TRUST_ROOT=/etc/imageswarm/root.pub')
    const exported = out.split('\n').filter((line) => /^IMAGESWARM_/.test(line))
    expect(exported).toEqual([
      'IMAGESWARM_MIN_KEY_LIST_VERSION=3',
      'IMAGESWARM_TRUST_ROOT=/etc/imageswarm/root.pub',
      `IMAGESWARM_X=$(touch ${ran})`,
    ])
    await expect(execFileAsync('test', ['-e', ran])).rejects.toMatchObject({ code: 1 })
    expect(out).toMatch(/POWEROFF\n$/)
  })

  it('prefer the whole installer to the install-only client, and do the post action after it', async () => {
    const lib = join(dir, 'both')
    await execFileAsync('mkdir', ['-p', lib])
    await writeFile(join(lib, 'imageswarm-install.mjs'), 'process.exit(1)\n')
    await writeFile(join(lib, 'imageswarm-installer.mjs'), "console.log('installer ran')\n")
    const out = await runLib(dir, 'imageswarm.post-action=poweroff', 'install_and_finish', lib)
    expect(out).toContain('starting imageswarm-installer.mjs')
    expect(out).toMatch(/installer ran\n.*post action: poweroff\n.*\nPOWEROFF\n$/)
  })
})
