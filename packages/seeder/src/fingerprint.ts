import { createHash, type Hash } from 'node:crypto'
import { lstat, readdir, readlink } from 'node:fs/promises'

const SLASH = Buffer.from('/')

/**
 * A digest of everything in an image root that the archive records: names, types,
 * modes, owners, sizes, device numbers, link targets, mtimes and ctimes (nanoseconds).
 * ctime changes on any metadata change (xattrs, ACLs, capabilities, hard link count),
 * so a root whose fingerprint is unchanged packs to the same archive and is not packed
 * again. `extra` folds in the packing settings (compression, excludes).
 *
 * Names are handled as bytes: an image may hold file names that are not UTF-8.
 */
export async function fingerprintTree(root: string, extra: string): Promise<string> {
  const hash = createHash('sha256')
  hash.update(`${extra}\n`)
  await walk(Buffer.from(root), Buffer.from('.'), hash)
  return hash.digest('hex')
}

async function walk(path: Buffer, rel: Buffer, hash: Hash): Promise<void> {
  const st = await lstat(path, { bigint: true })
  const link = st.isSymbolicLink() ? await readlink(path, { encoding: 'buffer' }) : Buffer.alloc(0)
  hash.update(rel)
  hash.update(
    `\0${[st.mode, st.uid, st.gid, st.size, st.rdev, st.mtimeNs, st.ctimeNs, st.ino].join('\0')}\0`,
  )
  hash.update(link)
  hash.update('\n')
  if (!st.isDirectory()) return
  const names = await readdir(path, { encoding: 'buffer' })
  names.sort(Buffer.compare)
  for (const name of names) {
    await walk(Buffer.concat([path, SLASH, name]), Buffer.concat([rel, SLASH, name]), hash)
  }
}
