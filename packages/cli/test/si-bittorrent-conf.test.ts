import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { parseBittorrentConf, readBittorrentConf } from '../src/si-bittorrent-conf.js'
import { translateSystemImagerCommand } from '../src/si-compat.js'

/** SystemImager's own etc/bittorrent.conf (finley/SystemImager), with BT_IMAGES filled in. */
const SYSTEMIMAGER_CONF = `#
# "SystemImager"
#
# The bittorrent tracker port.
BT_TRACKER_PORT=6969

# Tracker state file.
BT_TRACKER_STATE=/tmp/dstate

# Tracker log file.
BT_TRACKER_LOG=/var/log/systemimager/bittorrent-tracker.log

# Interface used to seed files with bittorrent.
BT_INTERFACE=eth0

# Allowed values: y|n
BT_COMPRESS=y

# Allowed values: y|n
BT_UPDATE=y

BT_IMAGES=RHEL4_base,suse10

BT_OVERRIDES=
`

const addresses: Record<string, string> = { eth0: '10.0.0.1', lo: '127.0.0.1' }
const addressOf = (name: string) => addresses[name]

let dir: string
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'si-conf-'))
})
afterEach(async () => {
  await rm(dir, { recursive: true, force: true })
})

describe('SystemImager’s bittorrent.conf', () => {
  it('reads every setting of SystemImager’s file', () => {
    const conf = parseBittorrentConf(
      SYSTEMIMAGER_CONF,
      '/etc/systemimager/bittorrent.conf',
      addressOf,
    )
    expect(conf).toMatchObject({
      trackerPort: 6969,
      interface: 'eth0',
      interfaceAddress: '10.0.0.1',
      compress: true,
      update: true,
      images: ['RHEL4_base', 'suse10'],
      overrides: [],
      notes: [],
    })
  })

  it('warns about unknown keys and an interface that is not here, naming file and line', () => {
    const conf = parseBittorrentConf(
      'BT_TRACKER_PORT="7000"   \nBT_MAX_UPLOAD=10\nBT_INTERFACE=eth9 # the install LAN\n',
      'bt.conf',
      addressOf,
    )
    expect(conf.trackerPort).toBe(7000)
    expect(conf.interfaceAddress).toBeUndefined()
    expect(conf.notes).toEqual([
      expect.stringMatching(/^bt.conf:2: unknown setting BT_MAX_UPLOAD, ignored/),
      expect.stringMatching(/^bt.conf:3: BT_INTERFACE=eth9: no interface of that name/),
    ])
  })

  it('refuses a value it cannot use, naming file, line, key, expected and received', () => {
    expect(() => parseBittorrentConf('BT_TRACKER_PORT=http', 'bt.conf', addressOf)).toThrow(
      /bt.conf:1: BT_TRACKER_PORT must be a port number from 1 to 65535, not "http"/,
    )
    expect(() => parseBittorrentConf('\nBT_COMPRESS=gzip', 'bt.conf', addressOf)).toThrow(
      /bt.conf:2: BT_COMPRESS must be y or n, not "gzip"/,
    )
  })

  it('reads the file at a path given for tests, and no file is no settings', async () => {
    const path = join(dir, 'bittorrent.conf')
    expect(await readBittorrentConf(path, addressOf)).toBeUndefined()
    await writeFile(path, SYSTEMIMAGER_CONF)
    expect(await readBittorrentConf(path, addressOf)).toMatchObject({ trackerPort: 6969 })
  })
})

describe('bittorrent.conf in the si_* commands', () => {
  const conf = parseBittorrentConf(
    `${SYSTEMIMAGER_CONF}\nBT_OVERRIDES=site\nBT_TRACKER_PORT=7000\n`,
    'bt.conf',
    addressOf,
  )

  it('si_startbttrack without --image serves BT_IMAGES as the init script did, gzip for BT_COMPRESS=y', () => {
    const { args, notes } = translateSystemImagerCommand('si_startbttrack', [], conf)
    expect(args).toEqual([
      'serve',
      '--port',
      '7000',
      '--advertise-address',
      '10.0.0.1',
      '--image',
      'RHEL4_base,suse10',
      '--compression',
      'gzip',
    ])
    expect(notes).toEqual([
      expect.stringMatching(/^BT_OVERRIDES: --overrides site: nothing to prepare/),
    ])
  })

  it('flags win over the file: --image serves those images as published, --image_server the address', () => {
    const { args } = translateSystemImagerCommand(
      'si_startbttrack',
      ['--image', 'legacy', '--image_server', '10.0.0.5'],
      conf,
    )
    expect(args).toEqual(['serve', '--image', 'legacy', '--address', '10.0.0.5', '--port', '7000'])
  })

  it('si_installbtimage announces the tracker port and interface address from the file', () => {
    const { args } = translateSystemImagerCommand('si_installbtimage', ['--images', 'a'], conf)
    expect(args).toEqual([
      'publish',
      '--image',
      'a',
      '--port',
      '7000',
      '--advertise-address',
      '10.0.0.1',
      '--compression',
      'none',
    ])
  })

  it('si_stopbttrack and si_updateclient ignore the file', () => {
    expect(translateSystemImagerCommand('si_stopbttrack', [], conf).args).toEqual(['stop'])
    const update = ['--server', '10.0.0.1', '--directory', '/r']
    expect(translateSystemImagerCommand('si_updateclient', update, conf).args).toEqual(
      translateSystemImagerCommand('si_updateclient', update).args,
    )
  })
})
