// Compares two trees entry by entry: type, mode (with setuid/setgid/sticky), owner,
// size, content digest, symlink target, device numbers, hardlink groups and mtime (ns).
// Returns the differences as readable lines; an empty list means the trees are equal.
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { lstat, readdir, readlink } from 'node:fs/promises'
import { join } from 'node:path'

const DEFAULTS = { ignore: [], mtime: true, rootMtime: true }

async function digest(path) {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(path)) hash.update(chunk)
  return hash.digest('hex')
}

function typeOf(st) {
  if (st.isFile()) return 'file'
  if (st.isDirectory()) return 'dir'
  if (st.isSymbolicLink()) return 'symlink'
  if (st.isCharacterDevice()) return 'char'
  if (st.isBlockDevice()) return 'block'
  if (st.isFIFO()) return 'fifo'
  if (st.isSocket()) return 'socket'
  return 'unknown'
}

async function describeTree(root, ignore) {
  const entries = new Map()
  const inodes = new Map()
  async function walk(rel) {
    const path = rel === '.' ? root : join(root, rel)
    const st = await lstat(path, { bigint: true })
    const entry = {
      type: typeOf(st),
      mode: (st.mode & 0o7777n).toString(8),
      uid: st.uid.toString(),
      gid: st.gid.toString(),
      mtimeNs: st.mtimeNs.toString(),
    }
    if (entry.type === 'file') {
      entry.size = st.size.toString()
      entry.sha256 = await digest(path)
      if (st.nlink > 1n) {
        const key = `${st.dev}:${st.ino}`
        if (!inodes.has(key)) inodes.set(key, [])
        inodes.get(key).push(rel)
      }
    }
    if (entry.type === 'symlink') entry.target = await readlink(path)
    if (entry.type === 'char' || entry.type === 'block') entry.rdev = st.rdev.toString()
    entries.set(rel, entry)
    if (entry.type === 'dir') {
      for (const name of (await readdir(path)).sort()) {
        const child = rel === '.' ? name : `${rel}/${name}`
        if (!ignore.includes(child)) await walk(child)
      }
    }
  }
  await walk('.')
  // Hardlink groups, named by their first member, so the two trees compare by name.
  for (const group of inodes.values()) {
    group.sort()
    for (const member of group) entries.get(member).links = group.join(',')
  }
  return entries
}

export async function compareTrees(expectedRoot, actualRoot, options = {}) {
  const { ignore, mtime, rootMtime } = { ...DEFAULTS, ...options }
  const [expected, actual] = await Promise.all([
    describeTree(expectedRoot, ignore),
    describeTree(actualRoot, ignore),
  ])
  const differences = []
  for (const [rel, want] of expected) {
    const got = actual.get(rel)
    if (!got) {
      differences.push(`${rel}: missing`)
      continue
    }
    for (const key of new Set([...Object.keys(want), ...Object.keys(got)])) {
      if (key === 'mtimeNs' && (!mtime || (rel === '.' && !rootMtime))) continue
      if (want[key] !== got[key]) {
        differences.push(`${rel}: ${key} ${want[key] ?? '(none)'} → ${got[key] ?? '(none)'}`)
      }
    }
  }
  for (const rel of actual.keys()) if (!expected.has(rel)) differences.push(`${rel}: unexpected`)
  return { differences, entries: expected.size }
}
