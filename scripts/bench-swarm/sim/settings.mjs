// A simulation's settings: each key is its flag's name in camelCase, each default set
// here once. resolveSimSettings names the key that is wrong and what it expected.
import { parseSize } from '../lib/bench.mjs'
import { parseRate } from '../lib/netns.mjs'

/**
 * @typedef {object} SimSettings
 * @property {number} nodes clients (the image server comes on top)
 * @property {number} size archive bytes
 * @property {number} rate each client's upload and download, bits per second
 * @property {number} serverRate the server's upload, bits per second
 * @property {number} racks racks (0: a flat network)
 * @property {number} rackSize nodes per rack; its uplink carries rackSize × rate / oversubscription
 * @property {number} oversubscription
 * @property {boolean} rackAware nodes give the tracker their rack
 * @property {number} latency ms before a message arrives
 * @property {number} step ms per step of the run loop
 * @property {number} seed
 * @property {number} pieceLength
 * @property {number} maxConnections
 * @property {number} serverMaxConnections
 * @property {number} uploadSlots
 * @property {number} numwant
 * @property {number} announceInterval ms
 * @property {number} startSpread ms over which client starts are spread evenly
 * @property {boolean} rarestShortcut skip PiecePicker.rarestFor's scan when it can find
 *   nothing (see ShortcutPicker in sim/node.mjs); the same run, faster
 */

const DEFAULTS = {
  seed: 1,
  pieceLength: '1MiB',
  // The engine's SwarmSettings defaults (packages/core/src/swarm.ts).
  maxConnections: 80,
  uploadSlots: 20,
  numwant: 80,
  // The tracker's default announce interval.
  announceInterval: '20s',
  startSpread: '0s',
  latency: '1ms',
  // Fine enough that a request queue (Peer.queueBytes: at least 0.5 s of the rate) spans
  // many steps, coarse enough that a step moves several blocks per flow.
  // (default: see defaultStep)
  oversubscription: 1,
}

/** Fills defaults and parses units; throws naming the bad key. */
export function resolveSimSettings(partial) {
  const given = { ...DEFAULTS, ...definedOnly(partial) }
  const nodes = integer(given, 'nodes', 1)
  const rate = parse(given, 'rate', parseRate, 'a tc rate such as 25mbit or 1gbit')
  let rackSize = 0
  let racks = 0
  if (given.rackSize !== undefined) {
    rackSize = integer(given, 'rackSize', 1)
    racks = Math.ceil(nodes / rackSize)
  } else if (given.racks !== undefined) {
    racks = integer(given, 'racks', 1)
    rackSize = Math.ceil(nodes / racks)
    racks = Math.ceil(nodes / rackSize)
  }
  const maxConnections = integer(given, 'maxConnections', 1)
  const settings = {
    nodes,
    size: parse(given, 'size', parseSize, 'a size such as 128MiB or 4GiB'),
    rate,
    serverRate:
      given.serverRate === undefined
        ? rate
        : parse(given, 'serverRate', parseRate, 'a tc rate such as 10gbit'),
    racks,
    rackSize,
    oversubscription: number(given, 'oversubscription', 1),
    rackAware: racks > 0 && given.rackAware !== false,
    latency: parse(given, 'latency', parseDuration, 'a duration such as 1ms or 0.2ms'),
    step:
      given.step === undefined
        ? defaultStep(rate, given.pieceLength)
        : parse(given, 'step', parseDuration, 'a duration such as 50ms'),
    rarestShortcut: given.rarestShortcut !== false,
    seed: integer(given, 'seed', 0),
    pieceLength: parse(given, 'pieceLength', parseSize, 'a size such as 1MiB'),
    maxConnections,
    serverMaxConnections:
      given.serverMaxConnections === undefined
        ? maxConnections
        : integer(given, 'serverMaxConnections', 1),
    uploadSlots: integer(given, 'uploadSlots', 1),
    numwant: integer(given, 'numwant', 1),
    announceInterval: parse(given, 'announceInterval', parseDuration, 'a duration such as 20s'),
    startSpread: parse(given, 'startSpread', parseDuration, 'a duration such as 30s'),
  }
  if (!(settings.step > 0)) throw badKey('step', 'a duration above 0', given.step)
  if (!(settings.latency >= 0)) throw badKey('latency', 'a duration of 0 or more', given.latency)
  if (settings.pieceLength % (16 * 1024) !== 0) {
    throw badKey('pieceLength', 'a multiple of 16 KiB, such as 1MiB', given.pieceLength)
  }
  return settings
}

/**
 * The step: as long as one piece takes at the node's rate, at most 50 ms (25 Mbit/s:
 * 50 ms; 1 Gbit/s: 8.4 ms; 10 Gbit/s: 0.84 ms). Within a step rates are fixed and a flow
 * that starts takes only what is left over; at 1 Gbit/s, 100 nodes, 256 MiB, T_all/T_min
 * was 1.73 with 50 ms steps, 2.14 with 10 ms, 2.24 with 5 ms and 2.17 with 2 ms (the
 * spread between seeds is about ±0.05), and at 25 Mbit/s, 32 nodes, 1.68 with 50 ms and
 * 1.74 with 10 ms.
 */
function defaultStep(rate, pieceLength) {
  const pieceMs = (parseSize(pieceLength) * 8 * 1000) / rate
  return Math.min(50, pieceMs)
}

/** `20s`, `50ms`, `0.2ms`, `1m`; a bare number is milliseconds. In ms. */
export function parseDuration(text) {
  const match = /^(\d+(?:\.\d+)?)\s*(ms|s|m)?$/.exec(String(text))
  if (!match) throw new Error(`bad duration ${JSON.stringify(text)}`)
  return Number(match[1]) * { ms: 1, s: 1000, m: 60_000 }[match[2] ?? 'ms']
}

function definedOnly(object) {
  return Object.fromEntries(Object.entries(object).filter(([, value]) => value !== undefined))
}

function parse(given, key, parser, expected) {
  if (given[key] === undefined) throw badKey(key, expected, undefined)
  try {
    return parser(given[key])
  } catch {
    throw badKey(key, expected, given[key])
  }
}

function number(given, key, min) {
  const value = Number(given[key])
  if (!(Number.isFinite(value) && value >= min)) throw badKey(key, `a number ≥ ${min}`, given[key])
  return value
}

function integer(given, key, min) {
  const value = number(given, key, min)
  if (!Number.isInteger(value)) throw badKey(key, `an integer ≥ ${min}`, given[key])
  return value
}

function badKey(key, expected, received) {
  const flag = `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`
  return new Error(`${flag}: expected ${expected}, received ${JSON.stringify(received)}`)
}
