import { resolveConfig } from '@imageswarm/core'
import { z } from 'zod'

/**
 * The tracker's settings, with defaults for a LAN of tens to thousands of install
 * clients rather than for the public internet that bittorrent-tracker's defaults assume.
 * README.md explains each default at more length.
 */
export const TrackerConfigSchema = z
  .strictObject({
    // bittorrent-tracker tells clients to come back every 10 minutes, which would leave
    // swarm stats (and so install progress) minutes out of date. Every 20 s keeps them
    // live, and even 5,000 nodes make only 250 announces a second, each answered from
    // memory with about a kilobyte: a small load for one Node process on a LAN. Down to
    // 1 s is allowed for tests and small labs; load grows as nodes / interval.
    announceIntervalSeconds: z.number().int().min(1).max(3600).default(20),
    // bittorrent-tracker forgets the least recently seen peer once a swarm holds 1,000
    // (its peersCacheLength). A cluster install can be bigger; 20,000 entries of about
    // 200 bytes each cost a few megabytes per image.
    maxPeersPerSwarm: z.number().int().min(1).max(1_000_000).default(20_000),
    // How long a peer that stops announcing stays in the swarm (peersCacheTtl). Unset,
    // it is three announce intervals, so a node that misses one or two announces while
    // busy extracting is not dropped; a crashed node is gone within a minute.
    peerTtlSeconds: z.number().int().positive().optional(),
    // Peers handed out when an announce does not say how many it wants. An install
    // client keeps up to 80 connections (core's SwarmSettings.maxConnections); 100
    // candidates leave room for peers that are busy or gone, where the public-internet
    // 50 would not even fill its connection slots.
    defaultNumwant: z.number().int().min(0).max(10_000).default(100),
    // The most peers one announce can get (bittorrent-tracker caps it at 82). Past a few
    // hundred a client cannot use them, while the reply and the tracker's work grow with
    // every peer: 200 compact peers are 1.2 KB.
    maxNumwant: z.number().int().min(1).max(10_000).default(200),
    // Read the client's address from X-Forwarded-For. Only behind a reverse proxy: with
    // no proxy any client could claim any address and poison the swarm.
    trustProxy: z.boolean().default(false),
    // A node that has neither announced nor posted its status for this long is shown as
    // stale. Clients post at least every quarter of this (see statusPostsPerSecond) and
    // announce every interval, so a minute of silence means the machine crashed, rebooted
    // or lost the network; a node busy extracting still posts. Nodes that are done or
    // failed are never stale.
    nodeStaleSeconds: z.number().int().min(1).max(86_400).default(60),
    // Nodes remembered per image for the dashboard, including finished and stale ones.
    // The least recently heard from is forgotten first (its bytes stay in the totals).
    // About 1 KB each.
    maxNodesPerSwarm: z.number().int().min(1).max(1_000_000).default(20_000),
    // How often each swarm's history (rates, nodes by state) gets a point, and how many
    // points it keeps: 1 s for a throughput chart that follows a LAN install, 3,600 for
    // the last hour. About 100 bytes a point, so 360 KB per image.
    historySampleSeconds: z.number().int().min(1).max(3600).default(1),
    historyPoints: z.number().int().min(10).max(1_000_000).default(3600),
    // Status posts accepted per node and second, with bursts of three times that. A
    // client posts about once a second and on each state change; more is a bug or an
    // attack, and gets 429 rather than the tracker's time.
    statusRatePerNode: z.number().positive().max(1000).default(5),
    // Status posts a second the tracker asks of all nodes together. Up to this many nodes
    // post every second; beyond, each post's reply tells the nodes to post less often
    // (state changes still go at once), up to a quarter of nodeStaleSeconds apart.
    statusPostsPerSecond: z.number().positive().max(100_000).default(100),
    // New node ids one source address may claim with a first status post, per minute,
    // all at once if it likes (an IPv6 address counts by its /64). One host is one node,
    // or a few installs in a row; the loopback demo and tests run up to 32 clients from
    // 127.0.0.1, and a rack behind one NAT address its nodes. 120 takes those at once and
    // 2 a second after; a host inventing peer ids gets 429 instead of filling the table
    // (20,000 posts with fresh ids from one address: about 140 accepted in 10 s).
    newNodesPerAddressPerMinute: z.number().int().min(1).max(1_000_000).default(120),
    // A deployment (one wave of installs of an image, see deployment.ts) ends once all its
    // nodes finished or went silent and none started or finished for this long; a node
    // that starts within it joins the same deployment. Two minutes holds a rack whose PXE
    // boots are spread over a minute or two, and still tells apart runs an operator starts
    // one after the other.
    deploymentGapSeconds: z.number().int().min(1).max(86_400).default(120),
    // Finished deployments kept per image (the oldest goes first), in memory: the server
    // keeps no state on disk, so a restart starts the record anew (export it: CSV, JSON).
    // A deployment costs about 300 bytes a node: 20 of 1,000 nodes are 6 MB.
    deploymentsKept: z.number().int().min(1).max(10_000).default(20),
    // A file holding the dashboard's read-only token. Unset, the page, the JSON API, the
    // live events and /metrics are open to anyone who reaches the port; set, they need
    // the token (`Authorization: Bearer`, or `?token=` once in a browser). The tracker,
    // the image files and nodes' status posts stay open: nodes do not know the token.
    dashboardTokenFile: z.string().min(1).optional(),
    // The server's map of nodes to racks (`--rack-map`): `SUBNET RACK` or `NODE-NAME RACK`
    // per line, for nodes that do not announce their rack. See RackMap.
    rackMap: z.string().min(1).optional(),
  })
  .superRefine((config, ctx) => {
    if (config.defaultNumwant > config.maxNumwant) {
      ctx.addIssue({
        code: 'custom',
        path: ['defaultNumwant'],
        message: `must not exceed maxNumwant (${config.maxNumwant})`,
      })
    }
    if (
      config.peerTtlSeconds !== undefined &&
      config.peerTtlSeconds <= config.announceIntervalSeconds
    ) {
      ctx.addIssue({
        code: 'custom',
        path: ['peerTtlSeconds'],
        message: `must be longer than announceIntervalSeconds (${config.announceIntervalSeconds}), or every peer would expire between two of its announces`,
      })
    }
  })
  .transform((config) => ({
    ...config,
    peerTtlSeconds: config.peerTtlSeconds ?? 3 * config.announceIntervalSeconds,
  }))

export type TrackerConfig = z.output<typeof TrackerConfigSchema>

/**
 * Fills the tracker's defaults and throws `E_CONFIG_INVALID`, naming the key, when a
 * value is wrong.
 *
 * @example
 *   resolveTrackerConfig({ announceIntervalSeconds: 15 }).peerTtlSeconds // 45
 */
export function resolveTrackerConfig(partial: Partial<TrackerConfig> = {}): TrackerConfig {
  return resolveConfig(TrackerConfigSchema, partial, 'tracker')
}
