import { type Logger, SYSTEMIMAGER_DIRS } from '@imageswarm/core'
import { INSTALL_DIRS } from '@imageswarm/seeder'
import { Command, Option } from 'commander'
import { addImagesCommand } from './commands/images.js'
import { addInitrdOptions, runInitrd } from './commands/initrd.js'
import { addInstallOptions, runInstall } from './commands/install.js'
import { addKeyCommands } from './commands/key.js'
import { addNodesCommand } from './commands/nodes.js'
import { runPublish } from './commands/publish.js'
import { runServe } from './commands/serve.js'
import { runStop } from './commands/stop.js'
import { addUpdateOptions, runUpdate } from './commands/update.js'
import { runVersions } from './commands/versions.js'
import { addConfigFileOption } from './config-file.js'
import { addConsoleOptions, cliLoggerFor, consoleShowsInfoLog } from './console-options.js'
import { ConsoleOutput } from './console-output.js'
import { expandHelpCommand } from './help-command.js'
import {
  collectList,
  compressionFlag,
  durationFlag,
  formatFlag,
  integerFlag,
  rateFlag,
} from './options.js'
import { DEFAULT_PID_FILE } from './pid-file.js'
import { reportError } from './report-error.js'
import { versionLine } from './version.js'

/** Options shared by `serve` and `publish`: where images live and how they are packed.
 * `serve --mirror-of` publishes none of its own, so there `--image` is checked by runServe. */
function addPublishingOptions(command: Command, imageRequired = true): Command {
  const image = new Option('--image <name...>', 'image to publish (repeat, or a,b,c)').argParser(
    collectList,
  )
  return command
    .addOption(imageRequired ? image.makeOptionMandatory() : image)
    .addOption(
      new Option('--images-dir <dir>', 'directory of image roots')
        .default(SYSTEMIMAGER_DIRS.images)
        .env('IMAGESWARM_IMAGES_DIR'),
    )
    .addOption(
      new Option('--tarballs-dir <dir>', 'where archives are written')
        .default(SYSTEMIMAGER_DIRS.tarballs)
        .env('IMAGESWARM_TARBALLS_DIR'),
    )
    .addOption(
      new Option('--torrents-dir <dir>', 'where .torrent files and manifests are written')
        .default(SYSTEMIMAGER_DIRS.torrents)
        .env('IMAGESWARM_TORRENTS_DIR'),
    )
    .option(
      '--update-image',
      'pack the archive again even if the image root has not changed',
      false,
    )
    .option(
      '--format <[image=]format>',
      'tar or squashfs, for every image or one (hpc=squashfs); repeatable (default: as the image was last published, else tar)',
      formatFlag,
    )
    .option(
      '--compression <kind>',
      'zstd, gzip or none (default: as the image was last published, else zstd)',
      compressionFlag,
    )
    .option(
      '--compression-level <n>',
      'zstd 1-19 or gzip 1-9',
      integerFlag('--compression-level', 1, 19),
    )
    .option('--exclude-file <file>', 'SystemImager-style exclude file for packing')
    .option(
      '--keep-versions <n>',
      'versions of each image kept for updates by delta, the newest included (default 4)',
      integerFlag('--keep-versions', 1, 100),
    )
    .option(
      '--piece-length <bytes>',
      'torrent piece length (power of two)',
      integerFlag('--piece-length', 16384, 67108864),
    )
    .addOption(
      new Option(
        '--keys <dir>',
        'sign every manifest with the signing key of this key directory (imageswarm key generate)',
      ).env('IMAGESWARM_KEYS_DIR'),
    )
    .option(
      '--manifest-lifetime <duration>',
      'how long a signed manifest is accepted (default 7d; serve signs again at half)',
      durationFlag('--manifest-lifetime', 1, 366 * 24 * 60 * 60),
    )
    .addOption(
      new Option(
        '--encrypt',
        'encrypt every archive for the groups in --group-keys (needs --keys; docs/trust.md)',
      ).env('IMAGESWARM_ENCRYPT'),
    )
    .addOption(
      new Option(
        '--group-keys <dir>',
        'group key directory (imageswarm key group add NAME --group-keys DIR); serve hands keys out at /keys/groups/NAME',
      ).env('IMAGESWARM_GROUP_KEYS_DIR'),
    )
}

export function buildProgram(output = new ConsoleOutput()): Command {
  /** The console for a person's lines, or none when the log is JSON (`--log-format json`). */
  const humanConsole = (command: Command): ConsoleOutput | undefined =>
    (command.optsWithGlobals() as { logFormat: string }).logFormat === 'json' ? undefined : output
  const loggerFor = (command: Command, name: string): Logger => cliLoggerFor(command, name, output)

  const program = new Command('imageswarm').description(
    'Deploy operating-system images to many machines at once over BitTorrent.',
  )
  addConsoleOptions(program)
  program.version(versionLine(), '-V, --version', 'print the version')

  addPublishingOptions(
    program
      .command('serve')
      .description('publish images and run the tracker and the first seeder (si_startbttrack)'),
    false,
  )
    .addOption(
      new Option(
        '--mirror-of <url>',
        "serve another imageswarm server's images as this server's own, fetched through the swarm and kept up to date (instead of --image)",
      ).env('IMAGESWARM_MIRROR_OF'),
    )
    .option(
      '--mirror-interval <duration>',
      'how often a mirror asks its primary for changes and says it is alive (default 10s)',
      durationFlag('--mirror-interval', 1, 3600),
    )
    .addOption(
      new Option(
        '--trust-root <file>',
        "a mirror checks the primary's key list and manifests against this root public key (root.pub)",
      ).env('IMAGESWARM_TRUST_ROOT'),
    )
    .option('--address <ip>', 'address to listen on', '0.0.0.0')
    .option(
      '--advertise-address <ip>',
      'address clients reach this server at (default: --address, or the first LAN address)',
    )
    .addOption(
      new Option('--port <n>', 'HTTP port: tracker, manifests, torrents, web seed')
        .argParser(integerFlag('--port', 0, 65535))
        .default(6969)
        .env('IMAGESWARM_PORT'),
    )
    .addOption(
      new Option('--torrent-port <n>', 'BitTorrent port of the seeder')
        .argParser(integerFlag('--torrent-port', 0, 65535))
        .default(6881)
        .env('IMAGESWARM_TORRENT_PORT'),
    )
    .option(
      '--announce-interval <duration>',
      'how often clients announce (e.g. 30s, 2m)',
      durationFlag('--announce-interval', 1, 3600),
    )
    .option(
      '--max-peers-per-swarm <n>',
      'peers the tracker keeps per image',
      integerFlag('--max-peers-per-swarm', 1, 1_000_000),
    )
    .option(
      '--status-posts-per-second <n>',
      'status posts a second the dashboard asks of all nodes together',
      integerFlag('--status-posts-per-second', 1, 100_000),
    )
    .option(
      '--deployment-gap <duration>',
      'quiet time after the last node of a deployment finished before it ends (default 2m)',
      durationFlag('--deployment-gap', 1, 86_400),
    )
    .option(
      '--rack-map <file>',
      'nodes to racks (SUBNET RACK or NODE-NAME RACK per line), for nodes that announce none',
    )
    .option(
      '--deployments-kept <n>',
      'finished deployments the dashboard keeps per image (default 20)',
      integerFlag('--deployments-kept', 1, 10_000),
    )
    .addOption(
      new Option(
        '--dashboard-token-file <file>',
        'file holding a read-only token the dashboard, its API and /metrics then require',
      ).env('IMAGESWARM_DASHBOARD_TOKEN_FILE'),
    )
    .option(
      '--max-connections <n>',
      'peer connections of the seeder',
      integerFlag('--max-connections', 1, 10000),
    )
    .option(
      '--upload-limit <rate>',
      'seeder upload limit, e.g. 100M (bytes/s)',
      rateFlag('--upload-limit'),
    )
    .option(
      '--no-first-copy',
      'serve any piece to any client, not only pieces the swarm does not hold yet',
    )
    .option(
      '--no-tracker',
      'serve images over HTTP without the tracker (clients fall back to the web seed)',
    )
    .addOption(
      new Option('--pid-file <file>', 'where the server records its PID')
        .default(DEFAULT_PID_FILE)
        .env('IMAGESWARM_PID_FILE'),
    )
    .addOption(
      new Option(
        '--boot-dir <dir>',
        'installer kernel and ramdisk for network boot (imageswarm initrd --output DIR)',
      )
        .default(INSTALL_DIRS.boot)
        .env('IMAGESWARM_BOOT_DIR'),
    )
    .option(
      '--boot-image <name>',
      'image a network-booted node installs when scripts/cluster.txt names none (default: the only --image)',
    )
    .option('--boot-append <args>', 'added to the installer kernel command line (iPXE script)')
    .addOption(
      new Option(
        '--scripts-dir <dir>',
        "SystemImager's scripts: disks-layouts/, cluster.txt, hosts, post-install/",
      )
        .default(INSTALL_DIRS.scripts)
        .env('IMAGESWARM_SCRIPTS_DIR'),
    )
    .addOption(
      new Option('--overrides-dir <dir>', "SystemImager's override directories")
        .default(INSTALL_DIRS.overrides)
        .env('IMAGESWARM_OVERRIDES_DIR'),
    )
    .addOption(
      new Option(
        '--tls-cert <file>',
        'serve every endpoint over HTTPS with this certificate (PEM; imageswarm key tls-generate); nodes with a root key accept it only if the key list pins it (key tls-pin)',
      ).env('IMAGESWARM_TLS_CERT'),
    )
    .addOption(
      new Option('--tls-key <file>', "the HTTPS certificate's private key (PEM)").env(
        'IMAGESWARM_TLS_KEY',
      ),
    )
    .action(async (options, command: Command) =>
      runServe(
        options,
        loggerFor(command, 'server'),
        humanConsole(command),
        consoleShowsInfoLog(command),
      ),
    )

  addPublishingOptions(
    program
      .command('publish')
      .description(
        'pack images and write their .torrent and manifest without serving (si_installbtimage)',
      ),
  )
    .option(
      '--advertise-address <ip>',
      'address the .torrent announces (default: first LAN address)',
    )
    .option('--port <n>', 'HTTP port the server will use', integerFlag('--port', 1, 65535), 6969)
    .option(
      '--https',
      'the server will serve HTTPS (serve --tls-cert): the .torrent announces https URLs',
      false,
    )
    .action(async (options, command: Command) => runPublish(options, loggerFor(command, 'publish')))

  program
    .command('stop')
    .description('stop a running image server (si_stopbttrack)')
    .addOption(
      new Option('--pid-file <file>', 'the server’s PID file')
        .default(DEFAULT_PID_FILE)
        .env('IMAGESWARM_PID_FILE'),
    )
    .action(async (options, command: Command) =>
      runStop(
        options,
        loggerFor(command, 'stop'),
        consoleShowsInfoLog(command) ? undefined : humanConsole(command),
      ),
    )

  addInstallOptions(
    program
      .command('install')
      .description('download an image from the swarm and install it into the target root'),
  ).action(async (options, command: Command) =>
    runInstall(options, loggerFor(command, 'install'), output),
  )

  addUpdateOptions(
    program
      .command('update')
      .description(
        'bring an installed root (default /) to the newest version of its image: only what changed, through the swarm (si_updateclient)',
      ),
  ).action(async (options, command: Command) =>
    runUpdate(options, loggerFor(command, 'update'), output),
  )

  program
    .command('versions')
    .description('list the versions of an image the server keeps, and the deltas to the newest')
    .argument('<image>', 'image name')
    .option('--server <url>', 'ask this running server instead of reading --tarballs-dir')
    .addOption(
      new Option('--tarballs-dir <dir>', 'where the server writes archives and versions')
        .default(SYSTEMIMAGER_DIRS.tarballs)
        .env('IMAGESWARM_TARBALLS_DIR'),
    )
    .option('--json', 'print the version list as JSON', false)
    .action(async (image: string, options) => runVersions(image, options))

  addInitrdOptions(
    program
      .command('initrd')
      .description('build the installer ramdisk for network boot: DIR/vmlinuz and DIR/initrd.img'),
  ).action(async (options, command: Command) => runInitrd(options, loggerFor(command, 'initrd')))

  addKeyCommands(program)
  addImagesCommand(program)
  addNodesCommand(program)

  // The systemd unit's /etc/imageswarm/server.conf: serve's flags as `key = value` lines.
  addConfigFileOption(program.commands.find((c) => c.name() === 'serve') as Command)

  return program
}

/**
 * Runs the CLI and returns the exit code: 0, the code of a known error, 2 for usage
 * errors, 70 ("internal error, please report") for anything unexpected.
 */
export async function main(argv: string[]): Promise<number> {
  // The process's one console: the log's lines and the progress bar share it.
  const output = new ConsoleOutput()
  const program = buildProgram(output)
  try {
    await program.parseAsync(expandHelpCommand(program, argv), { from: 'user' })
    return 0
  } catch (err) {
    output.endProgress({ complete: false })
    return reportError(
      err,
      argv,
      program.commands.map((command) => command.name()),
    )
  }
}
