import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from '@imageswarm/core'
import { runTool } from './run-tool.js'

/**
 * An unmount that finds the filesystem busy (a process a post-install script left behind,
 * the kernel still writing back) is tried this many times, this far apart: 3 s in all,
 * then a bind mount is detached lazily and a filesystem remounted read-only.
 */
const UNMOUNT_ATTEMPTS = 10
const UNMOUNT_RETRY_MS = 300

export type MountKind = 'filesystem' | 'bind'

interface Mounted {
  path: string
  kind: MountKind
}

/**
 * The mounts the installer made, undone in reverse order: the target's filesystems
 * (parents first, so children go first) and the bind mounts into the target for chroot.
 */
export class MountStack {
  readonly #mounts: Mounted[] = []
  readonly #logger: Logger

  constructor(logger: Logger) {
    this.#logger = logger
  }

  /** Paths mounted now, in the order they were mounted. */
  get paths(): string[] {
    return this.#mounts.map((mount) => mount.path)
  }

  /** Runs `mount ARGS PATH` and records PATH. */
  async mount(kind: MountKind, args: readonly string[], path: string, what: string): Promise<void> {
    await runTool('mount', [...args, path], {
      what,
      code: kind === 'bind' ? 'E_BOOTLOADER_FAILED' : 'E_PARTITION_FAILED',
      path,
      hint:
        kind === 'bind'
          ? 'the installer ramdisk lacks a filesystem the image’s tools need; see the log'
          : 'the filesystem could not be mounted: see the message above (a kernel without its driver? imageswarm.modules=)',
      logger: this.#logger,
    })
    this.#mounts.push({ path, kind })
  }

  /**
   * Unmounts, last first, what is of `kind` (default: everything). A busy mount is tried
   * again (3 s in all); then a bind mount is detached lazily and a filesystem remounted
   * read-only (its data is on disk either way). Returns what could not be undone cleanly,
   * one line each; never throws.
   */
  async unmountAll(kind?: MountKind): Promise<string[]> {
    const problems: string[] = []
    for (let index = this.#mounts.length - 1; index >= 0; index--) {
      const mount = this.#mounts[index] as Mounted
      if (kind && mount.kind !== kind) continue
      const problem = await this.#unmount(mount)
      if (problem) problems.push(problem)
      this.#mounts.splice(index, 1)
    }
    return problems
  }

  async #unmount(mount: Mounted): Promise<string | undefined> {
    let last = ''
    for (let attempt = 1; attempt <= UNMOUNT_ATTEMPTS; attempt++) {
      const result = await runTool('umount', [mount.path], {
        what: `unmount ${mount.path}`,
        code: 'E_PARTITION_FAILED',
        hint: '',
        logger: this.#logger,
        allowFailure: true,
      }).catch((err: unknown) => ({ code: 1, output: String(err) }))
      if (result.code === 0) return undefined
      last = result.output.trim()
      // Not mounted (any more): nothing to undo.
      if (/not mounted|no mount point/i.test(last)) return undefined
      await sleep(UNMOUNT_RETRY_MS)
    }
    const fallback = mount.kind === 'bind' ? ['-l', mount.path] : ['-o', 'remount,ro', mount.path]
    const command = mount.kind === 'bind' ? 'umount' : 'mount'
    const result = await runTool(command, fallback, {
      what: mount.kind === 'bind' ? `detach ${mount.path}` : `remount ${mount.path} read-only`,
      code: 'E_PARTITION_FAILED',
      hint: '',
      logger: this.#logger,
      allowFailure: true,
    }).catch((err: unknown) => ({ code: 1, output: String(err) }))
    const done = result.code === 0
    return `${mount.path} stayed busy (${last.split('\n').at(-1) ?? ''}); ${
      mount.kind === 'bind'
        ? done
          ? 'detached it lazily'
          : 'could not detach it'
        : done
          ? 'remounted it read-only'
          : 'could not remount it read-only either'
    }`
  }
}
