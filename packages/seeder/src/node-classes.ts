import { unique } from './cluster-txt.js'

/**
 * What SystemImager chooses a node's files by: its host name, its groups (cluster.txt),
 * its base host name and its image. Everything here is pure: the caller has read the
 * directories.
 */
export interface NodeClasses {
  /** HOSTNAME, short (no domain), or null when neither DHCP nor scripts/hosts named it. */
  hostname: string | null
  /** GROUPNAMES, the most important first. */
  groups: string[]
  image: string
}

/**
 * SystemImager's BASE_HOSTNAME: the host name cut at its first digit or dot
 * (`sed "s/[.0-9].*$//"`): `node07` → `node`, `web-3a` → `web-`. Empty for a name that
 * starts with a digit, and then no class (SystemImager would match `NN.*` files then).
 */
export function baseHostname(hostname: string | null): string | undefined {
  if (hostname === null) return undefined
  const base = hostname.replace(/[.0-9].*$/, '')
  return base === '' ? undefined : base
}

/**
 * The names a node's file is looked for under, first hit wins (SystemImager 5's
 * `choose_filename`, used for disks layouts): HOSTNAME, each group, BASE_HOSTNAME,
 * IMAGENAME, `default`; `localhost` and empty names are skipped, as there.
 *
 * @example chooserCandidates({ hostname: 'node07', groups: ['rack1'], image: 'deb' })
 *   // ['node07', 'rack1', 'node', 'deb', 'default']
 */
export function chooserCandidates(node: NodeClasses): string[] {
  return unique(
    [node.hostname, ...node.groups, baseHostname(node.hostname), node.image, 'default'].filter(
      (name): name is string =>
        name !== null && name !== undefined && name !== '' && name !== 'localhost',
    ),
  )
}

/**
 * The post-install scripts a node runs, in order: the files named `NN<class>.<description>`
 * for the classes `all`, IMAGENAME, BASE_HOSTNAME, each group, HOSTNAME, in that order
 * (SystemImager's `run_post_install_scripts`; its README lists groups before
 * BASE_HOSTNAME, its code runs them after), by name within a class (`ls`), each once,
 * backups (`~`) left out.
 *
 * Unlike SystemImager, a class matches exactly: it greps `^[0-9][0-9]CLASS\..*`, a
 * regular expression in which a `.` or `+` of an image or group name matches other names
 * (image `rhel7.9` picks `10rhel7-9.setup`), and an empty BASE_HOSTNAME (a host name
 * starting with a digit) picks every `NN.description` file.
 *
 * @example
 *   selectPostInstallScripts(['10all.a', '20node1.b', '20node10.c', '30rack1.d'],
 *     { hostname: 'node1', groups: ['rack1'], image: 'deb' })
 *   // ['10all.a', '30rack1.d', '20node1.b']
 */
export function selectPostInstallScripts(files: readonly string[], node: NodeClasses): string[] {
  const byClass = new Map<string, string[]>()
  for (const file of [...files].sort(compareBytes)) {
    const match = /^[0-9]{2}(.+)$/.exec(file)
    if (!match || file.endsWith('~')) continue
    // A class may itself hold dots (an image `deb12.3`): every prefix up to a dot is a
    // candidate class of the file.
    const rest = match[1]!
    for (let dot = rest.indexOf('.'); dot !== -1; dot = rest.indexOf('.', dot + 1)) {
      const name = rest.slice(0, dot)
      const list = byClass.get(name) ?? []
      list.push(file)
      byClass.set(name, list)
    }
  }
  const classes = [
    'all',
    node.image,
    baseHostname(node.hostname),
    ...node.groups,
    node.hostname ?? undefined,
  ].filter((name): name is string => name !== undefined && name !== '')
  return unique(classes.flatMap((name) => byClass.get(name) ?? []))
}

/** `ls` order in the C locale: by bytes. */
function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b))
}
