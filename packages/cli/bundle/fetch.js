// `cross-fetch-ponyfill` in the install bundle. Its importers (bittorrent-tracker's HTTP
// announce, parse-torrent) take only `fetch`, which Node 20 has built in. The package
// itself bundles node-fetch and its polyfills (about 340 KiB) and reads Node's fetch
// globals as it loads, which loads Node's HTTP client before anything needs it.
export default function fetch(...args) {
  return globalThis.fetch(...args)
}
