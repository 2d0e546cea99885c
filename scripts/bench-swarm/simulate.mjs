#!/usr/bin/env node
// A swarm simulator in virtual time, driven by the engine's own policy modules: see
// sim/cli.mjs (the command), sim/run.mjs (the run loop), sim/node.mjs (a node),
// sim/links.mjs (the link model), sim/tracker.mjs (the peer handout), sim/report.mjs.
//
//   node scripts/bench-swarm/simulate.mjs --nodes 1000 --size 1GiB --rate 1gbit \
//     --rack-size 40 --oversubscription 4 [--no-rack-aware] [--json]
//
// Needs packages/swarm and packages/tracker built (pnpm build).
import { main } from './sim/cli.mjs'

await main()
