import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { type BigIntStats, createReadStream } from 'node:fs'
import { lstat, readdir, readlink } from 'node:fs/promises'
import { hasCommand } from './system-tools.js'

/** What the comparison looks at for one file, directory or special file. */
export interface TreeNode {
  /** Relative path; latin1, so that every byte of a non-UTF-8 name is kept. */
  path: string
  type: NodeType
  /** Full st_mode, type bits included. */
  mode: number
  uid: number
  gid: number
  size: bigint
  blocks: bigint
  mtimeNs: bigint
  rdev: bigint
  ino: bigint
  nlink: bigint
  symlinkTarget?: string
  sha256?: string
  /** `getfattr -d -m - -e hex` output without the file line: every namespace, hex values. */
  xattrs?: string
  /** `getfacl -n -c` output. */
  acl?: string
}

export type NodeType = 'file' | 'dir' | 'symlink' | 'fifo' | 'char' | 'block' | 'socket'

export interface SnapshotOptions {
  /** Default true when getfattr / getfacl are installed. */
  xattrs?: boolean
  acls?: boolean
}

/** Every node under `root` (root itself as `.`), with metadata, content hashes and xattrs. */
export async function snapshotTree(
  root: string,
  options: SnapshotOptions = {},
): Promise<Map<string, TreeNode>> {
  const withXattrs = options.xattrs ?? hasCommand('getfattr')
  const withAcls = options.acls ?? hasCommand('getfacl')
  const nodes = new Map<string, TreeNode>()
  const rootBuf = Buffer.from(root)
  const walk = async (rel: Buffer): Promise<void> => {
    const full = rel.length === 0 ? rootBuf : Buffer.concat([rootBuf, Buffer.from('/'), rel])
    const st = await lstat(full, { bigint: true })
    const node = describeNode(rel.length === 0 ? '.' : rel.toString('latin1'), st)
    if (node.type === 'symlink')
      node.symlinkTarget = (await readlink(full, 'buffer')).toString('latin1')
    if (node.type === 'file') node.sha256 = await digestFile(full)
    nodes.set(node.path, node)
    if (node.type === 'dir') {
      const names = await readdir(full, { encoding: 'buffer' })
      for (const name of names) {
        await walk(rel.length === 0 ? name : Buffer.concat([rel, Buffer.from('/'), name]))
      }
    }
  }
  await walk(Buffer.alloc(0))
  // One recursive run of each tool per tree: a spawn per entry takes minutes on a full root.
  const xattrs = withXattrs
    ? await readTreeAttributes(root, 'getfattr', ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex'])
    : undefined
  const acls = withAcls ? await readTreeAttributes(root, 'getfacl', ['-R', '-P', '-n']) : undefined
  for (const node of nodes.values()) {
    if (xattrs && node.type !== 'socket') node.xattrs = xattrs.get(node.path) ?? ''
    if (acls && node.type !== 'symlink' && node.type !== 'socket') {
      node.acl = acls.get(node.path) ?? ''
    }
  }
  return nodes
}

async function digestFile(path: Buffer): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    hash.update(chunk as Buffer)
  }
  return hash.digest('hex')
}

function describeNode(path: string, st: BigIntStats): TreeNode {
  return {
    path,
    type: nodeType(st),
    mode: Number(st.mode),
    uid: Number(st.uid),
    gid: Number(st.gid),
    size: st.size,
    blocks: st.blocks,
    mtimeNs: st.mtimeNs,
    rdev: st.rdev,
    ino: st.ino,
    nlink: st.nlink,
  }
}

function nodeType(st: BigIntStats): NodeType {
  if (st.isFile()) return 'file'
  if (st.isDirectory()) return 'dir'
  if (st.isSymbolicLink()) return 'symlink'
  if (st.isFIFO()) return 'fifo'
  if (st.isCharacterDevice()) return 'char'
  if (st.isBlockDevice()) return 'block'
  return 'socket'
}

/**
 * Runs getfattr or getfacl over a whole tree (from inside it, so names come out relative)
 * and returns each entry's lines, sorted, by relative path in latin1 (as TreeNode.path).
 * The tools print a name's unprintable bytes as octal escapes, or raw; both come back
 * as the original bytes.
 */
async function readTreeAttributes(
  root: string,
  command: string,
  args: string[],
): Promise<Map<string, string>> {
  const output = await new Promise<string>((resolve, reject) => {
    const child = spawn(command, [...args, '.'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] })
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk))
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk))
    child.on('error', reject)
    child.on('close', (code) => {
      if (code === 0) resolve(Buffer.concat(out).toString('latin1'))
      else reject(new Error(`${command} -R ${root}: ${Buffer.concat(err).toString()}`))
    })
  })
  const byPath = new Map<string, string>()
  for (const block of output.split('\n\n')) {
    const lines = block.split('\n').filter((line) => line !== '')
    const header = lines.find((line) => line.startsWith('# file: '))
    if (!header) continue
    const name = unescapeOctal(header.slice('# file: '.length)).replace(/^\.\//, '')
    const body = lines
      .filter((line) => !/^# (file|owner|group): /.test(line))
      .sort()
      .join('\n')
    byPath.set(name === '' ? '.' : name, body)
  }
  return byPath
}

function unescapeOctal(text: string): string {
  return text.replace(/\\([0-7]{3})/g, (_, octal: string) =>
    String.fromCharCode(Number.parseInt(octal, 8)),
  )
}

/**
 * What an install adds to the root it installs (`etc/imageswarm/installed.json`, the
 * version an update starts from): left out when a root is compared with its image.
 */
export const INSTALL_RECORD_SKIP: readonly string[] = ['etc/imageswarm']

export interface CompareOptions {
  /** Node types present in the source that the archive leaves out (sockets). */
  skipTypes?: readonly NodeType[]
  /** Paths (as in TreeNode.path) left out of the comparison, with everything below them. */
  skipPaths?: readonly string[]
  /**
   * `squashfs`: the source's mtimes as SquashFS holds them (whole seconds, unsigned 32-bit:
   * fractions dropped, times before 1970 or after 2106 clamped) before they are compared.
   * Default `nanoseconds`: exact.
   */
  mtimes?: 'nanoseconds' | 'squashfs'
  /** How the trees are read (both alike): leave xattrs out where the kernel cannot list them. */
  snapshot?: SnapshotOptions
  /**
   * Default true. False: allocated blocks are not compared (a mounted SquashFS image stores
   * files compressed, so its block counts say nothing about the image's files).
   */
  blocks?: boolean
}

const NS = 1_000_000_000n
const SQUASHFS_MAX_SECONDS = 2n ** 32n - 1n

/** An mtime as SquashFS stores it. */
export function squashfsMtime(mtimeNs: bigint): bigint {
  const seconds = mtimeNs < 0n ? 0n : mtimeNs / NS
  return (seconds > SQUASHFS_MAX_SECONDS ? SQUASHFS_MAX_SECONDS : seconds) * NS
}

/**
 * Every difference between two trees, as readable lines (`etc/shadow: mode 100640 !=
 * 100600`); an empty list means the trees match in type, mode, owner, size, allocated blocks,
 * content, symlink target, hardlink groups, device numbers, xattrs, ACLs and mtime to the
 * nanosecond. Directory sizes and blocks are not compared: they depend on the file system's
 * history of the directory, not on its contents.
 */
export async function compareTrees(
  source: string,
  target: string,
  options: CompareOptions = {},
): Promise<string[]> {
  const skipTypes = new Set(options.skipTypes ?? ['socket'])
  const skipped = (node: TreeNode) =>
    skipTypes.has(node.type) ||
    (options.skipPaths ?? []).some((p) => node.path === p || node.path.startsWith(`${p}/`))
  const a = await snapshotTree(source, options.snapshot)
  const b = await snapshotTree(target, options.snapshot)
  const diffs: string[] = []
  for (const [path, left] of a) {
    if (skipped(left)) continue
    const right = b.get(path)
    if (right === undefined) {
      diffs.push(`${show(path)}: missing in target`)
      continue
    }
    const source =
      options.mtimes === 'squashfs' ? { ...left, mtimeNs: squashfsMtime(left.mtimeNs) } : left
    diffs.push(...compareNodes(source, right, options.blocks ?? true))
  }
  for (const [path, right] of b) {
    if (!a.has(path) && !skipped(right)) diffs.push(`${show(path)}: only in target`)
  }
  const groupsA = hardlinkGroups(a, skipped)
  const groupsB = hardlinkGroups(b, skipped)
  for (const group of groupsA) if (!groupsB.has(group)) diffs.push(`hardlink group lost: ${group}`)
  for (const group of groupsB) if (!groupsA.has(group)) diffs.push(`hardlink group new: ${group}`)
  return diffs
}

const FIELDS = [
  'type',
  'mode',
  'uid',
  'gid',
  'mtimeNs',
  'symlinkTarget',
  'sha256',
  'xattrs',
  'acl',
] as const

function compareNodes(left: TreeNode, right: TreeNode, blocks: boolean): string[] {
  const diffs: string[] = []
  const fields: (keyof TreeNode)[] = [...FIELDS]
  if (left.type !== 'dir') fields.push('size')
  if (left.type !== 'dir' && blocks) fields.push('blocks')
  if (left.type === 'char' || left.type === 'block') fields.push('rdev')
  for (const field of fields) {
    const l = left[field]
    const r = right[field]
    if (l !== r)
      diffs.push(`${show(left.path)}: ${field} ${format(field, l)} != ${format(field, r)}`)
  }
  return diffs
}

function hardlinkGroups(
  nodes: Map<string, TreeNode>,
  skipped: (n: TreeNode) => boolean,
): Set<string> {
  const byInode = new Map<bigint, string[]>()
  for (const node of nodes.values()) {
    if (node.type === 'dir' || node.nlink < 2n || skipped(node)) continue
    const group = byInode.get(node.ino) ?? []
    group.push(show(node.path))
    byInode.set(node.ino, group)
  }
  return new Set([...byInode.values()].map((group) => group.sort().join(' = ')))
}

function show(path: string): string {
  return JSON.stringify(Buffer.from(path, 'latin1').toString('utf8'))
}

function format(field: keyof TreeNode, value: unknown): string {
  if (field === 'mode' && typeof value === 'number') return value.toString(8)
  return typeof value === 'string' ? JSON.stringify(value) : String(value)
}
