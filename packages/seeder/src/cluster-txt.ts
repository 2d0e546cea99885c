/**
 * SystemImager's `scripts/cluster.txt`, written by `si_clusterconfig` from
 * `/etc/systemimager/cluster.xml`: one `host:group:image:override` line per node, group and
 * override, groups in priority order (the most important first), and the global overrides
 * in a comment line:
 *
 * ```
 * # global_override=:site base:
 * node01:compute:debian12:compute
 * node01:rack1:debian12:rack1
 * ```
 */
export interface ClusterTable {
  /** Overrides for every node, as written (`# global_override=:b a:`, already reversed). */
  globalOverrides: string[]
  lines: ClusterLine[]
}

export interface ClusterLine {
  host: string
  group: string
  image: string
  override: string
}

/** What cluster.txt says of one node (SystemImager's `get_group_name`). */
export interface ClusterNode {
  /** GROUPNAMES: each group once, the most important first. */
  groups: string[]
  /** IMAGENAME: the image of the node's first line that names one. */
  image: string | undefined
  /**
   * GROUP_OVERRIDES: the global overrides, then the groups' overrides from the least
   * important to the most (each once), so that the most important is applied last and wins.
   */
  groupOverrides: string[]
}

const GLOBAL_OVERRIDE = /^# global_override=:([^:]*):$/

/** Parses cluster.txt; lines that are not `a:b:c[:d]` (comments, blanks) are skipped. */
export function parseClusterTxt(text: string): ClusterTable {
  const table: ClusterTable = { globalOverrides: [], lines: [] }
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '')
    const global = GLOBAL_OVERRIDE.exec(line)
    if (global) {
      table.globalOverrides = words(global[1] ?? '')
      continue
    }
    if (line.startsWith('#') || line.trim() === '') continue
    const [host = '', group = '', image = '', override = ''] = line.split(':').map((f) => f.trim())
    if (host === '') continue
    table.lines.push({ host, group, image, override })
  }
  return table
}

/**
 * The node's groups, image and group overrides, as SystemImager's `get_group_name` works
 * them out, except that the host name is matched exactly (SystemImager greps
 * `^HOSTNAME:`, a regular expression: a `.` in it matches any character).
 *
 * @example
 *   lookUpClusterNode(parseClusterTxt('node1:login:deb:login\nnode1:rack1:deb:rack1\n'), 'node1')
 *   // { groups: ['login', 'rack1'], image: 'deb', groupOverrides: ['rack1', 'login'] }
 */
export function lookUpClusterNode(table: ClusterTable, host: string | null): ClusterNode {
  const lines = host === null ? [] : table.lines.filter((line) => line.host === host)
  const groups = unique(lines.map((line) => line.group).filter((group) => group !== ''))
  const image = lines.map((line) => line.image).find((name) => name !== '')
  const overrides = unique(lines.map((line) => line.override).filter((name) => name !== ''))
  return {
    groups,
    image,
    groupOverrides: [...table.globalOverrides, ...overrides.reverse()],
  }
}

/** Each value once, where it first appears (SystemImager's `unique`). */
export function unique<T>(values: readonly T[]): T[] {
  return [...new Set(values)]
}

function words(text: string): string[] {
  return text.split(/\s+/).filter((word) => word !== '')
}
