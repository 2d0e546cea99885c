#!/usr/bin/env node
// Benchmark of the archive format against the plain shell pipelines it wraps.
//
//   node scripts/bench-archive.mjs [TREE] [--runs N] [--size-mb M] [--level L] [--target-dir D]
//                                  [--squashfs-level L]
//                                  [--replicate K] [--work-dir W]
//                                  [--only pack|extract|install|squashfs]
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
//   squashfs: the SquashFS format beside the tar.zst, in three tables of its own:
//     pack:    `tar -c … | zstd -T0 -3 > f`  vs  packArchive + piece hashes (what publishing a
//              tar runs)  vs  `tar -c … | tar2sqfs f` (the pipeline packSquashfs wraps), and
//              packSquashfs alone and + piece hashes at its level (--squashfs-level, default
//              2); references: packSquashfs at the tar's level and `mksquashfs TREE f -comp zstd -b 1M …`. Prints
//              each file's size against the tar.zst, and the targets, met or not:
//              SquashFS within 1.1 × the tar.zst's size, packed within 1.2 × packArchive's
//              time (both with piece hashes; the paired ratio decides)
//     extract: extractArchive of the tar.zst  vs  of the .sqfs (validate, then extract: two
//              sqfs2tar passes), each into an empty target, and validateArchive of the .sqfs
//     mount:   only as root, if `mount -t squashfs` works: reading every file of an extracted
//              tree (`tar -cf - -C dir . | cat > /dev/null`)  vs  `mount -o ro,loop f dir`,
//              the same read, umount (the .sqfs warm in the page cache: each mount
//              decompresses every block again)  vs  mount and umount alone
// Extraction goes to a directory under --target-dir (default: the temp dir, a real disk), a
// new one every run, all removed at the end (on tmpfs, each as the next run starts): on this
// VM's ext4 (mounted with `discard`), a tree extracted where another was just deleted took
// 5 s of system time instead of 0.7 s. Runs × 7 extractions of the tree must fit on disk
// (runs × 2 + 1 more with the squashfs group).
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
  packSquashfs,
  SQUASHFS_DEFAULT_LEVEL,
  tar2sqfsArgs,
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
// SquashFS's own default (SQUASHFS_DEFAULT_LEVEL, 2), or --squashfs-level.
const squashfsLevel = Number(option('--squashfs-level', String(SQUASHFS_DEFAULT_LEVEL)))
const targetDir = option('--target-dir', undefined)
const replicate = Number(option('--replicate', '0'))
const only = option('--only', undefined)
if (only !== undefined && !['pack', 'extract', 'install', 'squashfs'].includes(only)) {
  console.error('--only takes pack, extract, install or squashfs')
  process.exit(2)
}
const loadAverage = () => readFileSync('/proc/loadavg', 'utf8').split(' ')[0]
const loadAtStart = loadAverage()
const clockTicks = Number(execFileSync('getconf', ['CLK_TCK']).toString())
const work = await mkdtemp(join(option('--work-dir', tmpdir()), 'imageswarm-bench-'))
const targets = join(targetDir ?? work, `imageswarm-bench-targets-${process.pid}`)
let extractions = 0
let target = join(targets, 'none-yet')
// The squashfs mount group's mount point while an image is mounted there.
let mounted
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
  // SquashFS beside the tar.zst, on the same tree (see the header): tables of its own.
  let squashfs
  if (only === undefined || only === 'squashfs') {
    const sqfsArchive = join(work, 'ours.sqfs')
    const plainSqfsArchive = join(work, 'plain.sqfs')
    // tar's level, for reference: what the tar.zst rows use.
    const referenceLevel = level
    const sqfsReference = join(work, `ours-zstd${referenceLevel}.sqfs`)
    const mksquashfsArchive = join(work, 'mksquashfs.sqfs')
    const sqfsHashes = new Set()
    let losses
    // mksquashfs leaves out what packArchive does (its patterns anchored at TREE as well).
    const mksquashfsExcludes = DEFAULT_EXCLUDES.map((pattern) =>
      quote(pattern.replace(/^\.\//, '')),
    ).join(' ')
    const sqfsPackRows = await measureInTurns('squashfs', [
      {
        name: 'squashfs pack: tar -c | zstd > f',
        fn: () => sh(`tar ${tarCreate} | zstd -q -T0 -${level} > ${quote(plainArchive)}`),
        before: noArchive(plainArchive),
      },
      {
        name: 'squashfs pack: packArchive + 1 MiB piece hashes (tar.zst, as publish does)',
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
      {
        // The pipeline packSquashfs wraps (its tar stream, records included, and tar2sqfs's
        // options): it writes packSquashfs's bytes.
        name: 'squashfs pack: tar -c --record-size=64K | tar2sqfs f',
        fn: () =>
          sh(
            `tar ${tarCreate} ${tarRecords} | ` +
              `tar2sqfs ${tar2sqfsArgs(plainSqfsArchive, squashfsLevel).map(quote).join(' ')}`,
          ),
        before: noArchive(plainSqfsArchive),
      },
      {
        // tar writes straight into tar2sqfs; SquashfsAdmission reads tar's listing; the SHA-256 is read
        // back once the file is complete.
        name: 'squashfs pack: packSquashfs (sha256 read back after writing)',
        fn: async () => {
          const packed = await packSquashfs({
            root: tree,
            output: sqfsArchive,
            compression: 'zstd',
            level: squashfsLevel,
          })
          sqfsHashes.add(packed.sha256)
        },
        before: noArchive(sqfsArchive),
      },
      {
        name: `squashfs pack: packSquashfs + 1 MiB piece hashes (zstd -${squashfsLevel}, 1 MiB blocks)`,
        fn: async () => {
          const packed = await packSquashfs({
            root: tree,
            output: sqfsArchive,
            compression: 'zstd',
            level: squashfsLevel,
            pieceLength: 1 << 20,
          })
          sqfsHashes.add(packed.sha256)
          losses = packed.losses
        },
        before: noArchive(sqfsArchive),
      },
      {
        name: `squashfs pack: packSquashfs + piece hashes, zstd -${referenceLevel} (reference)`,
        fn: () =>
          packSquashfs({
            root: tree,
            output: sqfsReference,
            compression: 'zstd',
            level: referenceLevel,
            pieceLength: 1 << 20,
          }),
        before: noArchive(sqfsReference),
      },
      {
        name: `squashfs pack: mksquashfs -comp zstd -Xcompression-level ${squashfsLevel} -b 1M (reference)`,
        fn: () =>
          sh(
            `mksquashfs ${quote(tree)} ${quote(mksquashfsArchive)} -comp zstd ` +
              `-Xcompression-level ${squashfsLevel} -b 1M -mkfs-time 0 -noappend -quiet -no-progress ` +
              `-wildcards -e ${mksquashfsExcludes}`,
          ),
        before: noArchive(mksquashfsArchive),
      },
    ])
    const sizeOf = async (file) => (await stat(file)).size
    const sizes = [
      ['tar.zst: packArchive (the baseline)', await sizeOf(ourArchive)],
      ['tar.zst: tar -c | zstd (plain pipeline)', await sizeOf(plainArchive)],
      [`.sqfs: packSquashfs, zstd -${squashfsLevel}, 1 MiB blocks`, await sizeOf(sqfsArchive)],
      [`.sqfs: packSquashfs, zstd -${referenceLevel} (reference)`, await sizeOf(sqfsReference)],
      [
        `.sqfs: mksquashfs, zstd -${squashfsLevel}, -b 1M (reference)`,
        await sizeOf(mksquashfsArchive),
      ],
    ]
    const sqfsIdentical = (await sha256File(plainSqfsArchive)) === (await sha256File(sqfsArchive))
    await rm(plainArchive, { force: true })
    await rm(plainSqfsArchive, { force: true })
    await rm(sqfsReference, { force: true })
    await rm(mksquashfsArchive, { force: true })
    const sqfsExtractRows = await measureInTurns('squashfs', [
      {
        name: 'squashfs extract: extractArchive of the tar.zst, empty target',
        fn: () =>
          expectValidation(extractArchive({ archive: ourArchive, target }), 'while-extracting'),
        before: fresh,
      },
      {
        // Two sqfs2tar passes: validateArchive over the whole stream, then sqfs2tar | tar -x.
        name: 'squashfs extract: extractArchive of the .sqfs, empty target (validate, then extract)',
        fn: () =>
          expectValidation(extractArchive({ archive: sqfsArchive, target }), 'before-extracting'),
        before: fresh,
      },
      {
        name: 'squashfs extract: validateArchive of the .sqfs only',
        fn: () => validateArchive(sqfsArchive, undefined, { squashfs: true }),
      },
    ])
    const mountPoint = join(work, 'mnt')
    const unmountable = squashfsUnmountable(sqfsArchive, mountPoint)
    let sqfsMountRows = []
    if (unmountable !== undefined) console.error(`squashfs mount: skipped, ${unmountable}`)
    else {
      // The tree as a node that extracted the image has it (warm in the page cache).
      const readTree = join(targets, 'read-tree')
      await mkdir(readTree)
      await extractArchive({ archive: sqfsArchive, target: readTree })
      execFileSync('sync')
      // GNU tar does not read the files when the archive is /dev/null: hence the pipe.
      const readAll = (dir) => sh(`tar -cf - -C ${quote(dir)} . | cat > /dev/null`)
      const mount = () => {
        execFileSync('mount', ['-t', 'squashfs', '-o', 'ro,loop', sqfsArchive, mountPoint])
        mounted = mountPoint
      }
      const umount = () => {
        execFileSync('umount', [mountPoint])
        mounted = undefined
      }
      sqfsMountRows = await measureInTurns('squashfs', [
        {
          name: 'squashfs mount: read every file of the extracted tree (tar -cf - | cat)',
          fn: () => readAll(readTree),
        },
        {
          name: 'squashfs mount: mount -o ro,loop f; read every file the same way; umount',
          fn: () => {
            mount()
            try {
              readAll(mountPoint)
            } finally {
              umount()
            }
          },
        },
        {
          name: 'squashfs mount: mount -o ro,loop f; umount (no reads)',
          fn: () => {
            mount()
            umount()
          },
        },
      ])
    }
    squashfs = {
      rows: [...sqfsPackRows, ...sqfsExtractRows, ...sqfsMountRows],
      tarPack: sqfsPackRows[1],
      sqfsPack: sqfsPackRows[4],
      sqfsIdentical,
      sizes,
      sqfsHashes,
      losses,
    }
  }
  const rows = [...packRows, ...extractRows, ...installRows]
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
  if (rows.length > 0) printTable(rows, treeBytes)
  if (squashfs !== undefined) printSquashfs(squashfs, treeBytes, rows.length > 0)
} finally {
  if (mounted !== undefined) spawnSync('umount', [mounted], { stdio: 'inherit' })
  await rm(targets, { recursive: true, force: true })
  await rm(work, { recursive: true, force: true })
}

/**
 * The rows as a Markdown table. Each group (the name up to its colon: pack, extract,
 * install, squashfs pack, …) compares with its first row, the plain pipeline.
 */
function printTable(rows, treeBytes) {
  const group = (row) => row.name.split(':')[0]
  const baselines = new Map()
  for (const row of rows) if (!baselines.has(group(row))) baselines.set(group(row), row)
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
      `${pairedRatio(row, baseline).toFixed(2)}×`,
      row.cpu.toFixed(2),
      `${(row.cpu / baseline.cpu).toFixed(2)}×`,
    ]
    console.log(`| ${cells.join(' | ')} |`)
  }
}

/** The median of each turn's ratio of `row` to `baseline` in the same turn. */
function pairedRatio(row, baseline) {
  return median(row.times.map((time, turn) => time / baseline.times[turn]))
}

/** The squashfs group's tables: times, sizes, and the targets met or not. */
function printSquashfs(
  { rows, tarPack, sqfsPack, sizes, sqfsHashes, sqfsIdentical, losses },
  treeBytes,
  after,
) {
  const identical =
    sqfsHashes.size === 1
      ? `identical bytes in all ${runs * 2} runs`
      : `${sqfsHashes.size} DIFFERENT files in ${runs * 2} runs`
  console.log(
    `${after ? '\n' : ''}SquashFS: packSquashfs wrote ${identical}, ` +
      `${sqfsIdentical ? 'identical to' : 'DIFFERENT from'} tar -c | tar2sqfs's; SquashFS ` +
      `clamped ${losses.clampedMtimes.length} mtimes (and dropped every fraction of a second).\n`,
  )
  printTable(rows, treeBytes)
  const tarZstBytes = sizes[0][1]
  console.log('\n| file | MiB | bytes | vs tar.zst |')
  console.log('| --- | ---: | ---: | ---: |')
  for (const [name, bytes] of sizes) {
    const cells = [
      name.replaceAll('|', '\\|'),
      (bytes / 2 ** 20).toFixed(1),
      bytes,
      `${(bytes / tarZstBytes).toFixed(3)}×`,
    ]
    console.log(`| ${cells.join(' | ')} |`)
  }
  const met = (ok) => (ok ? 'met' : 'NOT MET')
  const sizeRatio = sizes[2][1] / tarZstBytes
  const timeRatio = pairedRatio(sqfsPack, tarPack)
  // --replicate's copies are identical files: SquashFS stores each once, the tar.zst each
  // copy again (beyond zstd's window), and tar2sqfs writes their blocks once.
  const sizeVerdict =
    replicate > 1
      ? `not judged on --replicate ${replicate}: SquashFS stores the copies' identical files ` +
        'once (it deduplicates whole files), the tar.zst holds every copy'
      : met(sizeRatio <= 1.1)
  console.log(
    '\nTargets from the issue:\n' +
      `- size: the .sqfs is ${sizeRatio.toFixed(3)} × the tar.zst (target ≤ 1.1 ×): ` +
      `${sizeVerdict}\n` +
      `- pack time: packSquashfs + piece hashes takes ${timeRatio.toFixed(2)} × ` +
      'packArchive + piece hashes, paired (ratio of the medians ' +
      `${(sqfsPack.median / tarPack.median).toFixed(2)} ×, CPU ` +
      `${(sqfsPack.cpu / tarPack.cpu).toFixed(2)} ×) (target ≤ 1.2 ×): ${met(timeRatio <= 1.2)}`,
  )
}

/**
 * Why `mount -t squashfs` cannot be timed here, or `undefined` when it can: running as root,
 * it mounts `file` on `dir` once and unmounts it.
 */
function squashfsUnmountable(file, dir) {
  if (process.getuid?.() !== 0) return 'not running as root'
  execFileSync('mkdir', ['-p', dir])
  const mount = spawnSync('mount', ['-t', 'squashfs', '-o', 'ro,loop', file, dir], {
    encoding: 'utf8',
  })
  if (mount.status !== 0)
    return `mount -t squashfs failed: ${mount.error?.message ?? mount.stderr.trim()}`
  const umount = spawnSync('umount', [dir], { encoding: 'utf8' })
  if (umount.status !== 0) {
    mounted = dir
    throw new Error(`umount ${dir} failed: ${umount.stderr.trim()}`)
  }
  return undefined
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
