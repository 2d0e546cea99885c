import { hostname } from 'node:os'
import { readInstalledRecord, resolveInstallParameters, updateImage } from '@imageswarm/client'
import { ImageSwarmError, type Logger, readUpdateExcludeFile } from '@imageswarm/core'
import type { Command } from 'commander'
import type { ConsoleOutput } from '../console-output.js'
import { createInstallRenderer } from '../install-renderer.js'
import { runInterruptible } from '../interrupt.js'
import { collectList } from '../options.js'
import { addClientOptions, flagsByKey } from './install.js'

/**
 * `imageswarm update`: the install's settings (server, image, swarm, trust), with the
 * target `/` by default and the image the root records, plus what an update adds.
 */
export function addUpdateOptions(command: Command): Command {
  return addClientOptions(command, {
    // An update stages in the root it updates (/var/lib/imageswarm/update) and never
    // empties it: staging, the image cache and --force are the install's.
    omit: ['staging', 'memoryReserve', 'cache', 'force'],
    kernel: false,
    help: {
      target: 'root to update (default /)',
      image: 'image name (default: the one the root records in /etc/imageswarm/installed.json)',
      seedTimeSeconds: 'keep seeding the delta at most this long after updating (default 10m)',
    },
  })
    .option('--dry-run', 'list what would change, change nothing', false)
    .option(
      '--checksum',
      'compare every file’s SHA-256 with the image, not only its size and mtime',
      false,
    )
    .option('--no-delete', 'keep files the image does not have (SystemImager’s --no-delete)')
    .option(
      '--exclude <pattern...>',
      'never touch what matches (rsync-style: /etc/fstab, /home/*; repeat, or a,b)',
      collectList,
    )
    .option(
      '--exclude-file <file>',
      'more exclude patterns, one a line (the node’s own /etc/systemimager/updateclient.local.exclude is always read)',
    )
}

interface UpdateFlags {
  json: boolean
  dryRun: boolean
  checksum: boolean
  delete: boolean
  exclude?: string[]
  excludeFile?: string
  report?: boolean
  [flag: string]: unknown
}

/**
 * Updates a root (`/` by default) to the newest version of its image: the delta from the
 * version it records, through the swarm (docs/updates.md).
 */
export async function runUpdate(
  flags: UpdateFlags,
  logger: Logger,
  output: ConsoleOutput,
): Promise<void> {
  const byKey = flagsByKey(flags)
  byKey.target ??= '/'
  if (byKey.image === undefined) {
    const record = await readInstalledRecord(String(byKey.target))
    if (record === undefined) {
      throw new ImageSwarmError(
        'E_NOT_INSTALLED',
        `${String(byKey.target)} records no installed image (etc/imageswarm/installed.json)`,
        {
          operation: 'update',
          path: String(byKey.target),
          hint: 'name the image with --image NAME',
        },
      )
    }
    byKey.image = record.image
  }
  // A live node's kernel command line is its own system's, not an installer's: not read.
  const { config } = resolveInstallParameters({ flags: byKey, env: process.env, kernel: new Map() })
  const excludes = [
    ...(flags.exclude ?? []),
    ...(flags.excludeFile ? await readUpdateExcludeFile(flags.excludeFile, true) : []),
  ]
  const result = await runInterruptible(
    'update',
    'run the update again: it compares the root afresh and finishes',
    (signal) =>
      updateImage({
        config,
        update: {
          dryRun: flags.dryRun,
          checksum: flags.checksum,
          delete: flags.delete !== false,
          excludes,
        },
        logger,
        onEvent: createInstallRenderer({
          json: flags.json,
          console: output,
          node: config.node ?? hostname(),
        }),
        signal,
      }),
  )
  if (flags.dryRun && !flags.json) {
    const { plan } = result
    for (const line of plan.sample.write) process.stdout.write(`write  ${line}\n`)
    for (const line of plan.sample.remove) process.stdout.write(`remove ${line}\n`)
    process.stdout.write(
      `dry run: ${plan.write} to write, ${plan.remove} to remove, version ${plan.from ?? 'none'} → ${plan.to} (${plan.source})\n`,
    )
  }
}
