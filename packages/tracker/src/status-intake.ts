import {
  makeNodeToken,
  NODE_TOKEN_PATTERN,
  type NodeStatusReply,
  type NodeStatusReport,
} from '@imageswarm/core'
import { addressBudgetKey } from './credentials.js'
import type { ApiError } from './http-reply.js'
import { RateLimiter } from './rate-limit.js'
import type { SwarmMonitor } from './swarm-monitor.js'
import { type StatusSender, SwarmState } from './swarm-state.js'

/** How a status post ended, for the `imageswarm_status_reports_total` counter. */
export type StatusOutcome =
  | 'accepted'
  | 'invalid'
  | 'too_large'
  | 'unknown_image'
  | 'forbidden'
  | 'rate_limited'
  | 'new_nodes_limited'
  | 'aborted'

export type IntakeResult =
  | { ok: true; reply: NodeStatusReply }
  | { ok: false; outcome: StatusOutcome; error: ApiError; headers?: Record<string, string> }

export interface StatusIntakeOptions {
  monitor: SwarmMonitor
  /** Posts a second one node may make, in bursts of three times that. */
  ratePerNode: number
  /** New peer ids one address (an IPv6 /64) may claim a minute, all at once if it likes. */
  newNodesPerAddressPerMinute: number
  /** How many nodes and addresses the rate limits remember. */
  maxKeys: number
}

/**
 * What the tracker does with a well-formed status report, before and apart from HTTP:
 * the image must be published, the post must come from the node that claimed the peer
 * id (or claim a free one), and both the node's rate and its address's budget of new
 * nodes must allow it. Only then is the report recorded.
 */
export class StatusIntake {
  readonly #monitor: SwarmMonitor
  readonly #perNode: RateLimiter
  readonly #newNodes: RateLimiter
  readonly #newNodesPerMinute: number

  constructor(options: StatusIntakeOptions) {
    this.#monitor = options.monitor
    this.#perNode = new RateLimiter({
      rate: options.ratePerNode,
      burst: Math.max(3, 3 * options.ratePerNode),
      maxKeys: options.maxKeys,
    })
    this.#newNodesPerMinute = options.newNodesPerAddressPerMinute
    this.#newNodes = new RateLimiter({
      rate: options.newNodesPerAddressPerMinute / 60,
      burst: options.newNodesPerAddressPerMinute,
      maxKeys: options.maxKeys,
    })
  }

  take(report: NodeStatusReport, sender: StatusSender): IntakeResult {
    const swarm = this.#monitor.swarmFor(report)
    if (!(swarm instanceof SwarmState)) return { ok: false, outcome: 'unknown_image', error: swarm }
    const access = swarm.checkAccess(report.peerId, sender)
    if (access.kind === 'refused') {
      return {
        ok: false,
        outcome: 'forbidden',
        error: {
          status: 403,
          code: 'E_NODE_FORBIDDEN',
          message: access.message,
          hint: access.hint,
        },
      }
    }
    const claiming = access.kind === 'claim'
    if (claiming && sender.token !== undefined && !NODE_TOKEN_PATTERN.test(sender.token)) {
      return {
        ok: false,
        outcome: 'invalid',
        error: {
          status: 400,
          code: 'E_STATUS_INVALID',
          message: 'invalid node token: it must be 32 to 128 base64url characters',
          hint: "send a random token of your own (core's makeNodeToken), or none and take the one in the reply",
        },
      }
    }
    const now = this.#monitor.now()
    const wait = this.#perNode.take(report.peerId, now)
    if (wait > 0) {
      const retry = Math.max(1, Math.ceil(wait))
      return {
        ok: false,
        outcome: 'rate_limited',
        error: {
          status: 429,
          code: 'E_RATE_LIMITED',
          message: `too many status reports from peer ${report.peerId}`,
          hint: `post as often as the server's replies say and on state changes; retry after ${retry} s`,
        },
        headers: { 'Retry-After': String(retry) },
      }
    }
    if (claiming) {
      const budgetWait = this.#newNodes.take(addressBudgetKey(sender.address), now)
      if (budgetWait > 0) {
        const retry = Math.max(1, Math.ceil(budgetWait))
        return {
          ok: false,
          outcome: 'new_nodes_limited',
          error: {
            status: 429,
            code: 'E_RATE_LIMITED',
            message: `too many new nodes from ${sender.address}: more than ${this.#newNodesPerMinute} a minute`,
            hint: `retry after ${retry} s; if many real nodes share this address (NAT), raise newNodesPerAddressPerMinute`,
          },
          headers: { 'Retry-After': String(retry) },
        }
      }
    }
    const reply: NodeStatusReply = { ok: true, reportIntervalMs: this.#monitor.statusIntervalMs() }
    if (claiming) {
      // A post without a token (curl, a node built without one) gets one made for it.
      reply.nodeToken = sender.token ?? makeNodeToken()
      swarm.recordStatus(report, now, { address: sender.address, token: reply.nodeToken })
    } else {
      swarm.recordStatus(report, now, sender)
    }
    return { ok: true, reply }
  }
}
