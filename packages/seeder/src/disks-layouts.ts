import { readdir, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import {
  type DiskLayout,
  errnoOf,
  ImageSwarmError,
  type Logger,
  silentLogger,
} from '@imageswarm/core'
import { parseDisksLayoutXml } from './disks-layout-xml.js'

/** A layout's file in `scripts/disks-layouts/`, read and checked when the server started. */
export interface NamedLayout {
  /** The file's name: `compute.xml`, or `compute` for a file without the extension. */
  file: string
  layout: DiskLayout
}

/**
 * Every disks layout in `DIR` (`/var/lib/systemimager/scripts/disks-layouts`), read and
 * checked once, when the server starts: a layout the installer cannot apply is one error
 * at start, naming the file and the element, not one on every node that would use it.
 * Files named `NAME.xml` are layouts; so is a file with no extension that starts like XML
 * (SystemImager looks for `NAME.xml`, then `NAME`); anything else there (a README) is
 * left alone. Changed files are read at the next start.
 */
export class DisksLayouts {
  readonly dir: string
  readonly #layouts: Map<string, NamedLayout>

  private constructor(dir: string, layouts: Map<string, NamedLayout>) {
    this.dir = dir
    this.#layouts = layouts
  }

  static async load(dir: string, logger: Logger = silentLogger()): Promise<DisksLayouts> {
    const names = await readdir(dir, { withFileTypes: true }).catch((err: unknown) => {
      if (errnoOf(err) === 'ENOENT') return undefined
      throw new ImageSwarmError(
        'E_CONFIG_INVALID',
        `cannot read disks layouts in ${dir}: ${errnoOf(err) ?? String(err)}`,
        {
          operation: 'read disks layouts',
          path: dir,
          hint: 'check --scripts-dir and the permissions of its disks-layouts directory',
          cause: err,
        },
      )
    })
    const layouts = new Map<string, NamedLayout>()
    if (names === undefined) {
      logger.info(
        { dir },
        'no disks layouts directory: every node gets the installer’s default layout',
      )
      return new DisksLayouts(dir, layouts)
    }
    // Symlinks are followed (a site may link node07.xml to compute.xml, as si_addclients
    // links scripts): what is read is copied into memory, nothing is served from the path.
    const files = names
      .filter((entry) => entry.isFile() || entry.isSymbolicLink())
      .map((entry) => entry.name)
      .filter((name) => !name.startsWith('.') && !name.endsWith('~'))
      .sort()
    for (const file of files) {
      const path = join(dir, file)
      const bare = !file.includes('.')
      if (!file.endsWith('.xml') && !bare) continue
      if (!(await stat(path).catch(() => undefined))?.isFile()) continue
      const text = await readFile(path, 'utf8').catch((err: unknown) => {
        throw new ImageSwarmError(
          'E_CONFIG_INVALID',
          `cannot read disks layout ${path}: ${errnoOf(err) ?? String(err)}`,
          {
            operation: 'read disks layouts',
            path,
            hint: 'check the file and its permissions',
            cause: err,
          },
        )
      })
      if (bare && !text.trimStart().startsWith('<')) {
        logger.debug({ file: path }, 'not XML: not a disks layout')
        continue
      }
      const { layout, warnings } = parseDisksLayoutXml(text, path)
      for (const warning of warnings) logger.warn({ layout: path }, warning)
      layouts.set(file, { file, layout })
    }
    logger.info({ dir, layouts: [...layouts.keys()] }, 'disks layouts read and checked')
    return new DisksLayouts(dir, layouts)
  }

  get files(): string[] {
    return [...this.#layouts.keys()]
  }

  /**
   * The layout for `name` as SystemImager finds `scripts/disks-layouts/NAME`: `NAME.xml`
   * first, then `NAME` (5.x's `choose_filename`); with `exact` (si.disks-layout), the file
   * `NAME` first, then `NAME.xml`, as its `sis_prepare_disks` does.
   */
  find(name: string, exact = false): NamedLayout | undefined {
    const order = exact ? [name, `${name}.xml`] : [`${name}.xml`, name]
    for (const file of order) {
      const found = this.#layouts.get(file)
      if (found) return found
    }
    return undefined
  }
}
