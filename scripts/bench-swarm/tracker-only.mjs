// imageswarm's tracker alone, for the aria2 runs: the same allow-listed tracker the
// .torrent announces to, without imageswarm's seeder taking part in the swarm.
// Usage: node tracker-only.mjs ADDRESS PORT INFOHASH
import { createServer } from 'node:http'
import { createTracker } from '../../packages/tracker/dist/index.js'

const [address, port, infoHash] = process.argv.slice(2)
const tracker = createTracker({ config: { announceIntervalSeconds: 20 } })
tracker.publish(infoHash, 'bench')
const server = createServer((req, res) => {
  if (!tracker.handle(req, res)) res.writeHead(404).end()
})
server.listen(Number(port), address, () => process.stderr.write('tracker ready\n'))
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    server.close()
    process.exit(0)
  })
}
