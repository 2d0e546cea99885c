import { mkdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { formatMiB } from '@imageswarm/client'
import {
  checkSignedFile,
  extractArchive,
  ImageSwarmError,
  type Logger,
  overridePath,
} from '@imageswarm/core'
import { fetchFileFrom, type InstallFileSource } from './install-files.js'
import type { InstallerConsole } from './installer-console.js'

/**
 * The largest override archive the installer takes. Overrides are configuration trees
 * (SystemImager's overrides/NAME: a few files per group or node); the archive is held in
 * memory while it is written to the work directory, which is memory too in the ramdisk.
 */
export const OVERRIDE_SIZE_LIMIT = 256 * 1024 * 1024

/**
 * Copies each override over the installed system, in order, the last one winning:
 * `GET /install/overrides/NAME.tar`, extracted by core's extractArchive with every
 * metadata (owners, modes, times, xattrs) and its checks on each member's path. An override
 * the server does not have (404) is said and skipped, as SystemImager's rsync of a missing
 * overrides/NAME only logs it. Returns the names applied.
 *
 * With `digests` (a signed node config), each archive must match its SHA-256 before it is
 * written or extracted (E_SIGNATURE_INVALID naming it), and a 404 stops the install: the
 * server signed a config naming it, so its absence is not the site's choice.
 */
export async function applyOverrides(
  options: InstallFileSource & {
    names: readonly string[]
    target: string
    workDir: string
    /** Override name → SHA-256 of its tar, from a verified node config. */
    digests?: Readonly<Record<string, string>>
    console: InstallerConsole
    logger: Logger
  },
): Promise<string[]> {
  const applied: string[] = []
  for (const name of options.names) {
    const { body: archive, url } = await fetchFileFrom(
      options,
      overridePath(name),
      `override ${name}`,
      OVERRIDE_SIZE_LIMIT,
    )
    if (archive === undefined && options.digests) {
      throw new ImageSwarmError(
        'E_SIGNATURE_INVALID',
        `override ${name} is named in the signed node config, but the server does not serve it (${url}: 404)`,
        {
          operation: 'verify node config file',
          path: url,
          hint: 'the override directory went away on the server after the node config was signed: install the node again',
        },
      )
    }
    if (archive === undefined) {
      options.console.say(`override ${name}: the server has none, skipped`)
      options.logger.warn({ override: name }, 'override not on the server; skipped')
      continue
    }
    if (options.digests) checkSignedFile(archive, options.digests[name], `override ${name}`, url)
    await mkdir(options.workDir, { recursive: true })
    const file = join(options.workDir, `override-${name}.tar`)
    try {
      await writeFile(file, archive)
      const { entries } = await extractArchive({
        archive: file,
        target: options.target,
        logger: options.logger,
      })
      options.console.say(
        `override ${name}: ${entries} entries (${formatMiB(archive.byteLength)}) copied over the image`,
      )
    } finally {
      await rm(file, { force: true })
    }
    applied.push(name)
  }
  return applied
}
