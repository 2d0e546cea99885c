import type { ErrorReport } from './errors.js'
import type { ImageManifest } from './manifest.js'

/**
 * Where a node's install is. One transition table (`NODE_TRANSITIONS`) says which
 * moves are legal, so a node can never be reported `done` without having extracted.
 */
export const NODE_STATES = [
  'waiting',
  'partitioning',
  'downloading',
  'verifying',
  'extracting',
  'configuring',
  'seeding',
  'done',
  'failed',
] as const
export type NodeState = (typeof NODE_STATES)[number]

/**
 * `partitioning` and `configuring` are the installer's (packages/installer): disks made
 * before the download, and the new root made bootable (fstab, overrides, bootloader,
 * post-install scripts) after extraction. A plain `imageswarm install` skips both.
 */
export const NODE_TRANSITIONS: Readonly<Record<NodeState, readonly NodeState[]>> = {
  waiting: ['partitioning', 'downloading', 'verifying', 'failed'],
  partitioning: ['downloading', 'verifying', 'failed'],
  downloading: ['verifying', 'failed'],
  verifying: ['extracting', 'downloading', 'failed'],
  extracting: ['configuring', 'seeding', 'done', 'failed'],
  configuring: ['seeding', 'done', 'failed'],
  seeding: ['done', 'failed'],
  done: [],
  failed: [],
}

export function canTransition(from: NodeState, to: NodeState): boolean {
  return NODE_TRANSITIONS[from].includes(to)
}

/** Byte counters of one node's swarm activity. */
export interface TransferTotals {
  /** Bytes of the archive received, from all sources. */
  downloaded: number
  /** Bytes of those that came from the image server (its seeder or web seed). */
  downloadedFromServer: number
  /** Bytes this node sent to other nodes. */
  uploaded: number
}

/**
 * The typed progress stream of one install. Library code emits these; the CLI renders
 * them as a bar, plain lines or JSON, and the client reports them to the server.
 */
export type InstallEvent =
  | { type: 'state'; state: NodeState; previous: NodeState }
  | { type: 'manifest'; manifest: ImageManifest }
  | { type: 'staging'; dir: string; archivePath: string }
  | {
      type: 'download-progress'
      size: number
      totals: TransferTotals
      downloadRate: number
      uploadRate: number
      peers: number
    }
  | { type: 'webseed-fallback'; reason: string }
  /** A piece failed its hash check and was discarded; `banned` lists peers dropped for it. */
  | { type: 'piece-rejected'; index: number; rejected: number; banned: string[] }
  | { type: 'download-complete'; seconds: number; totals: TransferTotals }
  | { type: 'verified'; sha256: string; seconds: number }
  | { type: 'extract-progress'; bytes: number; size: number }
  | { type: 'extracted'; target: string; seconds: number }
  | { type: 'seeding'; totals: TransferTotals; leechers: number }
  | { type: 'installed'; target: string; totals: TransferTotals; seconds: number }
  /** An update (issue 16) compared the root with the newest version and chose its source. */
  | { type: 'update-plan'; plan: UpdatePlan }
  | { type: 'updated'; target: string; version: number; totals: TransferTotals; seconds: number }
  | { type: 'failed'; error: ErrorReport }

export type InstallEventType = InstallEvent['type']

/** What an update will do to a root, and where the bytes come from. */
export interface UpdatePlan {
  image: string
  /** The version the root records (undefined: it records none). */
  from?: number
  to: number
  /** Entries to write and paths to remove, with a few of each for the operator. */
  write: number
  remove: number
  sample: { write: string[]; remove: string[] }
  /** `delta`: the delta from `from`; `image`: the full archive; `files`: members by file only;
   * `none`: the root already holds `to`. */
  source: 'delta' | 'image' | 'files' | 'none'
  /** Why the full image is used, when it is. */
  reason?: string
  /** Entries fetched from the server by file (what the source lacks: local changes). */
  byFile: number
}
