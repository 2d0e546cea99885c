#!/usr/bin/env node
// Benchmark of the archive format against the plain shell pipelines it wraps.
//
//   node scripts/bench-archive.mjs [TREE] [--runs N] [--size-mb M] [--level L] [--target-dir D]
//                                  [--replicate K] [--work-dir W] [--only pack|extract|install]
//
// Without TREE, generates a tree of about M MiB (default 256) resembling an OS image: many
// small files, some medium and a few large ones, compressing about 3:1. `--replicate K`
// benchmarks K `cp -a` copies of TREE side by side instead (made in the temp dir, removed
// afterwards): `/var/cache/imageswarm-tests/bookworm-minbase --replicate 11` is a
// reproducible 2.1 GiB tree of 74,000 entries. Archives (and the copies) go to a fresh
// directory under --work-dir (default: the temp dir). Compares, as the median of N runs
// (default 3), warm page cache:
//   pack:    `tar -c … | zstd -T0 -3 > f` (+ `sync f`, or `sha256sum f`, or with packArchive's
//            64 KiB tar records)  vs  packArchive, alone and with the torrent's piece hashes
//   extract: `zstd -dc f | tar -x …` (also with 64 KiB records)  vs  extractArchive into an
//            empty target (validates while extracting, one pass) and into a non-empty one
//            (validateArchive first, then extract), and validateArchive alone
//   install: `sha256sum f; zstd -dc f | tar -x`  vs  the client's two possible orders
// Extraction goes to a directory under --target-dir (default: the temp dir, a real disk), a
// new one every run, all removed at the end (on tmpfs, each as the next run starts): on this
// VM's ext4 (mounted with `discard`), a tree extracted where another was just deleted took
// 5 s of system time instead of 0.7 s. Runs × 7 extractions of the tree must fit on disk.
// `--target-dir /dev/shm` takes the disk out and shows the CPU cost alone. The 1-minute
// load average is printed at the start and the end: other work on the machine skews it.
// Build core first: pnpm --filter @imageswarm/core build
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const dist = join(here, '../packages/core/dist/index.js')
if (!existsSync(dist)) {
  console.error('build core first: pnpm --filter @imageswarm/core build')
  process.exit(2)
}
const {
  packArchive,
  extractArchive,
  validateArchive,
  sha256File,
  TAR_CREATE_ARGS,
  TAR_EXTRACT_ARGS,
  TAR_RECORD_ARGS,
  DEFAULT_EXCLUDES,
} = await import(dist)

const args = process.argv.slice(2)
const option = (name, fallback) => {
  const at = args.indexOf(name)
  if (at === -1) return fallback
  const value = args[at + 1]
  args.splice(at, 2)
  return value
}
const runs = Number(option('--runs', '3'))
const sizeMb = Number(option('--size-mb', '256'))
const level = Number(option('--level', '3'))
const targetDir = option('--target-dir', undefined)
const replicate = Number(option('--replicate', '0'))
const only = option('--only', undefined)
if (only !== undefined && !['pack', 'extract', 'install'].includes(only)) {
  console.error('--only takes pack, extract or install')
  process.exit(2)
}
const loadAverage = () => readFileSync('/proc/loadavg', 'utf8').split(' ')[0]
const loadAtStart = loadAverage()
const clockTicks = Number(execFileSync('getconf', ['CLK_TCK']).toString())
const work = await mkdtemp(join(option('--work-dir', tmpdir()), 'imageswarm-bench-'))
const targets = join(targetDir ?? work, `imageswarm-bench-targets-${process.pid}`)
let extractions = 0
let target = join(targets, 'none-yet')
await mkdir(targets, { recursive: true })
const targetsInMemory =
  execFileSync('stat', ['-f', '-c', '%T', targets]).toString().trim() === 'tmpfs'

try {
  let tree =
    args[0] === undefined ? await generateTree(join(work, 'tree'), sizeMb) : resolve(args[0])
  if (replicate > 0) tree = replicateTree(tree, join(work, 'replicated'), replicate)
  const treeBytes = Number(execFileSync('du', ['-sb', tree]).toString().split('\t')[0])
  const files = Number(execFileSync('sh', ['-c', `find '${tree}' | wc -l`]).toString())
  console.error(`tree ${tree}: ${(treeBytes / 2 ** 20).toFixed(0)} MiB, ${files} entries`)

  const plainArchive = join(work, 'plain.tar.zst')
  const plainRecordsArchive = join(work, 'plain-64k.tar.zst')
  const ourArchive = join(work, 'ours.tar.zst')
  // The same options and default excludes as packArchive, so both do the same work.
  const defaultExcludes = DEFAULT_EXCLUDES.map((pattern) => `--exclude=${pattern}`)
  const tarCreate = [
    ...TAR_CREATE_ARGS,
    '--anchored',
    ...defaultExcludes,
    '--no-anchored',
    '-C',
    tree,
    '.',
  ]
    .map(quote)
    .join(' ')
  const tarRecords = TAR_RECORD_ARGS.map(quote).join(' ')
  const fresh = async () => {
    if (targetsInMemory) await rm(target, { recursive: true, force: true })
    target = join(targets, `run-${++extractions}`)
    await mkdir(target, { recursive: true })
    // Start each extraction with no writeback left over from the one before.
    execFileSync('sync')
  }
  // Each pack writes a new file, with no writeback left over from the run before (the plain
  // pipeline leaves its archive in the page cache, to be flushed during the next run).
  const noArchive = (archive) => async () => {
    await rm(archive, { force: true })
    execFileSync('sync')
  }
  // A function: each run extracts into a new target.
  const tarExtract = () =>
    [...TAR_EXTRACT_ARGS.filter((a) => a !== '--file=-'), '-C', target].map(quote).join(' ')
  // Each group's variants take turns run by run, so a busy moment hits all of them alike.
  const packRows = await measureInTurns('pack', [
    {
      name: 'pack: tar -c | zstd > f',
      fn: () => sh(`tar ${tarCreate} | zstd -q -T0 -${level} > ${quote(plainArchive)}`),
      before: noArchive(plainArchive),
    },
    {
      // The plain pipeline with packArchive's tar records: it writes packArchive's bytes.
      name: 'pack: tar -c --record-size=64K | zstd > f',
      fn: () =>
        sh(
          `tar ${tarCreate} ${tarRecords} | zstd -q -T0 -${level} > ${quote(plainRecordsArchive)}`,
        ),
      before: noArchive(plainRecordsArchive),
    },
    {
      // coreutils `sync FILE` is fsync(2): what forcing the archive to the disk would add.
      name: 'pack: tar -c | zstd > f; sync f',
      fn: () =>
        sh(
          `tar ${tarCreate} | zstd -q -T0 -${level} > ${quote(plainArchive)} && ` +
            `sync ${quote(plainArchive)}`,
        ),
      before: noArchive(plainArchive),
    },
    {
      name: 'pack: tar -c | zstd > f; sha256sum f',
      fn: () =>
        sh(
          `tar ${tarCreate} | zstd -q -T0 -${level} > ${quote(plainArchive)} && ` +
            `sha256sum ${quote(plainArchive)} > /dev/null`,
        ),
      before: noArchive(plainArchive),
    },
    {
      name: 'pack: packArchive (sha256 while writing)',
      fn: () => packArchive({ root: tree, output: ourArchive, compression: 'zstd', level }),
      before: noArchive(ourArchive),
    },
    {
      // What publishing does: the torrent's piece hashes come from the same read.
      name: 'pack: packArchive + 1 MiB piece hashes (as publish does)',
      fn: () =>
        packArchive({
          root: tree,
          output: ourArchive,
          compression: 'zstd',
          level,
          pieceLength: 1 << 20,
        }),
      before: noArchive(ourArchive),
    },
  ])
  const archiveBytes = (await stat(ourArchive)).size
  // The same tar options, records and zstd level: unless the tree has sparse files (tar's
  // PID in the plain run), both pipelines must have written the very same bytes.
  const identical =
    packRows.length === 0
      ? undefined
      : (await sha256File(plainRecordsArchive)) === (await sha256File(ourArchive))
  await rm(plainArchive, { force: true })
  await rm(plainRecordsArchive, { force: true })
  const extractRows = await measureInTurns('extract', [
    {
      name: 'extract: zstd -dc f | tar -x',
      fn: () => sh(`zstd -dc -q ${quote(ourArchive)} | tar ${tarExtract()}`),
      before: fresh,
    },
    {
      name: 'extract: zstd -dc f | tar -x --record-size=64K',
      fn: () => sh(`zstd -dc -q ${quote(ourArchive)} | tar ${tarExtract()} ${tarRecords}`),
      before: fresh,
    },
    { name: 'extract: validateArchive only', fn: () => validateArchive(ourArchive, 'zstd') },
    {
      name: 'extract: extractArchive, empty target (validates while extracting)',
      fn: () =>
        expectValidation(extractArchive({ archive: ourArchive, target }), 'while-extracting'),
      before: fresh,
    },
    {
      name: 'extract: extractArchive, non-empty target (validate, then extract)',
      fn: () =>
        expectValidation(extractArchive({ archive: ourArchive, target }), 'before-extracting'),
      before: async () => {
        await fresh()
        await writeFile(join(target, 'already-here'), 'x')
      },
    },
  ])
  // What an install client does after the download, into an empty target root: the
  // client checks the sha256, then extracts in one pass that validates as it goes (the
  // last row); the middle row is the other order, validating while hashing on two cores,
  // then extracting without validating again.
  const installRows = await measureInTurns('install', [
    {
      name: 'install: sha256sum f; zstd -dc f | tar -x',
      fn: () =>
        sh(
          `sha256sum ${quote(ourArchive)} > /dev/null && zstd -dc -q ${quote(ourArchive)} | tar ${tarExtract()}`,
        ),
      before: fresh,
    },
    {
      name: 'install: sha256 ∥ validateArchive; extractArchive (alreadyValidated)',
      fn: async () => {
        const [, validated] = await Promise.all([
          sha256File(ourArchive),
          validateArchive(ourArchive, 'zstd'),
        ])
        await extractArchive({ archive: ourArchive, target, alreadyValidated: validated })
      },
      before: fresh,
    },
    {
      name: 'install: sha256; extractArchive (validates while extracting)',
      fn: async () => {
        await sha256File(ourArchive)
        await expectValidation(extractArchive({ archive: ourArchive, target }), 'while-extracting')
      },
      before: fresh,
    },
  ])
  const rows = [...packRows, ...extractRows, ...installRows]
  // Each group (pack, extract, install) compares with its first row, the plain pipeline.
  const group = (row) => row.name.split(':')[0]
  const baselines = new Map()
  for (const row of rows) if (!baselines.has(group(row))) baselines.set(group(row), row)
  console.log(
    `\nTree: ${(treeBytes / 2 ** 20).toFixed(0)} MiB in ${files} entries; archive ` +
      `${(archiveBytes / 2 ** 20).toFixed(0)} MiB (zstd -${level}); extracted to ` +
      `${targetDir ?? tmpdir()}; median of ${runs} runs, warm cache, ` +
      `${execFileSync('nproc').toString().trim()} cores. MiB/s = tree MiB per second. ` +
      (identical === undefined
        ? ''
        : `packArchive and the plain pipeline with its records wrote ${identical ? 'identical' : 'DIFFERENT'} bytes. `) +
      `1-minute load average ${loadAtStart} at the start, ${loadAverage()} at the end.\n`,
  )
  // "paired" is the median of each turn's ratio to the plain run of the same turn: a busy
  // spell slows both halves of a pair, so it moves the paired ratio less than the medians.
  console.log('| operation | median s | MiB/s | vs plain | paired | CPU s | CPU vs plain |')
  console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: |')
  for (const row of rows) {
    const baseline = baselines.get(group(row))
    const cells = [
      row.name.replaceAll('|', '\\|'),
      row.median.toFixed(2),
      (treeBytes / 2 ** 20 / row.median).toFixed(0),
      `${(row.median / baseline.median).toFixed(2)}×`,
      `${median(row.times.map((time, turn) => time / baseline.times[turn])).toFixed(2)}×`,
      row.cpu.toFixed(2),
      `${(row.cpu / baseline.cpu).toFixed(2)}×`,
    ]
    console.log(`| ${cells.join(' | ')} |`)
  }
} finally {
  await rm(targets, { recursive: true, force: true })
  await rm(work, { recursive: true, force: true })
}

/** The group's rows (none when --only names another group: the pack still runs once). */
async function measureInTurns(group, variants) {
  if (only !== undefined && only !== group) {
    if (group === 'pack') await variants.at(-1).fn()
    return []
  }
  const results = variants.map(() => ({ times: [], cpus: [] }))
  for (let i = 0; i < runs; i++) {
    for (const [index, variant] of variants.entries()) {
      if (variant.before) await variant.before()
      const start = process.hrtime.bigint()
      const cpuStart = cpuSeconds()
      await variant.fn()
      results[index].cpus.push(cpuSeconds() - cpuStart)
      results[index].times.push(Number(process.hrtime.bigint() - start) / 1e9)
    }
  }
  return variants.map((variant, index) => {
    const { times, cpus } = results[index]
    console.error(`${variant.name}: ${times.map((t) => t.toFixed(2)).join(' ')} s`)
    return { name: variant.name, times, median: median(times), cpu: median(cpus) }
  })
}

async function expectValidation(extraction, expected) {
  const { validation } = await extraction
  if (validation !== expected) throw new Error(`extractArchive validated ${validation}`)
}

/** `copies` side-by-side `cp -a` copies of `tree` under `root`. */
function replicateTree(tree, root, copies) {
  execFileSync('mkdir', ['-p', root])
  for (let i = 1; i <= copies; i++) execFileSync('cp', ['-a', tree, join(root, `copy-${i}`)])
  return root
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]
}

/**
 * CPU seconds used by this process and every child it has waited for (tar, zstd, sh and
 * theirs), from /proc/self/stat: steadier than wall time on a busy machine.
 */
function cpuSeconds() {
  const stat = readFileSync('/proc/self/stat', 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // utime, stime, cutime, cstime are fields 14-17 of the file, 12-15 after the name.
  const ticks = fields.slice(11, 15).reduce((sum, value) => sum + Number(value), 0)
  return ticks / clockTicks
}

function sh(command) {
  const result = spawnSync('sh', ['-c', `set -e; ${command}`], { stdio: 'inherit' })
  if (result.status !== 0) throw new Error(`failed: ${command}`)
}

function quote(arg) {
  return `'${String(arg).replaceAll("'", "'\\''")}'`
}

/**
 * A reproducible tree: 70% of the bytes in files of 1 MiB to 24 MiB, the rest in small
 * files (1 to 64 KiB) spread over directories. Content mixes words (compressible, like
 * text and code) with random runs (like machine code), about 2.3:1 with zstd -3.
 */
async function generateTree(root, mib) {
  let seed = 0x9e3779b9
  const random = () => {
    seed ^= seed << 13
    seed ^= seed >>> 17
    seed ^= seed << 5
    return (seed >>> 0) / 2 ** 32
  }
  // A small vocabulary used with a skewed (Zipf-like) frequency, as in code and text, and
  // short random runs standing in for machine code.
  const words = Array.from({ length: 2048 }, (_, i) =>
    ((i * 2654435761) >>> 0).toString(36).slice(0, 2 + (i % 8)),
  )
  const content = (size) => {
    const buf = Buffer.allocUnsafe(size)
    let at = 0
    while (at < size) {
      if (random() < 0.012) {
        const run = Math.min(size - at, 8 + Math.floor(random() * 56))
        for (let i = 0; i < run; i++) buf[at + i] = Math.floor(random() * 256)
        at += run
      } else {
        const word = words[Math.floor(random() ** 3 * words.length)]
        at += buf.write(random() < 0.1 ? `${word}\n` : `${word} `, at, 'latin1')
      }
    }
    return buf
  }
  const total = mib * 2 ** 20
  let written = 0
  let n = 0
  while (written < total * 0.7) {
    const size = Math.min(2 ** 20 + Math.floor(random() * 23 * 2 ** 20), total * 0.7 - written + 1)
    const dir = join(root, 'lib', `big${n % 8}`)
    await mkdir(dir, { recursive: true })
    await writeFile(join(dir, `blob${n++}.so`), content(size))
    written += size
  }
  while (written < total) {
    const size = 1024 + Math.floor(random() * 63 * 1024)
    const dir = join(root, 'usr', `d${n % 97}`, `s${n % 13}`)
    await mkdir(dir, { recursive: true })
    await writeFile(join(dir, `file${n++}.txt`), content(size))
    written += size
  }
  return root
}
