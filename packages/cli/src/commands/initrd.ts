import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { ImageSwarmError, type Logger } from '@imageswarm/core'
import {
  buildInitrd,
  DEFAULT_INITRD_LEVELS,
  DEFAULT_KERNEL_CACHE,
  DEFAULT_KERNEL_PACKAGE,
  type InitrdCompression,
} from '@imageswarm/installer'
import { type Command, Option } from 'commander'
import { integerFlag } from '../options.js'

/** The bundles `pnpm build` writes beside this file's dist/ directory. */
const INSTALLER_BUNDLE = fileURLToPath(new URL('../imageswarm-installer.mjs', import.meta.url))
const INSTALL_ONLY_BUNDLE = fileURLToPath(new URL('../imageswarm-install.mjs', import.meta.url))

export interface InitrdFlags {
  output: string
  kernel?: string
  modules?: string
  kernelPackage: string
  compression: InitrdCompression
  compressionLevel?: number
  cacheDir: string
  installerBundle?: string
  /** buildInitrd's `trustRoot`: the root.pub baked in. */
  trustRoot?: string
  minKeyListVersion?: number
}

/** `imageswarm initrd`'s flags. */
export function addInitrdOptions(command: Command): Command {
  return command
    .requiredOption('--output <dir>', 'directory for vmlinuz, initrd.img and initrd.manifest.json')
    .option('--kernel <file>', 'kernel image to use instead of a Debian package (with --modules)')
    .option('--modules <dir>', "that kernel's modules directory, e.g. /lib/modules/$(uname -r)")
    .option('--kernel-package <name>', 'Debian kernel package to download', DEFAULT_KERNEL_PACKAGE)
    .option(
      '--compression <kind>',
      'zstd or gzip',
      (value: string): InitrdCompression => {
        if (value === 'zstd' || value === 'gzip') return value
        throw new ImageSwarmError(
          'E_USAGE',
          `--compression takes zstd or gzip, not ${JSON.stringify(value)}`,
          {
            path: '--compression',
          },
        )
      },
      'zstd',
    )
    .option(
      '--compression-level <n>',
      `zstd 1-19 (default ${DEFAULT_INITRD_LEVELS.zstd}) or gzip 1-9 (default ${DEFAULT_INITRD_LEVELS.gzip})`,
      integerFlag('--compression-level', 1, 19),
    )
    .addOption(
      new Option('--cache-dir <dir>', 'where downloaded kernel packages are kept')
        .default(DEFAULT_KERNEL_CACHE)
        .env('IMAGESWARM_KERNEL_CACHE'),
    )
    .option(
      '--trust-root <file>',
      'root public key (keys/root.pub) baked into the ramdisk: nodes install signed images only',
    )
    .option(
      '--min-key-list-version <n>',
      'with --trust-root: the lowest key list version nodes accept (raise it after a revocation)',
      integerFlag('--min-key-list-version', 1, Number.MAX_SAFE_INTEGER),
    )
    .option(
      '--installer-bundle <file>',
      'program /init runs (default: imageswarm-installer.mjs, else the install-only imageswarm-install.mjs, from this build)',
    )
}

/**
 * `imageswarm initrd`: builds the installer ramdisk for network boot and prints what it
 * wrote: one line per file with its size (and the kernel release, the SHA-256).
 */
export async function runInitrd(flags: InitrdFlags, logger: Logger): Promise<void> {
  if ((flags.kernel === undefined) !== (flags.modules === undefined)) {
    throw new ImageSwarmError('E_USAGE', '--kernel and --modules go together', {
      path: flags.kernel === undefined ? '--modules' : '--kernel',
      hint: 'for example --kernel /boot/vmlinuz-$(uname -r) --modules /lib/modules/$(uname -r)',
    })
  }
  if (flags.compression === 'gzip' && (flags.compressionLevel ?? 1) > 9) {
    throw new ImageSwarmError(
      'E_USAGE',
      `gzip levels go from 1 to 9, not ${flags.compressionLevel}`,
      {
        path: '--compression-level',
      },
    )
  }
  const program =
    flags.installerBundle ?? (existsSync(INSTALLER_BUNDLE) ? INSTALLER_BUNDLE : INSTALL_ONLY_BUNDLE)
  const result = await buildInitrd({
    output: flags.output,
    program,
    kernel:
      flags.kernel !== undefined && flags.modules !== undefined
        ? { vmlinuz: flags.kernel, modulesDir: flags.modules }
        : undefined,
    kernelPackage: flags.kernelPackage,
    cacheDir: flags.cacheDir,
    compression: flags.compression,
    compressionLevel: flags.compressionLevel,
    ...(flags.trustRoot === undefined ? {} : { trustRoot: flags.trustRoot }),
    ...(flags.minKeyListVersion === undefined
      ? {}
      : { minKeyListVersion: flags.minKeyListVersion }),
    logger,
  })
  const { manifest } = result
  process.stdout.write(
    [
      `${result.vmlinuz}\t${manifest.vmlinuz.bytes}\tkernel ${manifest.contents.kernel.release}`,
      `${result.initrd}\t${manifest.initrd.bytes}\tsha256 ${manifest.initrd.sha256}`,
      `${result.manifestPath}\t${manifest.contents.program.kind} ${manifest.contents.program.path}`,
      ...(manifest.contents.trust
        ? [
            `${manifest.contents.trust.path}\troot key ${manifest.contents.trust.rootKeyId}${manifest.contents.trust.minKeyListVersion === undefined ? '' : `, key list version ${manifest.contents.trust.minKeyListVersion} or later`}: signed images only`,
          ]
        : []),
      '',
    ].join('\n'),
  )
}
