import {
  chmod,
  lchown,
  link,
  mkdir,
  open as openFile,
  symlink,
  truncate,
  writeFile,
} from 'node:fs/promises'
import { join } from 'node:path'
import { run } from './system-tools.js'

/** Commands `buildFidelityTree` runs (as root): for `missingRequirements`. */
export const FIDELITY_COMMANDS = [
  'setfattr',
  'getfattr',
  'setfacl',
  'getfacl',
  'setcap',
  'mknod',
  'touch',
]

/** A name that is not valid UTF-8 (`bad-\xff\xfe`): tar must carry the bytes unchanged. */
export const NON_UTF8_NAME = Buffer.from([0x62, 0x61, 0x64, 0x2d, 0xff, 0xfe])

/** Size of the sparse file: 64 MiB apparent, two 4 KiB extents written. */
export const SPARSE_SIZE = 64 * 1024 * 1024

/**
 * A small root that holds every kind of metadata an OS image can carry. Returns the
 * relative paths of interest. Needs root (mknod, chown, trusted.* xattrs).
 */
export async function buildFidelityTree(root: string): Promise<{ sparse: string }> {
  const p = (...parts: string[]) => join(root, ...parts)
  await mkdir(root, { recursive: true })
  for (const dir of ['etc', 'bin', 'usr/share', 'dev', 'var/tmp', 'srv/locked', 'srv/readonly']) {
    await mkdir(p(dir), { recursive: true })
  }

  // Regular files, an empty one, an executable, setuid/setgid.
  await writeFile(p('etc/hostname'), 'node1\n')
  await writeFile(p('etc/empty'), '')
  await writeFile(p('bin/tool'), '#!/bin/sh\necho tool\n')
  await chmod(p('bin/tool'), 0o755)
  await writeFile(p('bin/su'), 'setuid binary\n')
  await chmod(p('bin/su'), 0o4755)
  await writeFile(p('bin/wall'), 'setgid binary\n')
  await chmod(p('bin/wall'), 0o2755)
  await writeFile(p('etc/shadow'), 'root:*:19000:0:99999:7:::\n')
  await chmod(p('etc/shadow'), 0o640)

  // Symlinks: relative, absolute (dangling here, valid on the installed system), to a dir.
  await symlink('hostname', p('etc/hostname.link'))
  await symlink('/usr/share/zoneinfo/Etc/UTC', p('etc/localtime'))
  await symlink('usr/share', p('share'))
  await symlink('x'.repeat(200), p('etc/long-target'))

  // Hardlinks: three names for one inode, across directories.
  await writeFile(p('bin/busybox'), 'busybox\n'.repeat(100))
  await link(p('bin/busybox'), p('bin/ls'))
  await link(p('bin/busybox'), p('usr/share/busybox-copy'))

  // Special files.
  await run('mknod', ['-m', '0620', p('dev/console'), 'c', '5', '1'])
  await run('mknod', ['-m', '0660', p('dev/loop0'), 'b', '7', '0'])
  await run('mknod', ['-m', '0600', p('dev/initctl'), 'p'])

  // Owners: a system uid, nobody, and one above the 2^21 ustar limit.
  await writeFile(p('var/tmp/owned-100'), 'a')
  await lchown(p('var/tmp/owned-100'), 100, 100)
  await writeFile(p('var/tmp/owned-nobody'), 'b')
  await lchown(p('var/tmp/owned-nobody'), 65534, 65534)
  await writeFile(p('var/tmp/owned-3000000'), 'c')
  await lchown(p('var/tmp/owned-3000000'), 3_000_000, 3_000_001)
  await lchown(p('etc/localtime'), 3_000_000, 100)

  // Extended attributes with binary values, in the user and trusted namespaces.
  await run('setfattr', ['-n', 'user.binary', '-v', '0x00ff10800a', p('etc/hostname')])
  await run('setfattr', ['-n', 'user.text', '-v', 'hello', p('etc')])
  await run('setfattr', ['-n', 'trusted.overlay', '-v', '0x79', p('usr/share')])

  // POSIX ACLs: an access ACL on a file, a default ACL on a directory.
  await writeFile(p('srv/acl-file'), 'acl\n')
  await run('setfacl', ['-m', 'u:3000000:rwx,g:100:r-x', p('srv/acl-file')])
  await run('setfacl', ['-d', '-m', 'u:100:rwx', p('srv')])

  // A file capability (security.capability); after the chown calls, which would clear it.
  await writeFile(p('bin/ping'), 'ping\n')
  await chmod(p('bin/ping'), 0o755)
  await run('setcap', ['cap_net_raw+ep', p('bin/ping')])

  // A sparse file: 64 MiB apparent size, 8 KiB of data.
  const sparse = 'var/sparse.img'
  await writeFile(p(sparse), '')
  await truncate(p(sparse), SPARSE_SIZE)
  const handle = await openFile(p(sparse), 'r+')
  try {
    await handle.write(Buffer.alloc(4096, 0x41), 0, 4096, 1024 * 1024)
    await handle.write(Buffer.alloc(4096, 0x42), 0, 4096, SPARSE_SIZE - 4096)
  } finally {
    await handle.close()
  }

  // Names: non-ASCII, not UTF-8, longer than ustar's 100 bytes, a path over 255 bytes.
  await writeFile(p('usr/share/héllo-wörld-日本語.txt'), 'unicode\n')
  await writeFile(Buffer.concat([Buffer.from(`${p('usr/share')}/`), NON_UTF8_NAME]), 'bytes\n')
  await writeFile(p('usr/share', 'n'.repeat(150)), 'long name\n')
  const deep = p('usr/share', 'd'.repeat(100), 'e'.repeat(100), 'f'.repeat(100))
  await mkdir(deep, { recursive: true })
  await writeFile(join(deep, 'g'.repeat(120)), 'deep\n')

  // Directory modes: sticky, setgid, read-only, none at all; set after filling them.
  await mkdir(p('tmp'))
  await mkdir(p('srv/shared'))
  await writeFile(p('srv/locked/inside'), 'locked\n')
  await writeFile(p('srv/readonly/inside'), 'readonly\n')
  await chmod(p('tmp'), 0o1777)
  await chmod(p('srv/shared'), 0o2775)
  await chmod(p('srv/readonly'), 0o555)
  await chmod(p('srv/locked'), 0o000)

  // mtimes last (creating entries changes the parent's): nanoseconds, before 1970, after 2038.
  const times: [string, string][] = [
    ['etc/hostname', '@1700000000.123456789'],
    ['etc/empty', '@-1234567890.5'],
    ['bin/tool', '@4102444800.000000001'],
    ['etc/localtime', '@1000000000.999999999'],
    ['dev/console', '@86400'],
    ['srv/locked', '@1600000000.111111111'],
    ['srv/readonly', '@-86400.25'],
    ['tmp', '@2500000000.5'],
    ['etc', '@1234567890.987654321'],
    ['.', '@1650000000.000000042'],
  ]
  for (const [path, time] of times) await run('touch', ['-h', '-d', time, p(path)])
  return { sparse }
}
