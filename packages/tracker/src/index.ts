export { resolveTrackerConfig, type TrackerConfig, TrackerConfigSchema } from './config.js'
export { clientAddress } from './credentials.js'
export { readDashboardToken } from './dashboard-auth.js'
export type {
  DeploymentEvent,
  DeploymentNode,
  DeploymentRecord,
  DeploymentSummary,
} from './deployment.js'
export type { HistoryColumn, HistorySeries } from './history.js'
export type { ApiErrorCode } from './http-reply.js'
export type { AnnounceSighting, NodeView } from './node-record.js'
export * from './peer-handout.js'
export { RackMap } from './rack-map.js'
export type { ServerUploadSource } from './swarm-monitor.js'
export type { SwarmSummary, TrackerCounts } from './swarm-state.js'
export type { PeerStats, SwarmStats, TrackerStats } from './swarm-stats.js'
export { createTracker, type Tracker, type TrackerOptions } from './tracker.js'
