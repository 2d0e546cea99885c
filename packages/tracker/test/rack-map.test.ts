import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ImageSwarmError } from '@imageswarm/core'
import { afterEach, describe, expect, it } from 'vitest'
import { RackMap } from '../src/rack-map.js'

let dir: string | undefined

afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true })
  dir = undefined
})

async function mapFile(text: string): Promise<string> {
  dir = await mkdtemp(join(tmpdir(), 'imageswarm-rack-map-'))
  const file = join(dir, 'racks.conf')
  await writeFile(file, text)
  return file
}

/** The error `run` throws, to look at its fields. */
function errorOf(run: () => unknown): ImageSwarmError {
  try {
    run()
  } catch (err) {
    if (err instanceof ImageSwarmError) return err
    throw err
  }
  throw new Error('expected an error')
}

describe('RackMap', () => {
  describe('address rules', () => {
    const map = RackMap.parse(
      [
        '10.1.3.0/24      r3',
        '10.1.4.0/23      r4',
        '192.168.7.9      lone',
        'fd00:1:3::/64    r6',
        '2001:db8::1      lone6',
      ].join('\n'),
    )

    it('puts an IPv4 address in the rack of the subnet holding it', () => {
      expect(map.rackOf('10.1.3.0')).toBe('r3')
      expect(map.rackOf('10.1.3.255')).toBe('r3')
      expect(map.rackOf('10.1.4.20')).toBe('r4')
      expect(map.rackOf('10.1.5.20')).toBe('r4')
      expect(map.rackOf('10.1.6.1')).toBeUndefined()
    })

    it('puts an IPv6 address in the rack of the subnet holding it', () => {
      expect(map.rackOf('fd00:1:3::9')).toBe('r6')
      expect(map.rackOf('fd00:1:3:0:ffff:ffff:ffff:ffff')).toBe('r6')
      expect(map.rackOf('fd00:1:4::9')).toBeUndefined()
    })

    it('matches a rule of one address only for that address', () => {
      expect(map.rackOf('192.168.7.9')).toBe('lone')
      expect(map.rackOf('192.168.7.10')).toBeUndefined()
      expect(map.rackOf('2001:db8::1')).toBe('lone6')
      expect(map.rackOf('2001:db8::2')).toBeUndefined()
    })

    it('reads an IPv4-mapped IPv6 address as the IPv4 address it carries', () => {
      expect(map.rackOf('::ffff:10.1.3.7')).toBe('r3')
      expect(map.rackOf('::ffff:192.168.7.9')).toBe('lone')
      expect(map.rackOf('::ffff:10.1.6.1')).toBeUndefined()
    })

    it('does not match a node name that looks like an address', () => {
      expect(map.rackOf('10.9.9.9', '10.1.3.7')).toBeUndefined()
    })
  })

  describe('node name rules', () => {
    const map = RackMap.parse(
      ['n0*        r0', 'rack3-node?? r3', 'gpu.1      dots', 'a+b        plus'].join('\n'),
    )

    it('matches any run of characters for * and one character for ?', () => {
      expect(map.rackOf('10.9.9.9', 'n0')).toBe('r0')
      expect(map.rackOf('10.9.9.9', 'n07')).toBe('r0')
      expect(map.rackOf('10.9.9.9', 'n0-long.name')).toBe('r0')
      expect(map.rackOf('10.9.9.9', 'rack3-node12')).toBe('r3')
      expect(map.rackOf('10.9.9.9', 'rack3-node1')).toBeUndefined()
      expect(map.rackOf('10.9.9.9', 'rack3-node123')).toBeUndefined()
    })

    it('matches the whole name, not a part of it', () => {
      expect(map.rackOf('10.9.9.9', 'xn07')).toBeUndefined()
      expect(map.rackOf('10.9.9.9', 'n1')).toBeUndefined()
    })

    it('takes every other character literally', () => {
      expect(map.rackOf('10.9.9.9', 'gpu.1')).toBe('dots')
      expect(map.rackOf('10.9.9.9', 'gpux1')).toBeUndefined()
      expect(map.rackOf('10.9.9.9', 'a+b')).toBe('plus')
      expect(map.rackOf('10.9.9.9', 'aab')).toBeUndefined()
    })

    it('matches no name rule for a node that gives no name', () => {
      expect(map.rackOf('10.9.9.9')).toBeUndefined()
    })
  })

  it('gives the rack of the first rule that matches', () => {
    const map = RackMap.parse(
      ['n03       named', '10.1.3.7  single', '10.1.0.0/16 wide', 'n0*       later'].join('\n'),
    )
    expect(map.rackOf('10.1.3.7', 'n03')).toBe('named')
    expect(map.rackOf('10.1.3.7', 'n04')).toBe('single')
    expect(map.rackOf('10.1.9.9', 'n04')).toBe('wide')
    expect(map.rackOf('10.2.0.1', 'n04')).toBe('later')
  })

  it('skips comments and blank lines, and reads CRLF files', () => {
    const map = RackMap.parse(
      [
        '# racks of the test cluster',
        '',
        '   ',
        '10.1.3.0/24 r3   # the third rack',
        '\t# indented comment',
        'n9* r9\r',
        '',
      ].join('\n'),
    )
    expect(map.size).toBe(2)
    expect(map.rackOf('10.1.3.5')).toBe('r3')
    expect(map.rackOf('10.9.9.9', 'n91')).toBe('r9')
    expect(RackMap.parse('').size).toBe(0)
  })

  describe('a bad line', () => {
    const cases: [string, string, RegExp][] = [
      ['one field', '10.1.3.0/24', /line 2: expected two fields, found 1/],
      ['three fields', '10.1.3.0/24 r3 extra', /line 2: expected two fields, found 3/],
      ['a bad rack name', '10.1.3.0/24 r/3', /line 2: "r\/3" is not a rack name/],
      [
        'a rack name over 64 characters',
        `n1 ${'r'.repeat(65)}`,
        /line 2: "r{65}" is not a rack name/,
      ],
      ['a prefix too long', '10.1.3.0/33 r3', /line 2: "10.1.3.0\/33" is not a subnet/],
      ['an IPv6 prefix too long', 'fd00::/129 r3', /line 2: "fd00::\/129" is not a subnet/],
      ['a missing prefix', '10.1.3.0/ r3', /line 2: "10.1.3.0\/" is not a subnet/],
      ['a prefix not in decimal', '10.1.3.0/0x18 r3', /line 2: "10.1.3.0\/0x18" is not a subnet/],
      ['a subnet that is no address', '10.1.3/24 r3', /line 2: "10.1.3\/24" is not a subnet/],
      ['two prefixes', '10.1.3.0/24/8 r3', /line 2: "10.1.3.0\/24\/8" is not a subnet/],
    ]

    for (const [what, line, message] of cases) {
      it(`is a config error naming the file and line: ${what}`, () => {
        const err = errorOf(() => RackMap.parse(`10.1.1.0/24 r1\n${line}\n`, '/etc/racks.conf'))
        expect(err.code).toBe('E_CONFIG_INVALID')
        expect(err.message).toMatch(/^\/etc\/racks\.conf /)
        expect(err.message).toMatch(message)
        expect(err.path).toBe('/etc/racks.conf')
        expect(err.hint).toContain('SUBNET RACK')
      })
    }
  })

  describe('read', () => {
    it('reads the map from its file', async () => {
      const file = await mapFile('# racks\n10.1.3.0/24 r3\nn0? r0\n')
      const map = RackMap.read(file)
      expect(map.size).toBe(2)
      expect(map.rackOf('10.1.3.5')).toBe('r3')
      expect(map.rackOf('10.9.9.9', 'n07')).toBe('r0')
    })

    it('names the file and line of a bad rule', async () => {
      const file = await mapFile('10.1.3.0/24 r3\n\n10.1.4.0/24\n')
      const err = errorOf(() => RackMap.read(file))
      expect(err.code).toBe('E_CONFIG_INVALID')
      expect(err.message).toBe(`${file} line 3: expected two fields, found 1`)
      expect(err.path).toBe(file)
    })

    it('is a config error naming a file it cannot read', async () => {
      dir = await mkdtemp(join(tmpdir(), 'imageswarm-rack-map-'))
      const missing = join(dir, 'missing.conf')
      const err = errorOf(() => RackMap.read(missing))
      expect(err.code).toBe('E_CONFIG_INVALID')
      expect(err.message).toContain(missing)
      expect(err.path).toBe(missing)
      expect(err.cause).toMatchObject({ code: 'ENOENT' })
    })
  })
})
