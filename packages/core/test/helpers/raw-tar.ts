import { spawnSync } from 'node:child_process'

/**
 * Hand-made tar archives for the hostile-archive tests: every header field as given, with
 * no library in between deciding what is "valid".
 */
export interface RawMember {
  name: string | Buffer
  /** Typeflag character: '0' file, '1' hardlink, '2' symlink, '5' dir, 'x'/'g' pax, 'S'... */
  type: string
  body?: string | Buffer
  linkname?: string
  mode?: number
  /** pax records for a per-member ('x') header written before this member. */
  pax?: Record<string, string>
}

const BLOCK = 512

export function rawTar(members: readonly RawMember[]): Buffer {
  const blocks: Buffer[] = []
  for (const member of members) {
    if (member.pax !== undefined) {
      blocks.push(...headerAndBody({ name: 'PaxHeaders/m', type: 'x', body: paxBody(member.pax) }))
    }
    blocks.push(...headerAndBody(member))
  }
  blocks.push(Buffer.alloc(BLOCK * 2))
  return Buffer.concat(blocks)
}

/** `tar` compressed by the zstd command, as `packArchive` would. */
export function zstd(tar: Buffer): Buffer {
  return spawnSync('zstd', ['-q', '-c'], { input: tar, maxBuffer: 1 << 28 }).stdout
}

/** The body of a pax header: `LEN key=value\n` records, LEN counting itself. */
export function paxBody(records: Record<string, string>): Buffer {
  const parts: Buffer[] = []
  for (const [key, value] of Object.entries(records)) {
    const rest = ` ${key}=${value}\n`
    let length = Buffer.byteLength(rest) + 1
    while (String(length).length + Buffer.byteLength(rest) !== length) length++
    parts.push(Buffer.from(`${length}${rest}`))
  }
  return Buffer.concat(parts)
}

function headerAndBody(member: RawMember): Buffer[] {
  const body =
    typeof member.body === 'string' ? Buffer.from(member.body) : (member.body ?? Buffer.alloc(0))
  const header = Buffer.alloc(BLOCK)
  const name = typeof member.name === 'string' ? Buffer.from(member.name) : member.name
  name.copy(header, 0, 0, 100)
  writeOctal(header, 100, 8, member.mode ?? (member.type === '5' ? 0o755 : 0o644))
  writeOctal(header, 108, 8, 0)
  writeOctal(header, 116, 8, 0)
  writeOctal(header, 124, 12, body.length)
  writeOctal(header, 136, 12, 1_700_000_000)
  header.write(member.type, 156, 'latin1')
  if (member.linkname !== undefined) Buffer.from(member.linkname).copy(header, 157, 0, 100)
  header.write('ustar\u000000', 257, 'latin1')
  writeChecksum(header)
  const padding = Buffer.alloc((BLOCK - (body.length % BLOCK)) % BLOCK)
  return [header, body, padding]
}

/** Fills in a 512-byte header's checksum field (after the rest is written). */
export function writeChecksum(header: Buffer): void {
  header.fill(0x20, 148, 156)
  let sum = 0
  for (const byte of header) sum += byte
  header.write(`${sum.toString(8).padStart(6, '0')}\u0000 `, 148, 'latin1')
}

function writeOctal(buf: Buffer, offset: number, length: number, value: number): void {
  buf.write(`${value.toString(8).padStart(length - 1, '0')}\u0000`, offset, 'latin1')
}
