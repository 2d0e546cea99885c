import { lstat, readlink } from 'node:fs/promises'
import { join, posix } from 'node:path'

/** Symlinks followed before a path counts as a loop (the kernel's limit, MAXSYMLINKS). */
const SYMLINK_LIMIT = 40

/**
 * Where `path` (absolute, as the installed system sees it) is under `root`, following
 * symlinks the way the installed system will: an absolute link target starts again at
 * `root`, `..` stops at `root`. So `/a/etc/hostname -> /run/hostname` is `/a/run/hostname`,
 * never the installer's own /run. The last component need not exist.
 *
 * @example await pathInRoot('/a', '/vmlinuz') // '/a/boot/vmlinuz-6.1.0-50-cloud-amd64'
 */
export async function pathInRoot(root: string, path: string): Promise<string> {
  const pending = posix.normalize(path).split('/').filter(Boolean)
  const resolved: string[] = []
  let links = 0
  while (pending.length > 0) {
    const part = pending.shift() as string
    if (part === '.') continue
    if (part === '..') {
      resolved.pop()
      continue
    }
    const candidate = join(root, ...resolved, part)
    const st = await lstat(candidate).catch(() => undefined)
    if (!st?.isSymbolicLink()) {
      resolved.push(part)
      continue
    }
    if (++links > SYMLINK_LIMIT) throw new Error(`too many symbolic links under ${root} in ${path}`)
    const target = await readlink(candidate)
    if (target.startsWith('/')) resolved.length = 0
    pending.unshift(...target.split('/').filter(Boolean))
  }
  return join(root, ...resolved)
}
