import { paxBody, type RawMember, rawTar } from './raw-tar.js'

/**
 * Hostile archives, each refused with E_ARCHIVE_UNSAFE naming `entry`. `canary` is a
 * directory outside the target that nothing may ever be written into.
 */
export interface HostileFixture {
  title: string
  members(canary: string): RawMember[]
  /** The refused member's name as the error shows it. */
  entry(canary: string): string
  reason: RegExp
  zstd?: boolean
  /**
   * The tar-stream validator imageswarm used before `TarScanner` accepted this archive and
   * never saw its member `./l/evil`, which GNU tar reads as a member (a header hidden
   * where tar-stream sees data, or a typeflag tar-stream reads as a long name).
   */
  missedByTarStream?: boolean
}

/** A symlink `link` to the canary and a file `<link>/evil` written through it. */
export function escapeViaSymlink(canary: string, link: string): RawMember[] {
  return [
    { name: link, type: '2', linkname: canary },
    { name: `${link}/evil`, type: '0', body: 'x' },
  ]
}

/** `./l` and `./l/evil` as tar blocks (no end-of-archive): what a hidden header hides. */
function throughSymlink(canary: string): Buffer {
  return rawTar(escapeViaSymlink(canary, './l')).subarray(0, 3 * 512)
}

export const HOSTILE_FIXTURES: readonly HostileFixture[] = [
  {
    title: 'refuses an absolute path',
    members: (canary) => [{ name: `${canary}/absolute`, type: '0', body: 'x' }],
    entry: (canary) => `${canary}/absolute`,
    reason: /absolute path/,
  },
  {
    title: "refuses a path with '..'",
    members: () => [
      { name: './ok', type: '0', body: 'fine' },
      { name: '../canary/x', type: '0', body: 'x' },
    ],
    entry: () => '../canary/x',
    reason: /'\.\.' component/,
  },
  {
    title: 'refuses a file written through a symlink from the same archive',
    members: (canary) => escapeViaSymlink(canary, './link'),
    entry: () => './link/evil',
    reason: /through the symlink '\.\/link'/,
  },
  {
    title: 'refuses a path through a nested or relative symlink',
    members: () => [
      { name: 'a/', type: '5' },
      { name: 'a/up', type: '2', linkname: '../../canary' },
      { name: 'a//./up/evil', type: '0', body: 'x' },
    ],
    entry: () => 'a//./up/evil',
    reason: /through the symlink '\.\/a\/up'/,
  },
  {
    title: 'refuses a hardlink to /etc/passwd',
    members: () => [{ name: './passwd', type: '1', linkname: '/etc/passwd' }],
    entry: () => './passwd',
    reason: /absolute hardlink target/,
  },
  {
    title: "refuses a hardlink to '../x'",
    members: () => [{ name: './x', type: '1', linkname: '../x' }],
    entry: () => './x',
    reason: /'\.\.' component in hardlink target/,
  },
  {
    title: 'refuses a hardlink to a member that comes later or never',
    members: () => [
      { name: './early', type: '1', linkname: './late' },
      { name: './late', type: '0', body: 'x' },
    ],
    entry: () => './early',
    reason: /not an earlier member/,
  },
  {
    title: 'refuses a path through a hardlink of a symlink',
    members: (canary) => [
      { name: './s', type: '2', linkname: canary },
      { name: './h', type: '1', linkname: './s' },
      { name: './h/evil', type: '0', body: 'x' },
    ],
    entry: () => './h/evil',
    reason: /through the symlink '\.\/h'/,
  },
  {
    title: 'judges a member by its pax path, not the ustar name it overrides',
    members: () => [{ name: './harmless', type: '0', body: 'x', pax: { path: '../canary/pax' } }],
    entry: () => '../canary/pax',
    reason: /'\.\.' component/,
  },
  {
    title: 'judges a hardlink by its pax linkpath',
    members: () => [{ name: './l', type: '1', linkname: './l', pax: { linkpath: '/etc/shadow' } }],
    entry: () => './l',
    reason: /absolute hardlink target/,
  },
  {
    title: 'judges a sparse member by its GNU.sparse.name',
    members: () => [
      {
        name: './GNUSparseFile.1/evil',
        type: '0',
        body: '',
        pax: {
          'GNU.sparse.major': '1',
          'GNU.sparse.minor': '0',
          'GNU.sparse.name': '../canary/sparse',
          'GNU.sparse.realsize': '0',
        },
      },
    ],
    entry: () => './GNUSparseFile.1/evil',
    reason: /'\.\.' component/,
  },
  {
    title: 'refuses a pax global header that renames members',
    members: () => [
      { name: 'pax_global_header', type: 'g', body: paxBody({ path: '../canary/g' }) },
      { name: './a', type: '0', body: 'x' },
    ],
    entry: () => './a',
    reason: /pax global header that sets 'path'/,
  },
  {
    title: 'refuses a hardlink with data, which GNU tar would not skip (a hidden header)',
    // GNU tar reads the "data" of ./h as the next header (./link/evil); a parser that skips
    // it would never see that member.
    members: (canary) => [
      { name: './f', type: '0', body: '' },
      { name: './link', type: '2', linkname: canary },
      {
        name: './h',
        type: '1',
        linkname: './f',
        body: rawTar([{ name: './link/evil', type: '0', body: '' }]).subarray(0, 512),
      },
    ],
    entry: () => './h',
    reason: /is a link with 512 bytes of data/,
  },
  {
    title: 'refuses a directory or symlink with data',
    members: () => [{ name: './d/', type: '5', body: 'x'.repeat(600) }],
    entry: () => './d/',
    reason: /is a directory with 600 bytes of data/,
  },
  {
    title: 'refuses a NUL byte in a pax path, which GNU tar would cut short',
    members: () => [{ name: './x', type: '2', linkname: '/', pax: { path: './s\u0000-hidden' } }],
    entry: () => './s\\x00-hidden',
    reason: /NUL byte/,
  },
  {
    // Old GNU sparse members ('S') are read as GNU tar reads them: SystemImager's
    // `tar -cS` makes them (archive-systemimager-tarball.test.ts).
    title: 'refuses member types it does not know (volume labels)',
    members: () => [{ name: './volume', type: 'V', body: 'x' }],
    entry: () => './volume',
    reason: /unsupported member type/,
  },
  {
    title: 'refuses a hostile member inside a zstd archive',
    members: () => [
      { name: './link', type: '2', linkname: '/' },
      { name: './link/etc/cron.d/evil', type: '0', body: 'x' },
    ],
    entry: () => './link/etc/cron.d/evil',
    reason: /through the symlink/,
    zstd: true,
  },
  // Constructs GNU tar frames differently from tar-stream: each hides a symlink and a file
  // written through it where tar-stream sees member data, or a member tar-stream takes for
  // a long name. GNU tar 1.34's own rule (a symlink to an absolute path is made only at the
  // end) happens to stop the write; the validator must not rely on it.
  {
    title: "refuses a pax global header that sets 'size' (GNU tar applies it to every member)",
    members: (canary) => [
      { name: 'pax_global_header', type: 'g', body: paxBody({ size: '512' }) },
      { name: './a', type: '0', body: Buffer.concat([Buffer.alloc(512), throughSymlink(canary)]) },
    ],
    entry: () => './a',
    reason: /pax global header that sets 'size'/,
    missedByTarStream: true,
  },
  {
    title: "refuses a regular file whose pax path ends in '/' (GNU tar: a directory) with data",
    members: (canary) => [
      { name: './d-file', type: '0', body: throughSymlink(canary), pax: { path: './d/' } },
    ],
    entry: () => './d/',
    reason: /is a directory with 1536 bytes of data/,
    missedByTarStream: true,
  },
  {
    title: "refuses a contiguous file named with a trailing '/' (GNU tar: a directory) with data",
    members: (canary) => [{ name: './c/', type: '7', body: throughSymlink(canary) }],
    entry: () => './c/',
    reason: /is a directory with 1536 bytes of data/,
    missedByTarStream: true,
  },
  {
    title: "refuses typeflag 'N' (GNU tar: a regular file; tar-stream: a long name)",
    members: (canary) => [
      { name: './l', type: '2', linkname: canary },
      { name: './l/evil', type: 'N', body: 'harmless-name' },
      { name: './next', type: '0', body: '' },
    ],
    entry: () => './l/evil',
    reason: /unsupported member type \('N'\)/,
    missedByTarStream: true,
  },
]

/** The tar bytes of a fixture (uncompressed). */
export function fixtureTar(fixture: HostileFixture, canary: string): Buffer {
  return rawTar(fixture.members(canary))
}
