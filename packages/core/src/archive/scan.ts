import { EntryGuard, type MemberHeader, refuseGlobalHeader, UnsafeEntry } from './policy.js'

const BLOCK = 512
/** The largest pax or GNU long-name header accepted. */
const MAX_META_SIZE = 4 * 1024 * 1024

/** The stream is not a tar archive we read the way GNU tar does: corrupt, truncated, odd. */
class TarFormatError extends Error {}

/** `ustar` at offset 257, then NUL (POSIX) or `  \0` (GNU). */
const USTAR_MAGIC = Buffer.from('ustar', 'latin1')
const GNU_MAGIC_END = Buffer.from('  \u0000', 'latin1')

const EMPTY = Buffer.alloc(0)

const HEADER = 0
const DATA = 1
const META = 2
/** The extension blocks of an old GNU sparse member ('S'), between its header and data. */
const SPARSE = 3

/** Old GNU sparse header: the flag saying extension blocks follow (header, extension). */
const SPARSE_EXTENDED_AT = 482
const SPARSE_EXTENSION_EXTENDED_AT = 504
const SPARSE_EXTENSION_ENTRIES = 21

const TYPES: Readonly<Record<string, string>> = {
  '\u0000': 'file',
  '0': 'file',
  '1': 'link',
  '2': 'symlink',
  '3': 'character-device',
  '4': 'block-device',
  '5': 'directory',
  '6': 'fifo',
  '7': 'contiguous-file',
}

/** A member that passed, with the attributes a file index records. */
export interface ScannedMember extends MemberHeader {
  size: number
  /** Permission bits and set-id/sticky bits, from the header. */
  mode: number
  uid: number
  gid: number
  /** Seconds since the epoch; pax gives fractions. */
  mtime: number
  /** Stream offset of its first header (a pax or long-name header before it, if any). */
  offset: number
  /** Stream offset just past its data and padding: `offset`..`end` is the whole member. */
  end: number
}

/**
 * Told of every member that passed and of its data bytes (padding left out), in stream
 * order: how a file index is read off the same tar stream the rules check.
 */
export interface TarObserver {
  member(member: ScannedMember): void
  data(bytes: Buffer): void
}

/** The headers ('x' pax, 'L'/'K' GNU long name/link) that describe the member after them. */
interface Pending {
  pax?: Record<string, string>
  longName?: string
  longLink?: string
}

/**
 * A tar header scanner that reads the stream the way GNU tar 1.34 does and applies the
 * `EntryGuard` rules to every member, without copying or parsing member data: it parses
 * each 512-byte header (ustar, GNU and pax: 'x' records, 'g' global records, 'L'/'K' long
 * names, base-256 sizes, the checksum) and counts data bytes past. Feed it the tar stream
 * in chunks of any size with `write`, then call `end`; either throws `UnsafeEntry` (a
 * member breaks the rules) or `TarFormatError` (the stream is corrupt, truncated, or uses a
 * construct GNU tar and other readers frame differently).
 *
 * `validatedBytes` is the stream offset up to which every byte is known safe to hand to
 * tar: headers of members that passed the rules (with the pax and long-name headers before
 * them) and their data. It never covers any byte of a header that has not been checked: a
 * pax header is held back until the member it describes has passed.
 *
 * Stricter than GNU tar where the two could differ: a header with a bad checksum, an
 * unknown magic or an odd number field is an error (GNU tar skips it and searches for the
 * next header); headers after the end-of-archive blocks are read and checked too (GNU tar
 * ignores them); a malformed pax record, an empty pax `path`/`linkpath`, two pax (or two
 * long-name) headers for one member, and a pax header with no member after it are refused.
 */
export class TarScanner {
  private readonly guard = new EntryGuard()
  private state = HEADER
  /** Bytes consumed so far. */
  private position = 0
  private validated = 0
  /** Data or meta bytes (with padding) still to come for the current member. */
  private remaining = 0
  /** The header being read, 4-byte aligned (its own ArrayBuffer), with a word view. */
  private readonly partial = Buffer.alloc(BLOCK)
  private readonly words = new Uint32Array(this.partial.buffer, this.partial.byteOffset, BLOCK / 4)
  /** Reused for pax and long-name bodies up to its size. */
  private readonly metaBuffer = Buffer.alloc(64 * 1024)
  private partialLength = 0
  private metaType = ''
  private metaBody = EMPTY
  private metaFilled = 0
  private pending: Pending | undefined
  /** Where the pending pax or long-name headers began. */
  private pendingOffset = 0
  private global: Record<string, string> | undefined
  private failure: unknown
  /** Data bytes of the current member still to hand to the observer. */
  private observedLeft = 0

  constructor(private readonly observer?: TarObserver) {}

  /** Members that passed (pax and long-name headers not counted). */
  get entries(): number {
    return this.guard.entries
  }

  /** The stream offset up to which every byte has been validated. */
  get validatedBytes(): number {
    return this.validated
  }

  write(chunk: Buffer): void {
    if (this.failure !== undefined) throw this.failure
    try {
      this.scan(chunk)
    } catch (err) {
      this.failure = err
      throw err
    }
  }

  /** The stream has ended: refuses a truncated member, header, or a dangling pax header. */
  end(): void {
    if (this.failure !== undefined) throw this.failure
    if (this.state !== HEADER || this.partialLength !== 0) {
      this.failure = new TarFormatError(
        `Unexpected end of data (truncated at byte ${this.position})`,
      )
    } else if (this.pending !== undefined) {
      this.failure = new TarFormatError('the archive ends after a pax or long-name header')
    }
    if (this.failure !== undefined) throw this.failure
    this.validated = this.position
  }

  private scan(chunk: Buffer): void {
    const length = chunk.length
    let at = 0
    while (at < length) {
      if (this.state === DATA) {
        const take = Math.min(this.remaining, length - at)
        if (this.observedLeft > 0) {
          const observed = Math.min(take, this.observedLeft)
          this.observer?.data(chunk.subarray(at, at + observed))
          this.observedLeft -= observed
        }
        at += take
        this.position += take
        this.remaining -= take
        this.validated = this.position
        if (this.remaining === 0) this.state = HEADER
      } else if (this.state === META) {
        const take = Math.min(this.remaining, length - at)
        const body = Math.min(take, this.metaBody.length - this.metaFilled)
        if (body > 0) {
          chunk.copy(this.metaBody, this.metaFilled, at, at + body)
          this.metaFilled += body
        }
        at += take
        this.position += take
        this.remaining -= take
        if (this.remaining === 0) {
          this.state = HEADER
          this.finishMeta()
        }
      } else if (this.partialLength === 0 && length - at >= BLOCK) {
        // Copied (512 bytes) into an aligned block, summed a word at a time.
        chunk.copy(this.partial, 0, at, at + BLOCK)
        at += BLOCK
        this.position += BLOCK
        this.block(this.partial)
      } else {
        // A header split across chunks: gather it, and hand nothing of it on until whole.
        const take = Math.min(BLOCK - this.partialLength, length - at)
        chunk.copy(this.partial, this.partialLength, at, at + take)
        this.partialLength += take
        at += take
        this.position += take
        if (this.partialLength === BLOCK) {
          this.partialLength = 0
          this.block(this.partial)
        }
      }
    }
  }

  /** One whole block read in the header state: a header, or a sparse member's extension. */
  private block(block: Buffer): void {
    if (this.state === SPARSE) this.sparseExtension(block)
    else this.header(block)
  }

  /**
   * An old GNU sparse member's extension block: 21 (offset, size) pairs of its sparse map
   * and a flag saying another block follows; then the member's data. The numbers only
   * place the data within the one file the member names.
   */
  private sparseExtension(block: Buffer): void {
    for (let entry = 0; entry < SPARSE_EXTENSION_ENTRIES; entry++) {
      if (block[entry * 24] === 0) continue
      if (
        Number.isNaN(parseNumber(block, entry * 24, 12)) ||
        Number.isNaN(parseNumber(block, entry * 24 + 12, 12))
      ) {
        throw new TarFormatError(
          `a sparse map with a bad number at byte ${this.position - BLOCK + entry * 24}`,
        )
      }
    }
    if (block[SPARSE_EXTENSION_EXTENDED_AT] !== 0) return
    this.validated = this.position
    this.state = this.remaining > 0 ? DATA : HEADER
  }

  /** One whole header block, ending at `this.position`. */
  private header(block: Buffer): void {
    const start = this.position - BLOCK
    const sum = headerSum(block, this.words)
    if (sum === 8 * 0x20) {
      for (let i = 148; i < 156; i++) {
        if (block[i] !== 0)
          throw new TarFormatError(`a header with only a checksum at byte ${start}`)
      }
      // An end-of-archive block: GNU tar stops here; the rest is still checked.
      if (this.pending === undefined) this.validated = this.position
      return
    }
    if (parseNumber(block, 148, 8) !== sum) {
      throw new TarFormatError(
        `Invalid tar header at byte ${start} (bad checksum). Maybe the tar is corrupted or it needs to be gunzipped?`,
      )
    }
    const magic = matches(block, 257, USTAR_MAGIC)
    const ustar = magic && block[262] === 0
    if (!ustar && !(magic && matches(block, 262, GNU_MAGIC_END))) {
      throw new TarFormatError(`Invalid tar header at byte ${start}: unknown format`)
    }
    const typeflag = String.fromCharCode(block[156]!)
    let size = parseNumber(block, 124, 12)
    if (Number.isNaN(size)) {
      throw new TarFormatError(`Invalid tar header at byte ${start}: bad size field`)
    }
    if (typeflag === 'x' || typeflag === 'g' || typeflag === 'L' || typeflag === 'K') {
      this.startMeta(typeflag, size, start)
      return
    }

    const pending = this.pending
    const headerName = headerString(block, 0, 100)
    const ustarName =
      ustar && block[345] !== 0 ? `${headerString(block, 345, 155)}/${headerName}` : headerName
    let name = pending?.longName ?? ustarName
    let linkname: string | null =
      pending?.longLink ?? (block[157] === 0 ? null : headerString(block, 157, 100))
    const pax = pending?.pax
    if (pax !== undefined) {
      // GNU tar takes an empty pax path or linkpath as it is; other readers ignore it.
      if (pax.path !== undefined) name = nonEmpty(pax.path, name, 'path')
      if (pax.linkpath !== undefined) linkname = nonEmpty(pax.linkpath, name, 'linkpath')
      if (pax.size !== undefined) {
        if (!/^[0-9]{1,15}$/.test(pax.size)) {
          throw new UnsafeEntry(name, `has an invalid pax size '${pax.size}'`)
        }
        size = Number(pax.size)
      }
    }
    // An old GNU sparse member ('S': SystemImager's `tar -cS` in GNU tar's default format)
    // is a regular file to the rules. Not with an observer: its data is the file's
    // non-hole parts only, which a file index would take for the contents.
    const oldSparse = typeflag === 'S' && this.observer === undefined
    let type: string | null = TYPES[typeflag] ?? (oldSparse ? 'file' : null)
    // GNU tar extracts a regular member whose final name ends in '/' as a directory; other
    // readers look at the ustar name only. Either way it is a directory to the rules, which
    // then refuse any data on it.
    if (
      (type === 'file' && ustarName.endsWith('/')) ||
      ((type === 'file' || type === 'contiguous-file') && name.endsWith('/'))
    ) {
      type = 'directory'
    }
    if (this.global !== undefined) refuseGlobalHeader(this.global, name)
    const member: MemberHeader = { name, type, size, linkname, pax, typeflag }
    this.guard.check(member)
    if (this.observer !== undefined) {
      this.observer.member({
        ...member,
        size,
        mode: parseNumber(block, 100, 8),
        uid: paxNumber(pax?.uid) ?? parseNumber(block, 108, 8),
        gid: paxNumber(pax?.gid) ?? parseNumber(block, 116, 8),
        mtime: paxNumber(pax?.mtime) ?? parseNumber(block, 136, 12),
        offset: pending === undefined ? start : this.pendingOffset,
        end: this.position + padded(size),
      })
      this.observedLeft = size
    }

    this.pending = undefined
    if (oldSparse && block[SPARSE_EXTENDED_AT] !== 0) {
      // Its extension blocks come first; validated once they are read.
      this.state = SPARSE
      this.remaining = padded(size)
      return
    }
    this.validated = this.position
    if (size > 0) {
      this.state = DATA
      this.remaining = padded(size)
    }
  }

  private startMeta(typeflag: string, size: number, start: number): void {
    if (size > MAX_META_SIZE) {
      throw new TarFormatError(`a ${typeflag} header of ${size} bytes at byte ${start}`)
    }
    if (this.pending === undefined) {
      this.pending = {}
      this.pendingOffset = start
    }
    const field = typeflag === 'x' ? 'pax' : typeflag === 'L' ? 'longName' : 'longLink'
    if (typeflag !== 'g' && this.pending[field] !== undefined) {
      throw new TarFormatError(
        `two '${typeflag}' headers for one member at byte ${start} (tar readers apply them differently)`,
      )
    }
    this.metaType = typeflag
    this.metaBody =
      size <= this.metaBuffer.length ? this.metaBuffer.subarray(0, size) : Buffer.alloc(size)
    this.metaFilled = 0
    this.remaining = padded(size)
    if (size > 0) this.state = META
    else this.finishMeta()
  }

  private finishMeta(): void {
    // Set by `startMeta`, which always comes first.
    const pending = this.pending!
    const body = this.metaBody
    this.metaBody = EMPTY
    switch (this.metaType) {
      case 'x':
        pending.pax = parsePax(body)
        break
      case 'g':
        this.global = parsePax(body)
        break
      case 'L':
        pending.longName = cString(body)
        break
      case 'K':
        pending.longLink = cString(body)
        break
    }
  }
}

/**
 * The unsigned sum of a header's bytes with the checksum field counted as spaces, four
 * bytes at a time in two 16-bit lanes (128 words of at most 255 a byte cannot overflow a
 * lane); `words` views `block`.
 */
function headerSum(block: Buffer, words: Uint32Array): number {
  let even = 0
  let odd = 0
  for (let i = 0; i < BLOCK / 4; i++) {
    const word = words[i]!
    even += word & 0x00ff00ff
    odd += (word >>> 8) & 0x00ff00ff
  }
  let sum = 8 * 0x20 + (even & 0xffff) + (even >>> 16) + (odd & 0xffff) + (odd >>> 16)
  for (let i = 148; i < 156; i++) sum -= block[i]!
  return sum
}

function matches(block: Buffer, offset: number, bytes: Buffer): boolean {
  for (let i = 0; i < bytes.length; i++) if (block[offset + i] !== bytes[i]) return false
  return true
}

function padded(size: number): number {
  return size + ((BLOCK - (size % BLOCK)) % BLOCK)
}

function nonEmpty(value: string, entry: string, keyword: string): string {
  if (value === '') throw new UnsafeEntry(entry, `has an empty pax ${keyword}`)
  return value
}

/** A header string field: up to its first NUL, UTF-8 (invalid bytes to U+FFFD). */
/** A pax number record (`uid`, `gid`, `mtime` with its fraction), when present and valid. */
function paxNumber(value: string | undefined): number | undefined {
  if (value === undefined || !/^-?[0-9]{1,20}(\.[0-9]{1,9})?$/.test(value)) return undefined
  return Number(value)
}

function headerString(block: Buffer, offset: number, length: number): string {
  let end = offset
  const limit = offset + length
  while (end < limit && block[end] !== 0) end++
  return block.toString('utf8', offset, end)
}

function cString(body: Buffer): string {
  const nul = body.indexOf(0)
  return body.toString('utf8', 0, nul === -1 ? body.length : nul)
}

/**
 * A numeric header field as GNU tar reads it, or NaN where GNU tar would not accept it (or
 * might read it otherwise than other readers): octal digits after one optional NUL and
 * leading spaces, ended by the field's end, a NUL or a space; all NULs is 0; base-256 with
 * a leading 0x80 byte (0xff, negative, is refused). GNU tar's older base-64 form is refused.
 */
function parseNumber(block: Buffer, offset: number, length: number): number {
  const end = offset + length
  const first = block[offset]!
  if (first & 0x80) {
    if (first !== 0x80) return Number.NaN
    let value = 0
    for (let i = offset + 1; i < end; i++) value = value * 256 + block[i]!
    return value <= Number.MAX_SAFE_INTEGER ? value : Number.NaN
  }
  let at = offset
  if (block[at] === 0) at++
  while (at < end && block[at] === 0x20) at++
  if (at === end) return Number.NaN
  const digits = at
  let value = 0
  while (at < end) {
    const byte = block[at]!
    if (byte < 0x30 || byte > 0x37) break
    value = value * 8 + (byte - 0x30)
    at++
  }
  if (at === digits) return block[at] === 0 ? 0 : Number.NaN
  if (at < end && block[at] !== 0 && block[at] !== 0x20) return Number.NaN
  return value
}

/**
 * pax records, `LEN key=value\n` each, LEN in decimal counting the whole record, exactly
 * as GNU tar requires them; anything else is refused (GNU tar would stop at it and apply
 * only the records before it, tar-stream may read on).
 */
function parsePax(body: Buffer): Record<string, string> {
  const records: Record<string, string> = Object.create(null)
  let at = 0
  while (at < body.length) {
    let space = at
    while (space < body.length && body[space]! >= 0x30 && body[space]! <= 0x39) space++
    const length = Number(body.toString('latin1', at, space))
    const end = at + length
    const equals = body.indexOf(0x3d, space + 1)
    if (
      space === at ||
      body[space] !== 0x20 ||
      space - at > 9 ||
      end > body.length ||
      body[end - 1] !== 0x0a ||
      equals === -1 ||
      equals === space + 1 ||
      equals > end - 2
    ) {
      throw new TarFormatError(`a malformed pax record at byte ${at} of a pax header`)
    }
    records[body.toString('utf8', space + 1, equals)] = body.toString('utf8', equals + 1, end - 1)
    at = end
  }
  return records
}
