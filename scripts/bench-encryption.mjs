#!/usr/bin/env node
// Benchmark of encrypted archives on loopback (issue 17, phase 2b): what `--encrypt` costs
// in size, publish time and install time, against the same image published and installed
// signed but not encrypted, in the same run.
//
//   node scripts/bench-encryption.mjs [--runs N] [--size-mb M] [--keep]
//
// A sample image of about M MiB (default 96), then N turns (default 3). In each turn both
// variants, in an order that alternates turn by turn so a warm page cache favours neither:
//   publish:  `imageswarm publish --keys [--encrypt --group-keys]` into empty directories,
//             so every turn packs (and, encrypted, encrypts) anew; run in this process, so
//             the time is the publication's, not a Node start's
//   install:  `imageswarm serve` on those directories (it reuses the archive), then one
//             `imageswarm install --trust-root [--node-secret-file]` into a fresh target;
//             its own install time ('installed' event), group key fetch and decryption
//             included, and its stage times (download, SHA-256 check, extraction)
// Reported: the encrypted archive's size against the plain one, and per phase the medians
// and the median of the paired ratios (encrypted / plain, turn by turn). The issue's
// targets: size overhead ≤ 0.1 %, install-time cost ≤ 5 %. Build first: pnpm build.
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises'
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { main } from '@imageswarm/cli'
import { median, option } from './lib/bench-stats.mjs'
import { runInstall, startServer } from './lib/deployment.mjs'
import { makeSampleImage } from './lib/sample-image.mjs'

const runs = Number(option('--runs', '3'))
const sizeMiB = Number(option('--size-mb', '96'))
const keep = process.argv.includes('--keep')

const fmt = (seconds) => seconds.toFixed(3)

async function imageswarm(args) {
  const code = await main(['--log-level', 'warn', ...args])
  if (code !== 0) throw new Error(`imageswarm ${args.join(' ')}: exit ${code}`)
}

const dir = await mkdtemp(join(tmpdir(), 'imageswarm-bench-encryption-'))
const imagesDir = join(dir, 'images')
let server
try {
  await mkdir(imagesDir, { recursive: true })
  const bigFiles = Math.max(1, Math.round(sizeMiB / 8))
  await makeSampleImage(join(imagesDir, 'node'), {
    dirs: 20,
    filesPerDir: 40,
    bigFiles,
    bigFileBytes: Math.round((sizeMiB * 2 ** 20) / bigFiles),
  })
  const keys = join(dir, 'keys')
  const groupKeys = join(dir, 'group-keys')
  const secret = join(dir, 'n1.secret')
  await imageswarm(['key', 'generate', '--output', keys])
  await imageswarm(['key', 'group', 'add', 'compute', '--group-keys', groupKeys])
  await imageswarm([
    'key',
    'node',
    'add',
    'n1',
    '--group',
    'compute',
    '--group-keys',
    groupKeys,
    '--output',
    secret,
  ])
  // Both signed: the only difference is the encryption.
  const variants = {
    plain: { serveArgs: ['--keys', keys], publish: [], install: [], stages: [] },
    encrypted: {
      serveArgs: ['--keys', keys, '--encrypt', '--group-keys', groupKeys],
      publish: [],
      install: [],
      stages: [],
    },
  }
  const sizes = {}
  const loadBefore = loadavg()[0]

  for (let turn = 0; turn < runs; turn++) {
    const order = turn % 2 === 0 ? ['plain', 'encrypted'] : ['encrypted', 'plain']
    for (const name of order) {
      const variant = variants[name]
      const turnDir = join(dir, `${name}-${turn}`)
      const layout = {
        imagesDir,
        tarballsDir: join(turnDir, 'tarballs'),
        torrentsDir: join(turnDir, 'torrents'),
        pidFile: join(turnDir, 'serve.pid'),
      }
      const started = performance.now()
      await imageswarm([
        'publish',
        '--image',
        'node',
        '--images-dir',
        imagesDir,
        '--tarballs-dir',
        layout.tarballsDir,
        '--torrents-dir',
        layout.torrentsDir,
        ...variant.serveArgs,
      ])
      variant.publish.push((performance.now() - started) / 1000)
      const manifest = JSON.parse(
        await readFile(join(layout.torrentsDir, 'image-node.manifest.json'), 'utf8'),
      )
      sizes[name] = manifest.size
      if (manifest.encryption) sizes.plaintext = manifest.encryption.plaintextSize

      server = await startServer({ images: ['node'], ...layout, args: variant.serveArgs })
      const result = await runInstall({
        server: server.url,
        image: 'node',
        staging: join(turnDir, 'client', 'staging'),
        target: join(turnDir, 'client', 'a'),
        seedTime: 0,
        args: [
          '--no-report',
          '--trust-root',
          join(keys, 'root.pub'),
          ...(name === 'encrypted' ? ['--node-secret-file', secret] : []),
        ],
      })
      await server.stop()
      server = undefined
      if (result.code !== 0) {
        throw new Error(
          `${name} install failed: ${JSON.stringify(result.failed ?? result.logs.slice(-5))}`,
        )
      }
      variant.install.push(result.installed.seconds)
      const seconds = (type) => result.events.find((event) => event.type === type)?.seconds
      variant.stages.push({
        download: seconds('download-complete'),
        verify: seconds('verified'),
        extract: seconds('extracted'),
      })
      await rm(turnDir, { recursive: true, force: true })
    }
  }
  const loadAfter = loadavg()[0]

  const overhead = sizes.encrypted - sizes.plain
  console.log(
    `# ${runs} turns, image ${sizeMiB} MiB, ${cpus()[0]?.model ?? 'unknown CPU'} × ${availableParallelism()}, load ${loadBefore.toFixed(1)} → ${loadAfter.toFixed(1)}, node ${process.version}`,
  )
  console.log(
    `archive: plain ${sizes.plain} B, encrypted ${sizes.encrypted} B (plaintext ${sizes.plaintext} B): +${overhead} B, ${((100 * overhead) / sizes.plain).toFixed(4)} %`,
  )
  console.log(
    '| phase | plain s (median) | encrypted s (median) | encrypted / plain (median of paired ratios) | paired ratios |',
  )
  console.log('| --- | ---: | ---: | ---: | --- |')
  for (const phase of ['publish', 'install']) {
    const ratios = variants.encrypted[phase].map((s, i) => s / variants.plain[phase][i])
    console.log(
      `| ${phase} | ${fmt(median(variants.plain[phase]))} | ${fmt(median(variants.encrypted[phase]))} | ${median(ratios).toFixed(3)} | ${ratios.map((r) => r.toFixed(3)).join(', ')} |`,
    )
  }
  // Where the time goes: the client's own stage times (download, SHA-256 check, extraction
  // with decryption when encrypted), medians.
  for (const stage of ['download', 'verify', 'extract']) {
    const of = (name) => median(variants[name].stages.map((row) => row[stage] ?? Number.NaN))
    console.log(`  ${stage}: plain ${fmt(of('plain'))} s, encrypted ${fmt(of('encrypted'))} s`)
  }
  const added = variants.encrypted.install.map((s, i) => s - variants.plain.install[i])
  console.log(
    `install time, encrypted minus plain, paired by turn: median ${fmt(median(added))} s (${added.map(fmt).join(', ')})`,
  )
} finally {
  await server?.stop()
  if (keep) console.log(`kept ${dir}`)
  else await rm(dir, { recursive: true, force: true })
}
