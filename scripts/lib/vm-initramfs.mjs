// @ts-check
// A small initramfs for harness checks (the KVM probe, the harness's own tests): Debian's
// static busybox, an /init script and, if asked, kernel modules with their dependencies.
// The installer's real ramdisk is built by packages/installer (`imageswarm initrd`).
import { constants } from 'node:fs'
import {
  access,
  chmod,
  copyFile,
  mkdir,
  mkdtemp,
  open,
  readdir,
  readFile,
  rm,
  writeFile,
} from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { basename, dirname, join } from 'node:path'
import { run } from './vm-process.mjs'

const BUSYBOX_PATHS = ['/bin/busybox', '/usr/bin/busybox']

/**
 * The static busybox binary, or a reason there is none. A dynamically linked busybox
 * would find no C library in the initramfs: the kernel then panics at /init.
 * @returns {Promise<{ path: string } | { missing: string }>}
 */
export async function findStaticBusybox() {
  for (const path of BUSYBOX_PATHS) {
    try {
      await access(path, constants.X_OK)
    } catch {
      continue
    }
    const handle = await open(path, 'r')
    try {
      // A dynamic ELF names its loader in .interp, within its first pages.
      const { buffer, bytesRead } = await handle.read(Buffer.alloc(8192), 0, 8192, 0)
      if (buffer.subarray(0, bytesRead).includes('ld-linux')) {
        return { missing: `${path} is dynamically linked (install busybox-static)` }
      }
    } finally {
      await handle.close()
    }
    return { path }
  }
  return { missing: 'no busybox (install busybox-static)' }
}

/**
 * The modules to load, dependencies first, from the kernel's modules.dep.
 * @param {string} modulesDir /lib/modules/RELEASE of the kernel the initramfs boots
 * @param {string[]} names module names, e.g. ['virtio_pci', 'virtio_blk']
 * @returns {Promise<string[]>} paths relative to modulesDir
 */
export async function resolveModules(modulesDir, names) {
  const text = await readFile(join(modulesDir, 'modules.dep'), 'utf8')
  /** @type {Map<string, { path: string, deps: string[] }>} */
  const byName = new Map()
  for (const line of text.split('\n')) {
    const [path, deps = ''] = line.split(':')
    if (!path) continue
    byName.set(moduleName(path), { path, deps: deps.trim().split(/\s+/).filter(Boolean) })
  }
  /** @type {string[]} */
  const ordered = []
  /** @param {string} name */
  const visit = (name) => {
    const entry = byName.get(name.replaceAll('-', '_'))
    if (!entry) throw new Error(`module ${name} is not in ${modulesDir}/modules.dep`)
    if (ordered.includes(entry.path)) return
    // modules.dep lists each module's whole dependency closure, the last loaded first.
    for (const dep of [...entry.deps].reverse()) visit(moduleName(dep))
    ordered.push(entry.path)
  }
  for (const name of names) visit(name)
  return ordered
}

/** @param {string} path */
function moduleName(path) {
  return basename(path)
    .replace(/\.ko(\.\w+)?$/, '')
    .replaceAll('-', '_')
}

/**
 * Writes an uncompressed newc cpio (the kernel unpacks it without a decompressor; at a few
 * MB that is faster under emulation than gzip). /init runs under busybox sh; the modules
 * are in /modules as NN-name.ko, in load order (`for m in /modules/*.ko; do insmod $m; done`).
 * @example
 *   await buildInitramfs({ output: 'tiny.cpio', init: '#!/bin/busybox sh\necho hello\n/bin/busybox poweroff -f\n' })
 * @param {{ output: string, init: string, modulesDir?: string, modules?: string[], files?: Record<string, string> }} options
 *   files: more files by their path in the initramfs
 * @returns {Promise<{ output: string, modules: string[] }>}
 */
export async function buildInitramfs(options) {
  const busybox = await findStaticBusybox()
  if ('missing' in busybox) throw new Error(`cannot build an initramfs: ${busybox.missing}`)
  const root = await mkdtemp(join(tmpdir(), 'imageswarm-initramfs-'))
  try {
    for (const dir of ['bin', 'sbin', 'dev', 'proc', 'sys', 'run', 'tmp', 'mnt', 'modules']) {
      await mkdir(join(root, dir), { recursive: true })
    }
    await copyFile(busybox.path, join(root, 'bin/busybox'))
    await chmod(join(root, 'bin/busybox'), 0o755)
    await writeFile(join(root, 'init'), options.init, { mode: 0o755 })
    for (const [path, content] of Object.entries(options.files ?? {})) {
      await mkdir(dirname(join(root, path)), { recursive: true })
      await writeFile(join(root, path), content, { mode: 0o755 })
    }
    /** @type {string[]} */
    let modules = []
    if (options.modules?.length) {
      if (!options.modulesDir) throw new Error('buildInitramfs: modules given without modulesDir')
      modules = await resolveModules(options.modulesDir, options.modules)
      for (const [index, path] of modules.entries()) {
        if (!path.endsWith('.ko')) {
          throw new Error(`${path}: compressed modules are not supported (busybox insmod)`)
        }
        const name = `${String(index + 1).padStart(2, '0')}-${basename(path)}`
        await copyFile(join(options.modulesDir, path), join(root, 'modules', name))
      }
    }
    const entries = (await listTree(root)).sort()
    await mkdir(dirname(options.output), { recursive: true })
    await run('cpio', ['-o', '-H', 'newc', '--quiet', '-R', '0:0', '-O', options.output], {
      cwd: root,
      input: `${entries.join('\n')}\n`,
    })
    return { output: options.output, modules }
  } finally {
    await rm(root, { recursive: true, force: true })
  }
}

/**
 * @param {string} root
 * @param {string} [prefix]
 * @returns {Promise<string[]>}
 */
async function listTree(root, prefix = '.') {
  /** @type {string[]} */
  const out = []
  for (const entry of await readdir(join(root, prefix), { withFileTypes: true })) {
    const path = `${prefix}/${entry.name}`
    out.push(path)
    if (entry.isDirectory()) out.push(...(await listTree(root, path)))
  }
  return out
}
