// What the loopback benchmarks (bench-crypto, bench-trust, bench-encryption) share: reading
// `--name value` options and the median of their measurements.

/** The value after `name` on the command line, or `fallback`. */
export function option(name, fallback) {
  const index = process.argv.indexOf(name)
  return index === -1 ? fallback : process.argv[index + 1]
}

/** The median of `values` (the mean of the two middle ones for an even count). */
export function median(values) {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = sorted.length >> 1
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}
