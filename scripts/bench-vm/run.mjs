#!/usr/bin/env node
// @ts-check
// The VM benchmark: N QEMU VMs network-boot the installer, install the bootable Debian
// image, reboot from their disks and boot it; every stage of every node is dated from its
// serial console. Each N runs twice in the same invocation: the installer over the swarm
// (si.dl-protocol=torrent, the default) and the same installer fetching the archive with one
// plain HTTP GET from the server (si.dl-protocol=http). Writes a Markdown report, the raw
// figures (JSON) and SVG plots into docs/benchmarks/vm/.
//
//   node scripts/bench-vm/run.mjs --nodes 4,8 [--transports torrent,http] [--pad-mib 128]
//     [--upload-limit 12M] [--memory 768] [--label NAME] [--out DIR] [--work-dir DIR]
//
// Needs root (network namespaces, taps, loop mounts), QEMU, dnsmasq, the bootable test root
// (scripts/make-debian-root.sh --bootable) and a built workspace (pnpm build); see
// docs/benchmarks/vm/README.md.
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import {
  chooseAccelerator,
  createTestNetwork,
  missingVmSupport,
  planNodes,
  startDnsmasq,
} from '../lib/vm-cluster.mjs'
import {
  BOOTABLE_ROOT_DEFAULT,
  buildRamdisk,
  deployNodes,
  INSTALLER_BUNDLE,
  prepareBootableImage,
  processCpuSeconds,
  serveImages,
} from '../lib/vm-deploy.mjs'
import { writeVmReport } from './report.mjs'

const { values } = parseArgs({
  options: {
    nodes: { type: 'string', default: '8' },
    transports: { type: 'string', default: 'torrent,http' },
    'pad-mib': { type: 'string', default: '0' },
    'upload-limit': { type: 'string' },
    memory: { type: 'string', default: '768' },
    label: { type: 'string' },
    out: {
      type: 'string',
      default: fileURLToPath(new URL('../../docs/benchmarks/vm', import.meta.url)),
    },
    'work-dir': { type: 'string', default: '/var/tmp/imageswarm-bench-vm' },
    'boot-dir': { type: 'string' },
    'image-root': { type: 'string', default: BOOTABLE_ROOT_DEFAULT },
    timeout: { type: 'string', default: '3600' },
    verbose: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
})
if (values.help) {
  process.stdout.write(
    'usage: run.mjs [--nodes 4,8] [--transports torrent,http] [--pad-mib MIB] [--upload-limit RATE]\n' +
      '               [--memory MIB] [--label NAME] [--out DIR] [--work-dir DIR] [--boot-dir DIR]\n' +
      '               [--image-root DIR] [--timeout S] [--verbose] [--keep]\n',
  )
  process.exit(0)
}

const say = (/** @type {string} */ text) =>
  process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${text}\n`)
const counts = values.nodes.split(',').map(Number)
const transports = /** @type {('torrent' | 'http')[]} */ (values.transports.split(','))
for (const transport of transports) {
  if (transport !== 'torrent' && transport !== 'http') {
    throw new Error(`--transports: ${transport} is neither torrent nor http`)
  }
}
const memoryMiB = Number(values.memory)
const padMiB = Number(values['pad-mib'])
const label =
  values.label ??
  `n${counts.join('-')}${padMiB ? `-pad${padMiB}` : ''}${values['upload-limit'] ? `-up${values['upload-limit']}` : ''}`

const missing = await missingVmSupport()
if (missing) {
  say(`cannot run VMs here: ${missing}`)
  process.exit(2)
}
if (!existsSync(join(values['image-root'], 'boot'))) {
  say(`no bootable root at ${values['image-root']} (scripts/make-debian-root.sh --bootable)`)
  process.exit(2)
}
if (!existsSync(INSTALLER_BUNDLE)) {
  say(`no ${INSTALLER_BUNDLE} (pnpm build)`)
  process.exit(2)
}

const work = values['work-dir']
await rm(work, { recursive: true, force: true })
await mkdir(work, { recursive: true })
const serverDir = join(work, 'server')
const started = new Date()
const bootDir = values['boot-dir'] ?? join(work, 'boot')
if (!values['boot-dir']) {
  say('building the installer ramdisk (imageswarm initrd)')
  await buildRamdisk(bootDir)
}
say(
  `copying the image root ${values['image-root']}${padMiB ? ` (+${padMiB} MiB of random bytes)` : ''}`,
)
await prepareBootableImage(values['image-root'], join(serverDir, 'images', 'bootable'), { padMiB })
const { accel, reason } = await chooseAccelerator({
  kernel: join(bootDir, 'vmlinuz'),
})
if (accel !== 'tcg') say(`KVM works here (${reason}); the benchmark still runs TCG, as CI does`)
const qemu = execFileSync('qemu-system-x86_64', ['--version']).toString().split('\n')[0] ?? ''

/** @type {import('./report.mjs').BenchRun[]} */
const runs = []
for (const n of counts) {
  for (const transport of transports) {
    runs.push(await deployOnce(n, transport))
  }
}

await mkdir(values.out, { recursive: true })
const bench = {
  label,
  date: started.toISOString(),
  command: `node scripts/bench-vm/run.mjs ${process.argv.slice(2).join(' ')}`,
  settings: {
    nodes: counts,
    transports,
    memoryMiB,
    padMiB,
    uploadLimit: values['upload-limit'] ?? 'none',
  },
  accel: `TCG; KVM probe: ${reason}`,
  machine: { qemu: qemu.replace(/^QEMU emulator version /, '') },
  runs,
}
await writeFile(join(values.out, `${label}.json`), `${JSON.stringify(bench, null, 2)}\n`)
const markdown = await writeVmReport(bench, values.out)
await writeFile(join(values.out, `${label}.md`), `# VM benchmark: ${label}\n\n${markdown}`)
say(`wrote ${join(values.out, `${label}.md`)}, ${label}.json and the plots`)
if (!values.keep) await rm(work, { recursive: true, force: true })

/**
 * One deployment of `n` nodes with one transport, on a network of its own (fresh disks,
 * a fresh tracker), from power-on to every node booted.
 * @param {number} n
 * @param {'torrent' | 'http'} transport
 * @returns {Promise<import('./report.mjs').BenchRun>}
 */
async function deployOnce(n, transport) {
  const net = await createTestNetwork()
  try {
    const nodes = planNodes(net, n)
    await startDnsmasq(net, { hosts: nodes, bootUrl: `http://${net.hostAddress}:6969/boot/ipxe` })
    const server = await serveImages(net, {
      dir: serverDir,
      images: ['bootable'],
      bootDir,
      bootAppend: [
        'imageswarm.on-failure=poweroff',
        'imageswarm.failure-delay=0',
        ...(transport === 'http' ? ['si.dl-protocol=http'] : []),
      ].join(' '),
      ...(values['upload-limit'] ? { uploadLimit: values['upload-limit'] } : {}),
    })
    say(`N=${n} ${transport}: serve ready at ${server.url}; powering on ${n} VMs`)
    const serverCpuBefore = (await processCpuSeconds(server.process.pid ?? 0)) ?? 0
    const seen = new Map()
    const deployed = await deployNodes(net, {
      nodes,
      memoryMiB,
      timeoutMs: Number(values.timeout) * 1000,
      onLine: (node, line) => {
        if (values.verbose && line.text.startsWith('imageswarm:')) say(`  ${node} ${line.text}`)
        const milestone =
          / (downloaded in|extracted into|GRUB installed|installed image) /.exec(line.text)?.[1] ??
          (/^IMAGESWARM-BOOTED /.test(line.text) ? 'booted' : undefined)
        if (milestone && !seen.has(`${node} ${milestone}`)) {
          seen.set(`${node} ${milestone}`, true)
          say(`  ${node}: ${milestone}`)
        }
      },
    })
    const serverCpuSeconds =
      ((await processCpuSeconds(server.process.pid ?? 0)) ?? 0) - serverCpuBefore
    const { stdout } = await net.exec('curl', ['-sf', `${server.url}/api/images/bootable/nodes`])
    const dashboard = JSON.parse(stdout).nodes
    const { stdout: manifestText } = await net.exec('curl', [
      '-sf',
      `${server.url}/images/bootable/manifest.json`,
    ])
    const booted = deployed.timelines.filter((node) => node.booted !== undefined)
    const t0 = Math.min(...deployed.timelines.map((node) => node.poweredOn))
    const tAll =
      booted.length === n
        ? (Math.max(...booted.map((node) => node.booted ?? 0)) - t0) / 1000
        : Number.NaN
    const failures = deployed.outcomes.flatMap((outcome) =>
      outcome.ok ? [] : [`${outcome.vm.name}: ${(outcome.error ?? '').split('\n')[0]}`],
    )
    say(
      `N=${n} ${transport}: ${booted.length} of ${n} booted, T_all ${tAll.toFixed(1)} s; host CPU ${(deployed.usage.hostBusy * 100).toFixed(0)} % busy`,
    )
    await Promise.all(deployed.vms.map((vm) => vm.stop()))
    await server.stop()
    return {
      n,
      transport,
      tAll,
      booted: booted.length,
      nodes: deployed.timelines,
      usage: deployed.usage,
      serverCpuSeconds,
      archiveBytes: JSON.parse(manifestText).size,
      dashboard: dashboard.map(
        /** @param {any} entry */ (entry) => ({
          node: entry.node,
          state: entry.state,
          downloaded: entry.downloaded,
          downloadedFromServer: entry.downloadedFromServer,
          uploaded: entry.uploaded,
        }),
      ),
      failures,
    }
  } finally {
    await net.teardown()
  }
}
