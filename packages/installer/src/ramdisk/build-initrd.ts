import {
  chmod,
  copyFile,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rename,
  rm,
  stat,
} from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { basename, dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  errnoOf,
  ImageSwarmError,
  type Logger,
  parsePublicKeyFile,
  sha256File,
  TOOL_PACKAGES,
  writeFileAtomically,
} from '@imageswarm/core'
import { DEFAULT_INITRD_LEVELS, type InitrdCompression, packInitrd } from './cpio-archive.js'
import { DEFAULT_KERNEL_CACHE, DEFAULT_KERNEL_PACKAGE, fetchDebianKernel } from './debian-kernel.js'
import { findHostTool } from './host-tools.js'
import type { InitrdManifest, InstallerProgramKind, RamdiskContents } from './initrd-manifest.js'
import { type KernelFiles, kernelFromFiles } from './kernel.js'
import {
  INSTALLER_MODULE_GROUPS,
  type ModuleGroup,
  readModuleIndex,
  selectModules,
} from './kernel-modules.js'
import { RAMDISK_HOST_FILES, RAMDISK_PROGRAMS, SKIPPED_APPLETS } from './ramdisk-programs.js'
import { RamdiskTree } from './ramdisk-tree.js'
import { runCommand, tailOf } from './run-command.js'
import { sharedLibraries } from './shared-libraries.js'

export interface BuildInitrdOptions {
  /** Directory that receives vmlinuz, initrd.img and initrd.manifest.json. */
  output: string
  /**
   * The program /init runs: the installer bundle (packages/cli/dist/imageswarm-installer.mjs)
   * or the install-only client (imageswarm-install.mjs).
   */
  program: string
  /** Default: `installer` when the file name contains "installer", else `install-only`. */
  programKind?: InstallerProgramKind
  /** A kernel given as files; default: Debian's `kernelPackage`. */
  kernel?: { vmlinuz: string; modulesDir: string }
  /** Default linux-image-cloud-amd64. */
  kernelPackage?: string
  /** Where downloaded kernels are kept; default /var/cache/imageswarm/kernels. */
  cacheDir?: string
  /** Default zstd. */
  compression?: InitrdCompression
  /** Default zstd 9, gzip 6 (see DEFAULT_INITRD_LEVELS). */
  compressionLevel?: number
  /** The node binary to carry; default the one running this build. */
  node?: string
  moduleGroups?: readonly ModuleGroup[]
  /** Modification time of every file in the archive, seconds; default $SOURCE_DATE_EPOCH, else 0. */
  mtime?: number
  /** Where the staging tree is made; default the system's temporary directory. */
  workDir?: string
  /**
   * The root public key (`root.pub` of `imageswarm key generate`) the node trusts: copied
   * to RAMDISK_TRUST_ROOT and made the installer's trust root, so the node installs signed
   * images only (docs/trust.md). The kernel command line cannot replace or remove it.
   */
  trustRoot?: string
  /**
   * The lowest key list version the node accepts (with `trustRoot`): the floor a node
   * without any record starts from; raise it after revoking a key.
   */
  minKeyListVersion?: number
  logger?: Logger
}

export interface BuildInitrdResult {
  vmlinuz: string
  initrd: string
  manifestPath: string
  manifest: InitrdManifest
}

/** Where the ramdisk's scripts live: `ramdisk/` beside `src/` and `dist/` in this package. */
export const RAMDISK_ASSETS_DIR = fileURLToPath(new URL('../../ramdisk/', import.meta.url))

/** Where the program goes in the ramdisk; /init runs whichever of the two it finds. */
export const RAMDISK_PROGRAM_PATHS: Readonly<Record<InstallerProgramKind, string>> = {
  installer: 'usr/lib/imageswarm/imageswarm-installer.mjs',
  'install-only': 'usr/lib/imageswarm/imageswarm-install.mjs',
}

/** Where `trustRoot` goes in the ramdisk. */
export const RAMDISK_TRUST_ROOT = 'etc/imageswarm/root.pub'

/**
 * Settings baked into the ramdisk: `KEY=value` lines that /init's run_installer exports for
 * the installer (imageswarm-lib.sh). The environment wins over the kernel command line, so
 * whoever answers the node's network boot cannot replace them.
 */
export const RAMDISK_INSTALLER_ENV = 'etc/imageswarm/installer.env'

/**
 * Builds the installer ramdisk: writes `output/vmlinuz`, `output/initrd.img` and
 * `output/initrd.manifest.json`, each beside its final name and then renamed, so a server
 * handing out the directory never serves half a file. The same inputs give the same
 * initrd.img, byte for byte.
 *
 * @example
 *   await buildInitrd({ output: '/srv/boot', program: 'packages/cli/dist/imageswarm-installer.mjs' })
 */
export async function buildInitrd(options: BuildInitrdOptions): Promise<BuildInitrdResult> {
  const logger = options.logger
  const compression = options.compression ?? 'zstd'
  const level = options.compressionLevel ?? DEFAULT_INITRD_LEVELS[compression]
  const node = options.node ?? process.execPath
  const programKind =
    options.programKind ??
    (basename(options.program).includes('installer') ? 'installer' : 'install-only')
  const mtime = options.mtime ?? (Number(process.env.SOURCE_DATE_EPOCH) || 0)

  await requireFile(
    options.program,
    'installer program',
    'run pnpm build, or pass --installer-bundle FILE',
  )
  await requireFile(node, 'node binary', 'pass the path of a node binary (version 20 or later)')
  const trust = await readTrustRoot(options)
  const [cpio, compressor, depmod, ldd] = await Promise.all([
    findHostTool('cpio', 'cpio'),
    findHostTool(compression, TOOL_PACKAGES[compression]),
    findHostTool('depmod', 'kmod'),
    findHostTool('ldd', 'libc-bin'),
  ])
  const programs = await Promise.all(
    RAMDISK_PROGRAMS.map(async (p) => ({
      ...p,
      source: await findHostTool(p.name, p.debianPackage),
    })),
  )
  await mkdir(options.output, { recursive: true }).catch((err: NodeJS.ErrnoException) => {
    throw new ImageSwarmError(
      'E_TARGET_NOT_WRITABLE',
      `cannot create ${options.output}: ${err.code}`,
      {
        operation: 'create initrd directory',
        path: options.output,
        hint: 'pass --output DIR, a directory you can write',
        cause: err,
      },
    )
  })

  const kernel: KernelFiles =
    options.kernel !== undefined
      ? await kernelFromFiles(options.kernel.vmlinuz, options.kernel.modulesDir)
      : await fetchDebianKernel({
          packageName: options.kernelPackage ?? DEFAULT_KERNEL_PACKAGE,
          cacheDir: options.cacheDir ?? DEFAULT_KERNEL_CACHE,
          logger,
        })
  logger?.info({ release: kernel.release, vmlinuz: kernel.vmlinuz }, 'kernel')

  const work = await mkdtemp(join(options.workDir ?? tmpdir(), 'imageswarm-initrd-'))
  const partial = (name: string) => join(options.output, `.${name}.partial-${process.pid}`)
  try {
    const root = join(work, 'root')
    await mkdir(root)
    const tree = await RamdiskTree.create(root)
    const libraries = new Set<string>()
    const addLibraries = async (binary: string) => {
      for (const library of await sharedLibraries(ldd, binary)) {
        for (const path of await tree.addHostPath(library)) libraries.add(path)
      }
    }

    // node, the programs and their libraries.
    await tree.copyFile(node, 'usr/bin/node')
    await addLibraries(node)
    const programEntries: RamdiskContents['programs'] = []
    for (const p of programs) {
      const dir = RamdiskTree.ramdiskPath(dirname(p.source))
      const path = `${dir}/${p.name}`
      if (dir === 'usr/bin' || dir === 'usr/sbin') {
        await tree.addHostPath(p.source)
      } else {
        // A tool outside the standard directories goes where /init's PATH finds it.
        await tree.copyFile(p.source, `usr/bin/${p.name}`)
      }
      await addLibraries(p.source)
      programEntries.push({
        name: p.name,
        source: p.source,
        path: dir === 'usr/bin' || dir === 'usr/sbin' ? path : `usr/bin/${p.name}`,
        debianPackage: p.debianPackage,
        version: null,
      })
    }
    const versions = await debianPackageVersions(programs.map((p) => p.debianPackage))
    for (const entry of programEntries) entry.version = versions.get(entry.debianPackage) ?? null
    for (const file of RAMDISK_HOST_FILES) {
      if (await stat(file.path).catch(() => undefined)) await tree.copyFile(file.path)
    }
    const busybox = programs.find((p) => p.name === 'busybox')!.source
    const applets = await linkBusyboxApplets(tree, busybox)

    // Kernel modules: the installer's subset with what it needs, indexed by depmod.
    const modules = await addModules(
      tree,
      kernel,
      options.moduleGroups ?? INSTALLER_MODULE_GROUPS,
      depmod,
    )
    logger?.info({ modules: modules.count, bytes: modules.bytes }, 'kernel modules selected')

    // /init, its shell library, the DHCP script and the program it runs.
    // Modes set here: a checkout or a copy of this package may have lost the x bits.
    await tree.copyFile(join(RAMDISK_ASSETS_DIR, 'init'), 'init', 0o755)
    await tree.copyFile(
      join(RAMDISK_ASSETS_DIR, 'imageswarm-lib.sh'),
      'usr/lib/imageswarm/imageswarm-lib.sh',
      0o644,
    )
    await tree.copyFile(
      join(RAMDISK_ASSETS_DIR, 'udhcpc.script'),
      'usr/lib/imageswarm/udhcpc.script',
      0o755,
    )
    await tree.addSymlink('usr/share/udhcpc/default.script', '/usr/lib/imageswarm/udhcpc.script')
    const programPath = RAMDISK_PROGRAM_PATHS[programKind]
    await tree.copyFile(options.program, programPath, 0o644)
    const legal = `${options.program}.LEGAL.txt`
    if (await stat(legal).catch(() => undefined)) {
      await tree.copyFile(legal, `${programPath}.LEGAL.txt`, 0o644)
    }
    await addEtcFiles(tree)
    if (trust) {
      await tree.addFile(RAMDISK_TRUST_ROOT, trust.text)
      await tree.addFile(
        RAMDISK_INSTALLER_ENV,
        [
          '# Baked in by imageswarm initrd --trust-root: the installer installs signed images only.',
          `IMAGESWARM_TRUST_ROOT=/${RAMDISK_TRUST_ROOT}`,
          ...(options.minKeyListVersion === undefined
            ? []
            : [`IMAGESWARM_MIN_KEY_LIST_VERSION=${options.minKeyListVersion}`]),
          '',
        ].join('\n'),
      )
    }
    if (!(await addConsoleDevice(tree))) {
      logger?.warn(
        'not root: /dev/console is left out of the ramdisk; the kernel’s built-in initramfs provides it on Debian kernels',
      )
    }

    const contents: RamdiskContents = {
      kernel: { release: kernel.release, source: kernel.source },
      node: { path: node, version: await nodeVersion(node) },
      program: {
        kind: programKind,
        // The file name only: the ramdisk's bytes must not depend on where the build ran.
        name: basename(options.program),
        path: `/${programPath}`,
        bytes: (await stat(options.program)).size,
        sha256: await sha256File(options.program),
      },
      programs: programEntries,
      libraries: [...libraries].sort(),
      modules: { count: modules.count, bytes: modules.bytes, unmatchedPatterns: modules.unmatched },
      busyboxApplets: applets,
      ...(trust
        ? {
            trust: {
              rootKeyId: trust.keyId,
              path: `/${RAMDISK_TRUST_ROOT}`,
              ...(options.minKeyListVersion === undefined
                ? {}
                : { minKeyListVersion: options.minKeyListVersion }),
            },
          }
        : {}),
      unpackedBytes: 0,
    }
    contents.unpackedBytes =
      (await treeBytes(root)) + Buffer.byteLength(JSON.stringify(contents, null, 2))
    await tree.addFile('etc/imageswarm/ramdisk.json', `${JSON.stringify(contents, null, 2)}\n`)

    logger?.info({ compression, level }, 'packing the ramdisk')
    const packed = await packInitrd({
      root,
      output: partial('initrd.img'),
      cpio,
      compressor,
      compression,
      level,
      mtime,
    })
    await copyFile(kernel.vmlinuz, partial('vmlinuz'))
    const manifest: InitrdManifest = {
      format: 1,
      vmlinuz: {
        bytes: (await stat(kernel.vmlinuz)).size,
        sha256: await sha256File(partial('vmlinuz')),
      },
      initrd: {
        bytes: packed.bytes,
        sha256: packed.sha256,
        compression,
        level,
        entries: packed.entries,
      },
      contents,
    }
    const result: BuildInitrdResult = {
      vmlinuz: join(options.output, 'vmlinuz'),
      initrd: join(options.output, 'initrd.img'),
      manifestPath: join(options.output, 'initrd.manifest.json'),
      manifest,
    }
    await rename(partial('initrd.img'), result.initrd)
    await rename(partial('vmlinuz'), result.vmlinuz)
    await writeFileAtomically(result.manifestPath, `${JSON.stringify(manifest, null, 2)}\n`)
    logger?.info(
      { initrd: result.initrd, bytes: packed.bytes, sha256: packed.sha256 },
      'initrd written',
    )
    return result
  } finally {
    await rm(work, { recursive: true, force: true })
    await rm(partial('initrd.img'), { force: true })
    await rm(partial('vmlinuz'), { force: true })
  }
}

/** The root key file, checked to be a minisign public key before any work is done. */
async function readTrustRoot(
  options: BuildInitrdOptions,
): Promise<{ text: string; keyId: string } | undefined> {
  if (options.trustRoot === undefined) {
    if (options.minKeyListVersion !== undefined) {
      throw new ImageSwarmError('E_USAGE', '--min-key-list-version needs --trust-root', {
        operation: 'build initrd',
        path: '--min-key-list-version',
        hint: 'a key list floor means something only to a node that checks key lists: give --trust-root keys/root.pub too',
      })
    }
    return undefined
  }
  let text: string
  try {
    text = await readFile(options.trustRoot, 'utf8')
  } catch (err) {
    throw new ImageSwarmError(
      'E_KEY_FILE_INVALID',
      `trust root ${options.trustRoot} cannot be read (${errnoOf(err) ?? String(err)})`,
      {
        operation: 'build initrd',
        path: options.trustRoot,
        hint: 'give the root.pub that imageswarm key generate wrote',
        cause: err,
      },
    )
  }
  // A minisign public key, or E_KEY_FILE_INVALID naming the file.
  const { keyId } = parsePublicKeyFile(text, options.trustRoot)
  return { text, keyId }
}

async function requireFile(path: string, what: string, hint: string): Promise<void> {
  const info = await stat(path).catch(() => undefined)
  if (info?.isFile() !== true) {
    throw new ImageSwarmError('E_USAGE', `${what} ${path} does not exist`, {
      operation: 'build initrd',
      path,
      hint,
    })
  }
}

/** The Debian version of each installed package (`dpkg-query -W`); empty off Debian. */
async function debianPackageVersions(packages: readonly string[]): Promise<Map<string, string>> {
  const versions = new Map<string, string>()
  const dpkgQuery = await findHostTool('dpkg-query', 'dpkg').catch(() => undefined)
  if (dpkgQuery === undefined) return versions
  // dpkg-query exits 1 when a package is not installed, and still prints the others.
  const result = await runCommand(dpkgQuery, [
    '-W',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's format, not JavaScript's
    '-f=${Package}\t${Version}\n',
    ...new Set(packages),
  ])
  for (const line of result.stdout.split('\n')) {
    const [name, version] = line.split('\t')
    if (name && version) versions.set(name.split(':')[0]!, version)
  }
  return versions
}

async function nodeVersion(node: string): Promise<string> {
  if (node === process.execPath) return process.version
  const result = await runCommand(node, ['--version'])
  return result.stdout.trim()
}

/**
 * A symlink for each busybox applet where no real program is installed: busybox's `mount`
 * must not shadow util-linux's. Returns the number of links made.
 */
async function linkBusyboxApplets(tree: RamdiskTree, busybox: string): Promise<number> {
  const listed = await runCommand(busybox, ['--list-full'])
  if (listed.code !== 0) {
    throw new ImageSwarmError(
      'E_TOOL_MISSING',
      `${busybox} --list-full failed: ${tailOf(listed.stderr)}`,
      {
        operation: 'list busybox applets',
        path: busybox,
        hint: "install the Debian package 'busybox-static' (apt-get install busybox-static)",
      },
    )
  }
  let links = 0
  for (const line of listed.stdout.split('\n')) {
    const applet = line.trim()
    const name = basename(applet)
    if (applet === '' || SKIPPED_APPLETS.includes(name) || name === 'busybox') continue
    if (tree.has(`usr/bin/${name}`) || tree.has(`usr/sbin/${name}`)) continue
    await tree.addSymlink(RamdiskTree.ramdiskPath(`/${applet}`), '/usr/bin/busybox')
    links++
  }
  return links
}

/**
 * Modules a kernel ships compressed (Debian 13: .ko.xz) go into the ramdisk plain: busybox's
 * modprobe reads a compressed module only when built with the matching option, a plain one
 * always; the ramdisk's own compression makes up the size.
 */
const MODULE_DECOMPRESSORS = {
  xz: ['xz', 'xz-utils'],
  zst: ['zstd', 'zstd'],
  gz: ['gzip', 'gzip'],
} as const

async function addModules(
  tree: RamdiskTree,
  kernel: KernelFiles,
  groups: readonly ModuleGroup[],
  depmod: string,
): Promise<{ count: number; bytes: number; unmatched: string[] }> {
  const selection = selectModules(await readModuleIndex(kernel.modulesDir), groups)
  const dir = `usr/lib/modules/${kernel.release}`
  let bytes = 0
  for (const module of selection.modules) {
    const source = join(kernel.modulesDir, module)
    const suffix = /\.ko\.(xz|zst|gz)$/.exec(module)?.[1] as
      | keyof typeof MODULE_DECOMPRESSORS
      | undefined
    if (suffix === undefined) {
      await tree.copyFile(source, `${dir}/${module}`)
    } else {
      const [tool, debianPackage] = MODULE_DECOMPRESSORS[suffix]
      const plain = `${dir}/${module.slice(0, -(suffix.length + 1))}`
      await tree.addCommandOutput(plain, await findHostTool(tool, debianPackage), ['-dc', source])
    }
    bytes += (await stat(join(tree.root, dir, module.replace(/\.(xz|zst|gz)$/, '')))).size
  }
  // depmod reads these to order modules.dep and to know what is built in.
  for (const name of ['modules.order', 'modules.builtin', 'modules.builtin.modinfo']) {
    const path = join(kernel.modulesDir, name)
    if (await stat(path).catch(() => undefined)) await tree.copyFile(path, `${dir}/${name}`)
  }
  await tree.addDirectory(dir)
  const result = await runCommand(depmod, ['-b', tree.root, kernel.release])
  if (result.code !== 0) {
    throw new ImageSwarmError(
      'E_PACK_FAILED',
      `depmod for the ramdisk failed: ${tailOf(result.stderr)}`,
      {
        operation: 'index ramdisk modules',
        path: join(tree.root, dir),
        hint: 'check that kmod is installed and working (depmod --version)',
      },
    )
  }
  for (const name of await readdir(join(tree.root, dir))) {
    if (name.startsWith('modules.') && !tree.has(`${dir}/${name}`)) {
      // depmod creates its indexes by the builder's umask; the archive must not depend on it.
      await chmod(join(tree.root, dir, name), 0o644)
      tree.markAdded(`${dir}/${name}`)
    }
  }
  return { count: selection.modules.length, bytes, unmatched: selection.unmatched }
}

async function addEtcFiles(tree: RamdiskTree): Promise<void> {
  await tree.addFile('etc/passwd', 'root:x:0:0:root:/root:/bin/sh\n')
  await tree.addFile('etc/group', 'root:x:0:\n')
  await tree.addFile('etc/hosts', '127.0.0.1\tlocalhost\n::1\tlocalhost\n')
  // glibc (node's getaddrinfo) reads this for the order of name sources.
  await tree.addFile('etc/nsswitch.conf', 'hosts: files dns\n')
  await tree.addSymlink('etc/mtab', '/proc/self/mounts')
}

/**
 * /dev/console, which the kernel opens for /init's output before /init mounts devtmpfs.
 * Making a device node needs root; without it the kernel's built-in initramfs must
 * provide one (Debian's kernels have it).
 */
async function addConsoleDevice(tree: RamdiskTree): Promise<boolean> {
  if (process.getuid?.() !== 0) return false
  const mknod = await findHostTool('mknod', 'coreutils')
  const result = await runCommand(mknod, [
    '-m',
    '600',
    join(tree.root, 'dev/console'),
    'c',
    '5',
    '1',
  ])
  if (result.code !== 0) return false
  tree.markAdded('dev/console')
  return true
}

async function treeBytes(root: string): Promise<number> {
  let bytes = 0
  for (const entry of await readdir(root, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) bytes += (await stat(join(entry.parentPath, entry.name))).size
  }
  return bytes
}
