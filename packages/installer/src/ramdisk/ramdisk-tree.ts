import { spawn } from 'node:child_process'
import { once } from 'node:events'
import {
  chmod,
  copyFile,
  lstat,
  mkdir,
  open,
  readlink,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises'
import { dirname, isAbsolute, join, resolve } from 'node:path'
import { ImageSwarmError } from '@imageswarm/core'

/**
 * The ramdisk's files as a directory on the build host (the staging tree that is packed
 * into the cpio archive). The layout is merged-/usr, as on Debian 12: /bin, /sbin, /lib and
 * /lib64 are symlinks into /usr, so a host file reached by either name lands once, and
 * the paths `ldd` prints (/lib/x86_64-linux-gnu/libc.so.6) and the ELF interpreter
 * (/lib64/ld-linux-x86-64.so.2) resolve in the ramdisk as on the host.
 */
export class RamdiskTree {
  /** Ramdisk paths (relative, no leading slash) already added. */
  private readonly added = new Set<string>()

  private constructor(readonly root: string) {}

  /** Makes the skeleton in `root` (an empty directory): the /usr symlinks and the mount points. */
  static async create(root: string): Promise<RamdiskTree> {
    const tree = new RamdiskTree(root)
    await chmod(root, 0o755)
    for (const dir of ['usr/bin', 'usr/sbin', 'usr/lib', 'usr/lib64']) await tree.addDirectory(dir)
    for (const name of ['bin', 'sbin', 'lib', 'lib64']) await tree.addSymlink(name, `usr/${name}`)
    // Mount points /init fills, and /a where the installer mounts the target root.
    for (const dir of ['dev', 'proc', 'sys', 'run', 'root', 'etc', 'var', 'a', 'mnt']) {
      await tree.addDirectory(dir)
    }
    await tree.addDirectory('tmp', 0o1777)
    await tree.addSymlink('var/tmp', '../tmp')
    await tree.addSymlink('var/run', '../run')
    return tree
  }

  /** Where a host path goes in the merged-/usr ramdisk: `/lib/x` → `usr/lib/x`. */
  static ramdiskPath(hostPath: string): string {
    const relative = hostPath.replace(/^\/+/, '')
    return /^(bin|sbin|lib|lib64)(\/|$)/.test(relative) ? `usr/${relative}` : relative
  }

  has(path: string): boolean {
    return this.added.has(path)
  }

  /** Records a path something else wrote into the tree (depmod's indexes, a device node). */
  markAdded(path: string): void {
    this.added.add(path)
  }

  async addDirectory(path: string, mode = 0o755): Promise<void> {
    const parts = path.split('/')
    for (let i = 1; i <= parts.length; i++) {
      const dir = parts.slice(0, i).join('/')
      if (this.added.has(dir)) continue
      const full = join(this.root, dir)
      await mkdir(full).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST') throw err
      })
      // Explicit modes: mkdir's depend on the builder's umask, and the archive must not.
      await chmod(full, i === parts.length ? mode : 0o755)
      this.added.add(dir)
    }
  }

  async addSymlink(path: string, target: string): Promise<void> {
    if (this.added.has(path)) return
    await this.addDirectory(dirname(path))
    await symlink(target, join(this.root, path))
    this.added.add(path)
  }

  async addFile(path: string, content: string | Buffer, mode = 0o644): Promise<void> {
    await this.addDirectory(dirname(path))
    await writeFile(join(this.root, path), content)
    await chmod(join(this.root, path), mode)
    this.added.add(path)
  }

  /** Copies a host file to `path` (default: where it is on the host), with its mode or `mode`. */
  async copyFile(
    hostPath: string,
    path = RamdiskTree.ramdiskPath(hostPath),
    mode?: number,
  ): Promise<void> {
    if (this.added.has(path)) return
    await this.addDirectory(dirname(path))
    await copyFile(hostPath, join(this.root, path))
    await chmod(join(this.root, path), mode ?? (await stat(hostPath)).mode & 0o7777)
    this.added.add(path)
  }

  /** Writes what `command args` prints to `path` (a decompressed module), mode 0644. */
  async addCommandOutput(path: string, command: string, args: readonly string[]): Promise<void> {
    await this.addDirectory(dirname(path))
    const output = await open(join(this.root, path), 'w', 0o644)
    try {
      const child = spawn(command, args, { stdio: ['ignore', output.fd, 'pipe'] })
      let stderr = ''
      child.stderr!.on('data', (chunk: Buffer) => {
        stderr += chunk.toString()
      })
      const [code] = (await once(child, 'close')) as [number | null]
      if (code !== 0) {
        throw new ImageSwarmError(
          'E_PACK_FAILED',
          `${command} ${args.join(' ')} failed (exit ${code}): ${stderr.trim()}`,
          {
            operation: 'add to ramdisk',
            path: args.at(-1),
            hint: 'check that the file is intact (a kernel package unpacked again: remove it from the kernel cache)',
          },
        )
      }
    } finally {
      await output.close()
    }
    await chmod(join(this.root, path), 0o644)
    this.added.add(path)
  }

  /**
   * Adds a host path as it is: a file is copied; a symlink is kept as a symlink (mkfs.ext4 →
   * mke2fs: mke2fs reads the name it was started by) and what it points to is added too.
   * Returns the ramdisk paths of the regular files added.
   */
  async addHostPath(hostPath: string): Promise<string[]> {
    const files: string[] = []
    let current = hostPath
    // A chain of symlinks ends in a file within a few hops; 40 is the kernel's own limit.
    for (let hops = 0; hops < 40; hops++) {
      const path = RamdiskTree.ramdiskPath(current)
      const info = await lstat(current)
      if (!info.isSymbolicLink()) {
        if (!this.added.has(path)) files.push(path)
        await this.copyFile(current, path)
        return files
      }
      const target = await readlink(current)
      await this.addSymlink(path, target)
      current = isAbsolute(target) ? target : resolve(dirname(current), target)
    }
    throw new Error(`too many levels of symbolic links at ${hostPath}`)
  }
}
