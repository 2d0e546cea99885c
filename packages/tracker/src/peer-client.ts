/**
 * BitTorrent clients by the two letters of an Azureus-style peer id (`-LT2090-…`), for the
 * ones seen beside imageswarm on a LAN. Unknown letters are shown as they are.
 */
const AZUREUS_CLIENTS: Record<string, string> = {
  IS: 'imageswarm',
  LT: 'libtorrent',
  lt: 'libtorrent (rakshasa)',
  TR: 'Transmission',
  qB: 'qBittorrent',
  DE: 'Deluge',
  UT: 'µTorrent',
  WW: 'WebTorrent',
  AZ: 'Vuze',
  BT: 'BitTorrent',
}

/**
 * The client a peer id (hex) names, with its version where the id carries one; null when
 * the id follows no known convention.
 *
 * @example
 *   clientNameOf(Buffer.from('-LT2090-abcdefghijkl').toString('hex')) // 'libtorrent 2.0.9'
 *   clientNameOf(Buffer.from('A2-1-37-0-abcdefghij').toString('hex')) // 'aria2 1.37.0'
 */
export function clientNameOf(peerIdHex: string): string | null {
  const id = Buffer.from(peerIdHex.slice(0, 40), 'hex').toString('latin1')
  const azureus = /^-([A-Za-z]{2})([0-9A-Za-z]{4})-/.exec(id)
  if (azureus !== null) {
    const [, code, version] = azureus as unknown as [string, string, string]
    const name = AZUREUS_CLIENTS[code] ?? code
    if (code === 'IS') return name
    const digits = /^\d+$/.test(version) ? version.replace(/0+$/, '').split('').join('.') : version
    return `${name} ${digits || '0'}`
  }
  // aria2: A2-MAJOR-MINOR-PATCH-
  const aria2 = /^A2-(\d+)-(\d+)-(\d+)-/.exec(id)
  if (aria2 !== null) return `aria2 ${aria2[1]}.${aria2[2]}.${aria2[3]}`
  return null
}
