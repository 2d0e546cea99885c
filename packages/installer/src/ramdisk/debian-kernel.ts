import { mkdir, mkdtemp, readdir, rename, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { ImageSwarmError, type Logger, sha256File } from '@imageswarm/core'
import { findHostTool } from './host-tools.js'
import { type KernelFiles, kernelRelease } from './kernel.js'
import { runCommand, tailOf } from './run-command.js'

/** Debian's kernel for virtual machines and clouds: small (91 MB of modules), boots QEMU's virtio devices. */
export const DEFAULT_KERNEL_PACKAGE = 'linux-image-cloud-amd64'
export const DEFAULT_KERNEL_CACHE = '/var/cache/imageswarm/kernels'

export interface DebianKernelOptions {
  /** A kernel package: a meta-package (`linux-image-cloud-amd64`) or a versioned one. */
  packageName?: string
  /** Where .deb files and their unpacked trees are kept across builds. */
  cacheDir?: string
  logger?: Logger
}

/** One package record of `apt-cache show`. */
export interface AptRecord {
  package: string
  version: string
  depends: string[]
}

/** The first record of `apt-cache show --no-all-versions` output (the candidate version). */
export function parseAptRecord(text: string): AptRecord | undefined {
  const fields = new Map<string, string>()
  let last: string | undefined
  for (const line of text.split('\n')) {
    if (line === '') {
      if (fields.size > 0) break
      continue
    }
    if (/^\s/.test(line) && last !== undefined) {
      fields.set(last, `${fields.get(last)} ${line.trim()}`)
      continue
    }
    const colon = line.indexOf(':')
    if (colon < 0) continue
    last = line.slice(0, colon)
    fields.set(last, line.slice(colon + 1).trim())
  }
  const pkg = fields.get('Package')
  const version = fields.get('Version')
  if (pkg === undefined || version === undefined) return undefined
  const depends = (fields.get('Depends') ?? '')
    .split(/[,|]/)
    .map((dep) => dep.trim().split(/[\s(]/)[0] ?? '')
    .filter((dep) => dep !== '')
  return { package: pkg, version, depends }
}

/**
 * The package that holds the kernel files: the one asked for when it is versioned
 * (`linux-image-6.1.0-57-cloud-amd64`), else the versioned kernel a meta-package depends on.
 */
export function versionedKernelPackage(record: AptRecord): string | undefined {
  if (/^linux-image-\d/.test(record.package)) return record.package
  return record.depends.find((dep) => /^linux-image-\d/.test(dep))
}

/** `'URL' FILE SIZE SHA256:HEX`, a line of `apt-get download --print-uris`. */
export function parsePrintUris(
  text: string,
): { url: string; file: string; bytes: number; sha256: string } | undefined {
  const match = /^'([^']+)' (\S+) (\d+) SHA256:([0-9a-f]{64})$/m.exec(text)
  if (match === null) return undefined
  return { url: match[1]!, file: match[2]!, bytes: Number(match[3]), sha256: match[4]! }
}

/**
 * Debian's kernel, as files: resolves the package with apt-cache, downloads its .deb with
 * `apt-get download` into the cache (skipped when the cache holds it with the SHA-256 apt's
 * index gives), unpacks it with `dpkg-deb -x` and runs depmod on the unpacked tree, once.
 * Each step writes beside its result and renames, so a build killed halfway leaves no
 * half-made file in the cache.
 */
export async function fetchDebianKernel(options: DebianKernelOptions = {}): Promise<KernelFiles> {
  const requested = options.packageName ?? DEFAULT_KERNEL_PACKAGE
  const cacheDir = options.cacheDir ?? DEFAULT_KERNEL_CACHE
  const logger = options.logger
  const [aptCache, aptGet, dpkgDeb, depmod] = await Promise.all([
    findHostTool('apt-cache', 'apt'),
    findHostTool('apt-get', 'apt'),
    findHostTool('dpkg-deb', 'dpkg'),
    findHostTool('depmod', 'kmod'),
  ])
  await mkdir(cacheDir, { recursive: true }).catch((err: NodeJS.ErrnoException) => {
    throw new ImageSwarmError(
      'E_TARGET_NOT_WRITABLE',
      `cannot create the kernel cache ${cacheDir}: ${err.code}`,
      {
        operation: 'create kernel cache',
        path: cacheDir,
        hint: 'run as root, or pass --cache-dir DIR (a directory you can write)',
        cause: err,
      },
    )
  })

  const shown = await runCommand(aptCache, ['show', '--no-all-versions', requested])
  const record = shown.code === 0 ? parseAptRecord(shown.stdout) : undefined
  if (record === undefined) {
    throw new ImageSwarmError('E_USAGE', `apt knows no package ${requested}`, {
      operation: 'find kernel package',
      path: requested,
      hint: 'check --kernel-package, run apt-get update, or pass --kernel FILE --modules DIR',
    })
  }
  const pkg = versionedKernelPackage(record)
  if (pkg === undefined) {
    throw new ImageSwarmError(
      'E_USAGE',
      `${requested} is not a kernel package (it depends on no linux-image-VERSION)`,
      {
        operation: 'find kernel package',
        path: requested,
        hint: 'pass a kernel package such as linux-image-cloud-amd64 or linux-image-amd64',
      },
    )
  }
  const uris = await runCommand(aptGet, ['download', '--print-uris', pkg])
  const wanted = uris.code === 0 ? parsePrintUris(uris.stdout) : undefined
  if (wanted === undefined) {
    throw new ImageSwarmError('E_USAGE', `apt cannot locate ${pkg}: ${tailOf(uris.stderr)}`, {
      operation: 'find kernel package',
      path: pkg,
      hint: 'run apt-get update, or pass --kernel FILE --modules DIR',
    })
  }
  const version =
    /_([^_]+)_[^_]+\.deb$/.exec(wanted.file)?.[1]?.replace('%3a', ':') ?? record.version
  const deb = join(cacheDir, wanted.file)

  if ((await fileSha256(deb)) !== wanted.sha256) {
    logger?.info({ package: pkg, version, bytes: wanted.bytes }, 'downloading the kernel package')
    const scratch = await mkdtemp(join(cacheDir, '.download-'))
    try {
      // As root, apt downloads as the _apt user, who cannot write this private directory
      // (apt then warns and downloads as root): say so up front. The file is checked
      // against the index's SHA-256 below either way.
      const download = await runCommand(
        aptGet,
        ['-o', 'APT::Sandbox::User=root', 'download', pkg],
        {
          cwd: scratch,
        },
      )
      const got = join(scratch, wanted.file)
      if (download.code !== 0 || (await fileSha256(got)) !== wanted.sha256) {
        throw new ImageSwarmError(
          'E_DOWNLOAD_FAILED',
          `apt-get download ${pkg} failed: ${tailOf(download.stderr)}`,
          {
            operation: 'download kernel package',
            path: wanted.url,
            hint: 'check the network and the apt sources (apt-get update), or pass --kernel FILE --modules DIR',
          },
        )
      }
      await rename(got, deb)
    } finally {
      await rm(scratch, { recursive: true, force: true })
    }
  }

  const unpacked = join(cacheDir, wanted.file.replace(/\.deb$/, ''))
  if (!(await isDirectory(unpacked))) {
    logger?.info({ deb }, 'unpacking the kernel package')
    const scratch = await mkdtemp(join(cacheDir, '.unpack-'))
    try {
      const extract = await runCommand(dpkgDeb, ['-x', deb, scratch])
      if (extract.code !== 0) {
        throw new ImageSwarmError(
          'E_EXTRACT_FAILED',
          `dpkg-deb -x ${deb} failed: ${tailOf(extract.stderr)}`,
          {
            operation: 'unpack kernel package',
            path: deb,
            hint: `remove ${deb} so that it is downloaded again`,
          },
        )
      }
      const tree = await modulesTree(scratch)
      // Debian runs depmod when it installs a kernel; the package itself has no modules.dep.
      const dep = await runCommand(depmod, ['-b', tree.base, tree.release])
      if (dep.code !== 0) {
        throw new ImageSwarmError(
          'E_EXTRACT_FAILED',
          `depmod for ${tree.release} failed: ${tailOf(dep.stderr)}`,
          {
            operation: 'index kernel modules',
            path: join(tree.base, 'lib/modules', tree.release),
            hint: 'check that kmod is installed and working (depmod --version)',
          },
        )
      }
      await rename(scratch, unpacked).catch(async (err: NodeJS.ErrnoException) => {
        // Another build unpacked the same package meanwhile; its copy is as good.
        if (err.code !== 'ENOTEMPTY' && err.code !== 'EEXIST') throw err
      })
    } finally {
      await rm(scratch, { recursive: true, force: true })
    }
  }
  const tree = await modulesTree(unpacked)
  const vmlinuz = join(unpacked, 'boot', `vmlinuz-${tree.release}`)
  const release = await kernelRelease(vmlinuz)
  return {
    vmlinuz,
    modulesDir: join(tree.base, 'lib/modules', release),
    release,
    source: {
      kind: 'debian-package',
      requested,
      package: pkg,
      version,
      deb: wanted.file,
      debSha256: wanted.sha256,
    },
  }
}

/** Where an unpacked kernel package keeps its modules: lib/modules (bookworm) or usr/lib/modules (trixie). */
async function modulesTree(root: string): Promise<{ base: string; release: string }> {
  for (const base of [root, join(root, 'usr')]) {
    const releases = await readdir(join(base, 'lib/modules')).catch(() => [] as string[])
    if (releases.length === 1) return { base, release: releases[0]! }
  }
  throw new ImageSwarmError(
    'E_EXTRACT_FAILED',
    `${root} holds no single lib/modules/RELEASE directory`,
    {
      operation: 'unpack kernel package',
      path: root,
      hint: 'pass a package that contains one kernel (linux-image-…), or --kernel FILE --modules DIR',
    },
  )
}

async function isDirectory(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isDirectory() === true
}

/** The SHA-256 of a file, or undefined if there is none. */
async function fileSha256(path: string): Promise<string | undefined> {
  if (!(await stat(path).catch(() => undefined))?.isFile()) return undefined
  return sha256File(path)
}
