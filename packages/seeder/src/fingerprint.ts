import { createHash } from 'node:crypto'
import { lstat, opendir, readlink } from 'node:fs/promises'
import { join } from 'node:path'

/**
 * A digest of everything in an image root that the archive records: names, types,
 * modes, owners, sizes, device numbers, link targets, mtimes and ctimes (nanoseconds).
 * ctime changes on any metadata change (xattrs, ACLs, capabilities, hard link count),
 * so a root whose fingerprint is unchanged packs to the same archive and is not packed
 * again. `extra` folds in the packing settings (compression, excludes).
 */
export async function fingerprintTree(root: string, extra: string): Promise<string> {
  const hash = createHash('sha256')
  hash.update(`${extra}\n`)
  await walk(root, '.', hash)
  return hash.digest('hex')
}

async function walk(root: string, rel: string, hash: ReturnType<typeof createHash>) {
  const path = rel === '.' ? root : join(root, rel)
  const st = await lstat(path, { bigint: true })
  let link = ''
  if (st.isSymbolicLink()) link = await readlink(path)
  hash.update(
    [rel, st.mode, st.uid, st.gid, st.size, st.rdev, st.mtimeNs, st.ctimeNs, st.ino, link].join(
      '\0',
    ),
  )
  hash.update('\n')
  if (!st.isDirectory()) return
  const names: string[] = []
  for await (const entry of await opendir(path)) names.push(entry.name)
  names.sort()
  for (const name of names) await walk(root, rel === '.' ? name : join(rel, name), hash)
}
