#!/usr/bin/env node
// The swarm benchmark: deploys one image to N emulated hosts with imageswarm, HTTP
// unicast and aria2, and writes a Markdown report, SVG plots and the raw figures.
//
//   node scripts/bench-swarm/run.mjs --clients 1,4,8,16,32 --rate 25mbit --size 128MiB \
//     --transports imageswarm,http,aria2
//
// Needs root (network namespaces), iproute2, aria2, curl, zstd; see docs/benchmarks/.
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { parseSize, runBench } from './lib/bench.mjs'
import { writeReport } from './lib/report.mjs'

const { values } = parseArgs({
  options: {
    clients: { type: 'string', default: '1,4,8,16,32' },
    rate: { type: 'string', default: '25mbit' },
    size: { type: 'string', default: '128MiB' },
    transports: { type: 'string', default: 'imageswarm,http,aria2' },
    'work-dir': { type: 'string', default: '/var/tmp/imageswarm-bench' },
    out: {
      type: 'string',
      default: fileURLToPath(new URL('../../docs/benchmarks/swarm', import.meta.url)),
    },
    label: { type: 'string', default: '' },
    'http-clients': { type: 'string' },
    timeout: { type: 'string' },
    'serve-arg': { type: 'string', multiple: true, default: [] },
    'install-arg': { type: 'string', multiple: true, default: [] },
    env: { type: 'string', multiple: true, default: [] },
    'client-node-arg': { type: 'string', multiple: true, default: [] },
    'install-client': { type: 'string' },
    baseline: { type: 'string' },
    verbose: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
})
if (values.help) {
  process.stdout.write(
    'usage: run.mjs [--clients 1,4,8] [--rate 25mbit] [--size 128MiB] [--transports imageswarm,http,aria2]\n' +
      '               [--http-clients 1,4] [--label NAME] [--out DIR] [--work-dir DIR] [--timeout S]\n' +
      '               [--serve-arg ARG]… [--install-arg ARG]… [--env KEY=VALUE]… [--verbose]\n' +
      '               [--client-node-arg ARG]… [--install-client BUNDLE]\n' +
      "               [--baseline DIR]  (transport imageswarm-baseline: DIR's built checkout)\n",
  )
  process.exit(0)
}

const clients = values.clients.split(',').map(Number)
const transports = values.transports.split(',')
const size = parseSize(values.size)
const label = values.label || `${values.rate}-${values.size}`
const started = new Date()
const results = await runBench({
  clients,
  rate: values.rate,
  size,
  transports,
  workDir: values['work-dir'],
  ...(values['http-clients'] ? { httpClients: values['http-clients'].split(',').map(Number) } : {}),
  ...(values.timeout ? { timeoutSeconds: Number(values.timeout) } : {}),
  serveArgs: values['serve-arg'],
  installArgs: values['install-arg'],
  clientNodeArgs: values['client-node-arg'],
  ...(values['install-client'] ? { installClient: values['install-client'] } : {}),
  ...(values.baseline ? { baseline: values.baseline } : {}),
  clientEnv: Object.fromEntries(values.env.map((kv) => kv.split(/=(.*)/s).slice(0, 2))),
  log: (line) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`),
  ...(values.verbose
    ? {
        onClientLog: (host, line) => process.stderr.write(`  [${host.name}] ${line}\n`),
      }
    : {}),
}).catch((err) => {
  process.stderr.write(`bench failed: ${err.stack ?? err}\n`)
  process.exit(1)
})

await mkdir(values.out, { recursive: true })
const run = {
  label,
  date: started.toISOString(),
  command: `node scripts/bench-swarm/run.mjs ${process.argv.slice(2).join(' ')}`,
  settings: {
    clients,
    rate: values.rate,
    size: values.size,
    transports,
    env: values.env,
    serveArgs: values['serve-arg'],
    installArgs: values['install-arg'],
    ...(values.baseline ? { baseline: values.baseline } : {}),
  },
  results,
}
const jsonPath = join(values.out, `${label}.json`)
await writeFile(jsonPath, `${JSON.stringify(run, null, 2)}\n`)
const mdPath = await writeReport(run, values.out)
process.stderr.write(`wrote ${jsonPath} and ${mdPath}\n`)
