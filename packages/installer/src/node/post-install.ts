import { chmod, copyFile, lstat, mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { checkSignedFile, ImageSwarmError, type Logger, postInstallPath } from '@imageswarm/core'
import { CHROOT_ENV } from './bootloader.js'
import { fetchFileFrom, type InstallFileSource } from './install-files.js'
import type { InstallerConsole } from './installer-console.js'
import {
  type InstallVariables,
  imageScriptsToRun,
  type ScriptEntry,
  variablesText,
} from './post-install-plan.js'
import { pathInRoot } from './root-path.js'
import { runTool, tail } from './run-tool.js'

/** Where the image's own post-install scripts live. */
export const IMAGE_SCRIPTS_DIR = '/etc/imageswarm/post-install.d'

/** Where the scripts run from, in the new system, as SystemImager puts them (removed afterwards). */
export const POST_INSTALL_DIR = '/tmp/post-install'

/** A post-install script is a script: a few KiB; more is not one. */
export const POST_INSTALL_SIZE_LIMIT = 16 * 1024 * 1024

/** Lines of a failed script's output its error shows. */
const FAILED_SCRIPT_LINES = 15

/**
 * Runs the post-install scripts chrooted into the new system, as SystemImager does: each is
 * copied to /tmp/post-install (mode 0755) beside `variables.txt`, which they source, and
 * run as `chroot /a /tmp/post-install/NAME`; the directory is removed afterwards, whatever
 * happened. First the image's own (/etc/imageswarm/post-install.d, executable, by name):
 * the image is the most general class, as SystemImager runs `all` and the image's scripts
 * before those of the node's groups and host; then the server's, in the order the node
 * config gives (`GET /install/post-install/NAME`). A server script of the same name as one
 * of the image's replaces it. A script that fails stops the install: E_POST_INSTALL_FAILED
 * with its exit status and last lines.
 *
 * With `digests` (a signed node config), every server script must match its SHA-256 before
 * any script runs (E_SIGNATURE_INVALID naming it): all are fetched and checked first.
 */
export async function runPostInstallScripts(
  options: InstallFileSource & {
    target: string
    serverScripts: readonly string[]
    variables: InstallVariables
    /** Script name → SHA-256, from a verified node config. */
    digests?: Readonly<Record<string, string>>
    console: InstallerConsole
    logger: Logger
  },
): Promise<string[]> {
  const { target, console, logger } = options
  const image = await listImageScripts(target)
  for (const skipped of image.skipped) {
    console.say(`post-install: ${IMAGE_SCRIPTS_DIR}/${skipped}: skipped`)
  }
  for (const name of options.serverScripts) {
    // The node config's names are file names; `.` and `..` pass its pattern but are none.
    if (name === '.' || name === '..') {
      throw new ImageSwarmError(
        'E_SERVER_RESPONSE',
        `the server lists ${JSON.stringify(name)} as a post-install script`,
        {
          operation: 'run post-install scripts',
          hint: 'the server and the installer disagree on the node config: run the same imageswarm version on both',
        },
      )
    }
  }
  const fromImage = image.run.filter((name) => !options.serverScripts.includes(name))
  const order = [...fromImage, ...options.serverScripts]
  if (order.length === 0) return []

  const dir = join(target, POST_INSTALL_DIR)
  if (
    await lstat(dir).then(
      () => true,
      () => false,
    )
  ) {
    throw new ImageSwarmError(
      'E_TARGET_NOT_EMPTY',
      `the image has ${POST_INSTALL_DIR} already; the installer runs post-install scripts from there`,
      {
        operation: 'run post-install scripts',
        path: dir,
        hint: `remove ${POST_INSTALL_DIR} from the image and republish it`,
      },
    )
  }
  try {
    await mkdir(dir, { mode: 0o755 })
    await writeFile(join(dir, 'variables.txt'), variablesText(options.variables), { mode: 0o644 })
    for (const name of fromImage) {
      const source = await pathInRoot(target, join(IMAGE_SCRIPTS_DIR, name))
      await copyFile(source, join(dir, name))
      await chmod(join(dir, name), 0o755)
    }
    for (const name of options.serverScripts) {
      const { body, url } = await fetchFileFrom(
        options,
        postInstallPath(name),
        `post-install script ${name}`,
        POST_INSTALL_SIZE_LIMIT,
      )
      if (body === undefined) {
        throw new ImageSwarmError(
          'E_SERVER_RESPONSE',
          `the server lists post-install script ${name} for this node but does not serve it (404)`,
          {
            operation: 'fetch post-install scripts',
            path: postInstallPath(name),
            hint: 'see the image server’s log: scripts/post-install changed while the node installed?',
          },
        )
      }
      if (options.digests) {
        checkSignedFile(body, options.digests[name], `post-install script ${name}`, url)
      }
      await writeFile(join(dir, name), body, { mode: 0o755 })
    }
    for (const name of order) {
      const from = fromImage.includes(name) ? 'image' : 'server'
      console.say(
        `post-install: running ${name} (${from === 'image' ? `the image's ${IMAGE_SCRIPTS_DIR}` : 'the server'})`,
      )
      const started = performance.now()
      const result = await runTool('chroot', [target, join(POST_INSTALL_DIR, name)], {
        what: `post-install script ${name}`,
        code: 'E_POST_INSTALL_FAILED',
        hint: '',
        env: CHROOT_ENV,
        logger,
        allowFailure: true,
      })
      if (result.code !== 0) {
        const status = result.signal
          ? `was killed by ${result.signal}`
          : `exited with ${result.code}`
        const output = tail(result.output, FAILED_SCRIPT_LINES)
        throw new ImageSwarmError(
          'E_POST_INSTALL_FAILED',
          `post-install script ${name} (from the ${from}) ${status}${output ? `; its last lines:\n${output.replace(/^/gm, '    ')}` : ', printing nothing'}`,
          {
            operation: 'run post-install scripts',
            path: from === 'image' ? join(IMAGE_SCRIPTS_DIR, name) : postInstallPath(name),
            hint:
              from === 'image'
                ? `fix ${IMAGE_SCRIPTS_DIR}/${name} in the image and republish it (it runs chrooted into the new system, with ${POST_INSTALL_DIR}/variables.txt)`
                : `fix scripts/post-install/${name} on the image server (it runs chrooted into the new system, with ${POST_INSTALL_DIR}/variables.txt)`,
          },
        )
      }
      logger.info(
        { script: name, seconds: (performance.now() - started) / 1000 },
        'post-install script done',
      )
    }
    return order
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

/** The image's post-install.d, as run-parts would run it. */
async function listImageScripts(target: string): Promise<{ run: string[]; skipped: string[] }> {
  const dir = await pathInRoot(target, IMAGE_SCRIPTS_DIR)
  const names = await readdir(dir).catch(() => [] as string[])
  const entries: ScriptEntry[] = []
  for (const name of names) {
    const st = await stat(await pathInRoot(target, join(IMAGE_SCRIPTS_DIR, name))).catch(
      () => undefined,
    )
    entries.push({ name, file: st?.isFile() === true, executable: ((st?.mode ?? 0) & 0o111) !== 0 })
  }
  return imageScriptsToRun(entries)
}
