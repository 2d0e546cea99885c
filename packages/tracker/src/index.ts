export { resolveTrackerConfig, type TrackerConfig, TrackerConfigSchema } from './config.js'
export type { PeerStats, SwarmStats, TrackerStats } from './swarm-stats.js'
export { createTracker, type Tracker, type TrackerOptions } from './tracker.js'
