/** A set of piece indexes as a BitTorrent bitfield (high bit first), with a count. */
export class PieceSet {
  readonly bits: Uint8Array
  readonly size: number
  #count = 0

  constructor(size: number) {
    this.size = size
    this.bits = new Uint8Array(Math.ceil(size / 8))
  }

  get count(): number {
    return this.#count
  }

  get complete(): boolean {
    return this.#count === this.size
  }

  has(index: number): boolean {
    return ((this.bits[index >> 3] ?? 0) & (128 >> (index & 7))) !== 0
  }

  add(index: number): boolean {
    if (index < 0 || index >= this.size || this.has(index)) return false
    this.bits[index >> 3]! |= 128 >> (index & 7)
    this.#count++
    return true
  }

  fill(): void {
    for (let index = 0; index < this.size; index++) this.add(index)
  }
}
