import { lstat, readFile, stat, truncate, unlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { errnoOf, ImageSwarmError } from '@imageswarm/core'
import { hostsWithName } from './hosts-file.js'
import { pathInRoot } from './root-path.js'

/**
 * The files of the installed system the installer writes on purpose (besides GRUB's),
 * relative to its root: the VM test leaves exactly these out when it compares the disk
 * with the image.
 */
export const WRITTEN_FILES = ['etc/fstab', 'etc/hostname', 'etc/hosts', 'etc/machine-id'] as const

/** Writes `text` to `path` of the installed system (symlinks followed inside it), keeping its mode. */
export async function writeTargetFile(
  target: string,
  path: string,
  text: string,
  newMode = 0o644,
): Promise<void> {
  const file = await pathInRoot(target, path)
  try {
    const mode = await stat(file).then(
      (st) => st.mode & 0o7777,
      () => newMode,
    )
    await writeFile(file, text, { mode })
  } catch (err) {
    throw new ImageSwarmError('E_TARGET_NOT_WRITABLE', `cannot write ${path} of the new system`, {
      operation: 'configure the new system',
      path: file,
      hint: 'the target filesystem is full or read-only; see the log',
      cause: err,
    })
  }
}

/** The installed system's name: /etc/hostname, and `127.0.1.1 NAME` in /etc/hosts. */
export async function writeHostname(
  target: string,
  hostname: string,
  domain: string | undefined,
): Promise<void> {
  await writeTargetFile(target, '/etc/hostname', `${hostname}\n`)
  const hosts = await pathInRoot(target, '/etc/hosts')
  const existing = await readFile(hosts, 'utf8').catch((err: unknown) => {
    if (errnoOf(err) === 'ENOENT') return undefined
    throw err
  })
  await writeTargetFile(target, '/etc/hosts', hostsWithName(existing, hostname, domain))
}

/**
 * An empty /etc/machine-id: each node makes its own at first boot (systemd's "first boot"),
 * instead of every node sharing the golden client's. An empty one is left as it is; dbus's
 * own copy (/var/lib/dbus/machine-id) goes when it is a file (a symlink to /etc/machine-id
 * is what it should be).
 */
export async function resetMachineId(target: string): Promise<void> {
  const machineId = await pathInRoot(target, '/etc/machine-id')
  const st = await stat(machineId).catch(() => undefined)
  if (!st) await writeTargetFile(target, '/etc/machine-id', '', 0o444)
  else if (st.size > 0) await truncate(machineId, 0)
  // The directory is followed inside the image; the entry itself is not (a symlink stays).
  const dbus = join(await pathInRoot(target, '/var/lib/dbus'), 'machine-id')
  if ((await lstat(dbus).catch(() => undefined))?.isFile()) await unlink(dbus)
}

/**
 * /etc/default/grub with `GRUB_TIMEOUT=seconds` (the layout's bootloader timeout, as
 * SystemImager 5 sets it), replacing the image's line or adding one.
 */
export function withGrubTimeout(text: string, seconds: number): string {
  const line = `GRUB_TIMEOUT=${seconds}`
  if (/^GRUB_TIMEOUT=.*$/m.test(text)) return text.replace(/^GRUB_TIMEOUT=.*$/m, line)
  return `${text}${text === '' || text.endsWith('\n') ? '' : '\n'}${line}\n`
}
