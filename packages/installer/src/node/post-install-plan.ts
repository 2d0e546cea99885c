/** A file in the image's /etc/imageswarm/post-install.d. */
export interface ScriptEntry {
  name: string
  /** A regular file (after following symlinks inside the image). */
  file: boolean
  executable: boolean
}

/**
 * The image's own post-install scripts that run, as run-parts picks them: executable
 * regular files, by name (C locale); hidden files, backups (`~`) and dpkg's leftovers
 * (`.dpkg-old`, `.dpkg-dist`, …) are skipped, with why.
 *
 * @example
 *   imageScriptsToRun([{ name: '20-ssh', file: true, executable: true },
 *     { name: 'README', file: true, executable: false }])
 *   // { run: ['20-ssh'], skipped: ['README (not executable)'] }
 */
export function imageScriptsToRun(entries: readonly ScriptEntry[]): {
  run: string[]
  skipped: string[]
} {
  const run: string[] = []
  const skipped: string[] = []
  const sorted = [...entries].sort((a, b) =>
    Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)),
  )
  for (const entry of sorted) {
    const why = entry.name.startsWith('.')
      ? 'hidden'
      : entry.name.endsWith('~') || /\.dpkg-[a-z]+$/.test(entry.name)
        ? 'a backup'
        : !entry.file
          ? 'not a regular file'
          : !entry.executable
            ? 'not executable'
            : undefined
    if (why) skipped.push(`${entry.name} (${why})`)
    else run.push(entry.name)
  }
  return { run, skipped }
}

/**
 * SystemImager's BASE_HOSTNAME: the host name cut at its first digit or dot
 * (`sed "s/[.0-9].*$//"`): `node07` → `node`, `web.example.org` → `web`.
 */
export function baseHostname(hostname: string): string {
  return hostname.replace(/[.0-9].*$/, '')
}

/** What variables.txt tells post-install scripts about the node and its install. */
export interface InstallVariables {
  hostname?: string | undefined
  domain?: string | undefined
  image: string
  /** The image server's base URL: of those given, the one that answered last. */
  server: string
  groups: readonly string[]
  overrides: readonly string[]
  layoutName: string
  postAction: string
  device?: string | undefined
  mac?: string | undefined
  ip?: string | undefined
  prefix?: number | undefined
  router?: string | undefined
}

/**
 * `/tmp/post-install/variables.txt`, which SystemImager's post-install scripts source
 * (`. /tmp/post-install/variables.txt`): `NAME='value'` lines with SystemImager 5's names
 * (write_variables) for what imageswarm knows, plus IMAGESWARM_SERVER, the server's URL
 * (IMAGESERVER is its bare address, as SystemImager's is).
 *
 * @example variablesText({ hostname: 'node1', image: 'compute', … })
 *   // HOSTNAME='node1'\nBASE_HOSTNAME='node'\nIMAGENAME='compute'\n…
 */
export function variablesText(variables: InstallVariables): string {
  let host = variables.server
  try {
    host = new URL(variables.server).hostname.replace(/^\[|\]$/g, '')
  } catch {}
  const entries: [string, string | undefined][] = [
    ['HOSTNAME', variables.hostname],
    ['BASE_HOSTNAME', variables.hostname ? baseHostname(variables.hostname) : undefined],
    ['DOMAINNAME', variables.domain],
    ['DEVICE', variables.device],
    ['CLIENT_MAC', variables.mac],
    ['IPADDR', variables.ip],
    ['NETMASK', variables.prefix === undefined ? undefined : netmask(variables.prefix)],
    ['GATEWAY', variables.router],
    ['IMAGESERVER', host],
    ['IMAGENAME', variables.image],
    ['GROUPNAMES', variables.groups.join(' ')],
    ['OVERRIDES', variables.overrides.join(' ')],
    ['DISKS_LAYOUT', variables.layoutName],
    ['DL_PROTOCOL', 'torrent'],
    ['SI_POST_ACTION', variables.postAction],
    ['IMAGESWARM_SERVER', variables.server],
  ]
  const lines = entries.map(([name, value]) => `${name}=${shellQuote(value ?? '')}`)
  return `# Written by the imageswarm installer for post-install scripts (SystemImager's names).\n${lines.join('\n')}\n`
}

/** A value inside single quotes, for sh: `it's` → `'it'\''s'`. */
export function shellQuote(value: string): string {
  return `'${value.replaceAll("'", "'\\''")}'`
}

/** `24` → `255.255.255.0`. */
export function netmask(prefix: number): string {
  const bits = prefix <= 0 ? 0 : prefix >= 32 ? 0xffffffff : (0xffffffff << (32 - prefix)) >>> 0
  return [24, 16, 8, 0].map((shift) => (bits >>> shift) & 0xff).join('.')
}
