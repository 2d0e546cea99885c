// Builds imageswarm's installable packages from the built workspace (pnpm build first):
//
//   node scripts/package/build.mjs [--out DIR] [--no-npm] [--no-deb] [--node FILE]
//
//   DIR/imageswarm-VERSION.tgz        npm install -g ./imageswarm-VERSION.tgz: no
//                                     dependencies to fetch, every command on the PATH
//   DIR/imageswarm_VERSION_amd64.deb  the server side for Debian: /usr/bin commands, the
//                                     node it runs on, man pages, imageswarm.service and
//                                     /etc/imageswarm/server.conf
//
// Both hold the same tree (below); the programs are single-file esbuild bundles, because
// the workspace packages are private and unpublished. The same tree and SOURCE_DATE_EPOCH
// (default: the last commit's time) give the same bytes: files sorted, owned by root,
// modes normalised, times clamped, gzip without names or times.
//
// The tree, and why each part is where it is (the bundled code finds its files relative to
// itself, as it does in the workspace):
//   bin/*.js                       the commands: imageswarm, si_*, imageswarm-install(er)
//   lib/cli/imageswarm.mjs         the whole CLI (server, client, installer builder)
//   lib/dashboard/                 the tracker's page: ../dashboard/ from lib/cli
//   lib/node_modules/uplot/        the page's charts, found by require.resolve from lib/cli
//   lib/imageswarm-install(er).mjs the ramdisk's programs: `imageswarm initrd` copies them
//                                  from ../ of lib/cli
//   ramdisk/                       /init and its shell library: ../../ramdisk/ from lib/cli
//   man/*.1                        from the same commander program as --help (man-page.ts)
//   systemd/imageswarm.service, systemd/server.conf
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import {
  chmod,
  copyFile,
  cp,
  lstat,
  mkdir,
  readdir,
  readFile,
  rm,
  symlink,
  utimes,
  writeFile,
} from 'node:fs/promises'
import { createRequire } from 'node:module'
import { dirname, join, relative, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { gzipSync } from 'node:zlib'

const REPO = resolve(new URL('../..', import.meta.url).pathname)
const CLI = join(REPO, 'packages/cli')
const HERE = join(REPO, 'scripts/package')

/** The commands, by name: packages/cli's `bin`, each its bin/ script. */
const COMMANDS = Object.keys(
  JSON.parse(await readFile(join(CLI, 'package.json'), 'utf8')).bin,
).sort()

/**
 * What the server needs from Debian at run time (scripts/setup.sh's RUNTIME_DEBS, but for
 * squashfs-tools-ng, recommended below), and
 * what the node binary beside it links against. `imageswarm initrd` needs more (cpio,
 * busybox-static, …): suggested, as it runs only where ramdisks are built.
 */
const DEPENDS = ['libc6 (>= 2.28)', 'libstdc++6', 'libgcc-s1', 'tar', 'zstd', 'gzip', 'util-linux']
/**
 * SquashFS images (`--format squashfs`) are packed with tar2sqfs: recommended, not required,
 * as a server of tar images never runs it (E_TOOL_MISSING names the package if it is missing).
 */
const RECOMMENDS = ['squashfs-tools-ng']
const SUGGESTS = ['cpio', 'busybox-static', 'kmod', 'minisign', 'openssl']

const { values: flags } = parseArgs({
  options: {
    out: { type: 'string', default: join(REPO, 'artifacts/package') },
    'no-npm': { type: 'boolean', default: false },
    'no-deb': { type: 'boolean', default: false },
    node: { type: 'string', default: process.execPath },
  },
})

async function main() {
  for (const built of [
    'dist/main.js',
    'dist/imageswarm-install.mjs',
    'dist/imageswarm-installer.mjs',
  ]) {
    if (!existsSync(join(CLI, built))) {
      throw new Error(`packages/cli/${built} is missing: run pnpm build first`)
    }
  }
  const { bundleNodeProgram, VERSION } = await import(join(CLI, 'bundle/node-bundle.mjs'))
  const epoch = sourceDateEpoch()
  const out = resolve(flags.out)
  const stage = join(out, '.stage')
  await rm(stage, { recursive: true, force: true })
  await mkdir(stage, { recursive: true })

  const tree = join(stage, 'package')
  await stageTree(tree, { bundleNodeProgram, version: VERSION, epoch })
  const made = []
  if (!flags['no-npm']) made.push(await buildNpmTarball(tree, out, VERSION, epoch))
  if (!flags['no-deb']) made.push(await buildDeb(tree, stage, out, VERSION, epoch))
  await rm(stage, { recursive: true, force: true })
  for (const file of made) process.stdout.write(`${file}\n`)
}

/** SOURCE_DATE_EPOCH, else the last commit's time: never the clock. */
function sourceDateEpoch() {
  const given = process.env.SOURCE_DATE_EPOCH
  if (given !== undefined && given !== '') return Number(given)
  try {
    return Number(
      execFileSync('git', ['-C', REPO, 'log', '-1', '--format=%ct'], { encoding: 'utf8' }).trim(),
    )
  } catch {
    throw new Error('set SOURCE_DATE_EPOCH: this is not a git checkout to take the time from')
  }
}

async function stageTree(tree, { bundleNodeProgram, version, epoch }) {
  const lib = join(tree, 'lib')
  await mkdir(join(lib, 'cli'), { recursive: true })
  // One bundle of the whole CLI; the bin scripts import what they run from it.
  await bundleNodeProgram({
    contents: [
      "export { main } from './dist/main.js'",
      "export { runSystemImagerCommand } from './dist/entry.js'",
    ].join('\n'),
    outfile: join(lib, 'cli/imageswarm.mjs'),
  })
  for (const name of ['imageswarm-install.mjs', 'imageswarm-installer.mjs']) {
    await copyFile(join(CLI, 'dist', name), join(lib, name))
    if (existsSync(join(CLI, 'dist', `${name}.LEGAL.txt`))) {
      await copyFile(join(CLI, 'dist', `${name}.LEGAL.txt`), join(lib, `${name}.LEGAL.txt`))
    }
  }
  await cp(join(REPO, 'packages/tracker/dashboard'), join(lib, 'dashboard'), { recursive: true })
  const uplot = dirname(
    createRequire(join(REPO, 'packages/tracker/package.json')).resolve('uplot/package.json'),
  )
  for (const file of ['package.json', 'LICENSE', 'dist/uPlot.esm.js', 'dist/uPlot.min.css']) {
    if (!existsSync(join(uplot, file))) continue
    await mkdir(dirname(join(lib, 'node_modules/uplot', file)), { recursive: true })
    await copyFile(join(uplot, file), join(lib, 'node_modules/uplot', file))
  }
  await cp(join(REPO, 'packages/installer/ramdisk'), join(tree, 'ramdisk'), { recursive: true })

  await mkdir(join(tree, 'bin'), { recursive: true })
  for (const command of COMMANDS) {
    const source = await readFile(join(CLI, 'bin', `${command}.js`), 'utf8')
    await writeFile(join(tree, 'bin', `${command}.js`), rewriteBin(command, source))
  }

  const { buildProgram } = await import(join(CLI, 'dist/main.js'))
  const { renderManPages } = await import(join(CLI, 'dist/man-page.js'))
  const date = new Date(epoch * 1000).toISOString().slice(0, 10)
  await mkdir(join(tree, 'man'), { recursive: true })
  const pages = renderManPages(buildProgram(), { version, date })
  for (const [name, text] of pages) await writeFile(join(tree, 'man', name), text)

  await mkdir(join(tree, 'systemd'), { recursive: true })
  await copyFile(join(HERE, 'imageswarm.service'), join(tree, 'systemd/imageswarm.service'))
  await copyFile(join(HERE, 'server.conf'), join(tree, 'systemd/server.conf'))

  await writeFile(
    join(tree, 'package.json'),
    `${JSON.stringify(
      {
        name: 'imageswarm',
        version,
        description: 'Deploy operating-system images to many machines at once over BitTorrent.',
        type: 'module',
        engines: { node: '>=20' },
        os: ['linux'],
        bin: Object.fromEntries(COMMANDS.map((command) => [command, `bin/${command}.js`])),
        man: [...pages.keys()].map((name) => `man/${name}`),
      },
      null,
      2,
    )}\n`,
  )
  await writeFile(
    join(tree, 'README.md'),
    [
      '# imageswarm',
      '',
      'Deploys operating-system images to many machines at once over BitTorrent: the image',
      'server (`imageswarm serve`, `si_startbttrack`), the install client (`imageswarm install`)',
      'and the installer ramdisk builder (`imageswarm initrd`). `imageswarm --help`,',
      '`imageswarm help COMMAND` and `man imageswarm` say how; `systemd/` holds a unit and its',
      'configuration file for running the server as a service.',
      '',
    ].join('\n'),
  )
  await normalise(tree, epoch)
}

/**
 * A bin script of packages/cli, pointed at the bundles: `../dist/main.js` and
 * `../dist/entry.js` are both in lib/cli/imageswarm.mjs; the install client and the
 * installer are their own bundles, which carry their own version.
 */
function rewriteBin(command, source) {
  if (command === 'imageswarm-install') {
    return "#!/usr/bin/env -S node --initial-old-space-size=64\nimport '../lib/imageswarm-install.mjs'\n"
  }
  if (command === 'imageswarm-installer') {
    return "#!/usr/bin/env -S node --initial-old-space-size=64\nimport '../lib/imageswarm-installer.mjs'\n"
  }
  const rewritten = source.replace(/'\.\.\/dist\/(main|entry)\.js'/, "'../lib/cli/imageswarm.mjs'")
  if (rewritten === source) throw new Error(`bin/${command}.js: no import of ../dist to rewrite`)
  return rewritten
}

/** Owner-independent modes and clamped times on every entry, so the archives repeat. */
async function normalise(root, epoch) {
  const walk = async (path) => {
    const info = await lstat(path)
    if (info.isDirectory()) {
      await chmod(path, 0o755)
      for (const name of await readdir(path)) await walk(join(path, name))
    } else if (info.isFile()) {
      await chmod(path, info.mode & 0o111 || /\/bin\/[^/]+$/.test(path) ? 0o755 : 0o644)
    }
    if (!info.isSymbolicLink()) await utimes(path, epoch, epoch)
  }
  await walk(root)
}

function tarDeterministic(args, epoch) {
  return [
    '--sort=name',
    `--mtime=@${epoch}`,
    '--clamp-mtime',
    '--owner=0',
    '--group=0',
    '--numeric-owner',
    '--format=gnu',
    ...args,
  ]
}

async function buildNpmTarball(tree, out, version, epoch) {
  const file = join(out, `imageswarm-${version}.tgz`)
  const tar = execFileSync(
    'tar',
    tarDeterministic(['-C', dirname(tree), '-cf', '-', 'package'], epoch),
    { maxBuffer: 1 << 30 },
  )
  await writeFile(file, gzipSync(tar, { level: 9 }))
  return file
}

async function buildDeb(tree, stage, out, version, epoch) {
  const root = join(stage, 'deb')
  const libDir = join(root, 'usr/lib/imageswarm')
  await mkdir(libDir, { recursive: true })
  for (const part of ['bin', 'lib', 'ramdisk', 'package.json']) {
    await cp(join(tree, part), join(libDir, part), { recursive: true })
  }
  // Debian 12's nodejs is 18 and imageswarm needs 20 or newer: the package carries the
  // node it was built and tested with (as the installer ramdisk does), and its commands
  // run that node, whatever /usr/bin/node is.
  await mkdir(join(libDir, 'node/bin'), { recursive: true })
  await copyFile(flags.node, join(libDir, 'node/bin/node'))
  const nodeVersion = execFileSync(flags.node, ['--version'], { encoding: 'utf8' }).trim()
  if (Number(/^v(\d+)/.exec(nodeVersion)?.[1]) < 20) {
    throw new Error(`--node ${flags.node} is ${nodeVersion}; imageswarm needs node 20 or newer`)
  }

  await mkdir(join(root, 'usr/bin'), { recursive: true })
  for (const command of COMMANDS) {
    const options = command.startsWith('imageswarm-install') ? '--initial-old-space-size=64 ' : ''
    await writeFile(
      join(root, 'usr/bin', command),
      `#!/bin/sh\nexec /usr/lib/imageswarm/node/bin/node ${options}/usr/lib/imageswarm/bin/${command}.js "$@"\n`,
    )
  }

  const man = join(root, 'usr/share/man/man1')
  await mkdir(man, { recursive: true })
  for (const name of (await readdir(join(tree, 'man'))).sort()) {
    const text = await readFile(join(tree, 'man', name), 'utf8')
    const alias = /^\.so man1\/(.+)\n$/.exec(text)
    // Debian's way for an alias page: a symlink to the compressed page it names.
    if (alias) await symlink(`${alias[1]}.gz`, join(man, `${name}.gz`))
    else await writeFile(join(man, `${name}.gz`), gzipSync(text, { level: 9 }))
  }

  await mkdir(join(root, 'lib/systemd/system'), { recursive: true })
  await copyFile(
    join(HERE, 'imageswarm.service'),
    join(root, 'lib/systemd/system/imageswarm.service'),
  )
  await mkdir(join(root, 'etc/imageswarm'), { recursive: true })
  await copyFile(join(HERE, 'server.conf'), join(root, 'etc/imageswarm/server.conf'))

  const doc = join(root, 'usr/share/doc/imageswarm')
  await mkdir(doc, { recursive: true })
  await writeFile(
    join(doc, 'copyright'),
    [
      'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/',
      'Upstream-Name: imageswarm',
      '',
      'Files: *',
      'Comment: imageswarm and the JavaScript libraries bundled into its programs; each',
      ' bundle lists its libraries\u2019 licences in /usr/lib/imageswarm/lib/*.LEGAL.txt.',
      ' /usr/lib/imageswarm/node is Node.js, MIT licence (https://nodejs.org/).',
      '',
    ].join('\n'),
  )

  const control = join(root, 'DEBIAN')
  await mkdir(control, { recursive: true })
  await normalise(root, epoch)
  const installedKiB = Number(
    execFileSync('du', ['-sk', '--apparent-size', root], { encoding: 'utf8' }).split('\t')[0],
  )
  await writeFile(
    join(control, 'control'),
    [
      'Package: imageswarm',
      `Version: ${version}`,
      'Architecture: amd64',
      'Maintainer: imageswarm developers <imageswarm@localhost>',
      `Installed-Size: ${installedKiB}`,
      `Depends: ${DEPENDS.join(', ')}`,
      `Recommends: ${RECOMMENDS.join(', ')}`,
      `Suggests: ${SUGGESTS.join(', ')}`,
      'Section: admin',
      'Priority: optional',
      'Description: deploy operating-system images to many machines over BitTorrent',
      ' The image server (imageswarm serve, SystemImager\u2019s si_startbttrack) packs image roots',
      ' into archives and torrents and runs the tracker and first seeder; install clients get',
      ' the image from the server and from each other. Includes imageswarm.service, the',
      ' install client, the installer ramdisk builder and the node runtime they run on.',
      '',
    ].join('\n'),
  )
  await writeFile(join(control, 'conffiles'), '/etc/imageswarm/server.conf\n')
  await writeFile(join(control, 'md5sums'), await md5sums(root))
  for (const script of ['postinst', 'prerm', 'postrm']) {
    await copyFile(join(HERE, 'debian', script), join(control, script))
  }
  await normalise(control, epoch)
  for (const script of ['postinst', 'prerm', 'postrm']) await chmod(join(control, script), 0o755)

  const file = join(out, `imageswarm_${version}_amd64.deb`)
  // gzip -6: node is most of the package; -9 took 2.5 times as long for 1% less (35.9
  // against 35.7 MB), xz and zstd -19 ten times as long for a third less.
  execFileSync('dpkg-deb', ['--root-owner-group', '-Zgzip', '-z6', '--build', root, file], {
    env: { ...process.env, SOURCE_DATE_EPOCH: String(epoch) },
    stdio: ['ignore', 'ignore', 'inherit'],
  })
  return file
}

/** DEBIAN/md5sums: every regular file but DEBIAN's own, sorted by path. */
async function md5sums(root) {
  const lines = []
  const walk = async (dir) => {
    for (const name of (await readdir(dir)).sort()) {
      const path = join(dir, name)
      const info = await lstat(path)
      if (info.isDirectory()) {
        if (path !== join(root, 'DEBIAN')) await walk(path)
      } else if (info.isFile()) {
        const digest = createHash('md5')
          .update(await readFile(path))
          .digest('hex')
        lines.push(`${digest}  ${relative(root, path)}`)
      }
    }
  }
  await walk(root)
  return `${lines.join('\n')}\n`
}

await main()
