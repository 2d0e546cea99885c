import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { parseKernelCmdline } from '@imageswarm/core'
import { describe, expect, it } from 'vitest'
import { parseDhcpLease } from '../src/node/dhcp-lease.js'
import { hostsWithName } from '../src/node/hosts-file.js'
import { resolveNodeInstallerSettings } from '../src/node/installer-config.js'
import {
  baseHostname,
  imageScriptsToRun,
  netmask,
  shellQuote,
  variablesText,
} from '../src/node/post-install-plan.js'
import { thrown } from './helpers/thrown.js'

const run = promisify(execFile)

const settings = (cmdline: string, env: NodeJS.ProcessEnv = {}) =>
  resolveNodeInstallerSettings(parseKernelCmdline(cmdline), env)

describe('the installer’s kernel parameters', () => {
  it('takes SystemImager 5’s names for the server, image, staging, layout and post action', () => {
    const resolved = settings(
      'si.image-server=10.0.0.1 si.image-name=compute si.dl-protocol=torrent si.tmpfs-staging=y si.disks-layout=rack si.post-action=shutdown',
    )
    expect(resolved.client).toMatchObject({
      server: ['http://10.0.0.1:6969'],
      image: 'compute',
      staging: 'tmpfs',
      target: '/a',
    })
    expect(resolved.installer).toEqual({ disksLayout: 'rack', postAction: 'poweroff' })
    expect(resolved.installerSources).toEqual({
      disksLayout: 'si.disks-layout',
      postAction: 'si.post-action',
      hostname: 'default',
    })
    expect(resolved.clientSources.server).toEqual({ source: 'kernel', name: 'si.image-server' })
    expect(settings('IMAGESERVER=10.0.0.1 IMAGENAME=x si.tmpfs-staging=n').client.staging).toBe(
      'target',
    )
    expect(settings('IMAGESERVER=10.0.0.1 IMAGENAME=x si.tmpfs-staging').client.staging).toBe(
      'tmpfs',
    )
  })

  it('takes several image servers, separated by commas, under each name', () => {
    for (const name of ['imageswarm.server', 'IMAGESERVER', 'si.image-server']) {
      const resolved = settings(`${name}=10.0.0.1,10.0.0.2:8080,10.0.0.1 imageswarm.image=a`)
      expect(resolved.client.server).toEqual(['http://10.0.0.1:6969', 'http://10.0.0.2:8080'])
    }
    expect(() => settings('imageswarm.server=10.0.0.1,,10.0.0.2 imageswarm.image=a')).toThrow(
      /invalid imageswarm.server \(kernel\): an empty entry/,
    )
  })

  it('prefers imageswarm.* over si.* and defaults the post action to reboot', () => {
    const resolved = settings(
      'imageswarm.server=http://10.0.0.2:8080 si.image-server=10.0.0.1 imageswarm.image=a si.image-name=b imageswarm.disks-layout=x si.disks-layout=y imageswarm.hostname=node7',
    )
    expect(resolved.client.server).toEqual(['http://10.0.0.2:8080'])
    expect(resolved.client.image).toBe('a')
    expect(resolved.installer).toEqual({
      disksLayout: 'x',
      postAction: 'reboot',
      hostname: 'node7',
    })
  })

  it('reboots for directboot and kexec, and says so', () => {
    for (const action of ['directboot', 'kexec']) {
      const resolved = settings(`IMAGESERVER=s IMAGENAME=x si.post-action=${action}`)
      expect(resolved.installer.postAction).toBe('reboot')
      expect(resolved.notes).toEqual([
        `post action ${action}: imageswarm reboots into the installed system instead`,
      ])
    }
    expect(
      settings('IMAGESERVER=s IMAGENAME=x imageswarm.post-action=shell').installer.postAction,
    ).toBe('shell')
  })

  it('takes si.dl-protocol=http (the plain-HTTP baseline) and says so on the console; torrent stays the default', () => {
    expect(settings('IMAGESERVER=s IMAGENAME=x').client.downloadProtocol).toBe('torrent')
    const http = settings('IMAGESERVER=s IMAGENAME=x si.dl-protocol=http')
    expect(http.client.downloadProtocol).toBe('http')
    expect(http.notes).toEqual([
      'si.dl-protocol=http: the archive comes over plain HTTP from the server, with no swarm',
    ])
    expect(
      settings('IMAGESERVER=s IMAGENAME=x imageswarm.dl-protocol=http si.dl-protocol=torrent')
        .client.downloadProtocol,
    ).toBe('http')
  })

  it('refuses si.dl-protocol other than torrent or http, an unknown post action and a bad host name, naming the parameter', () => {
    const protocol = thrown(() => settings('IMAGESERVER=s IMAGENAME=x si.dl-protocol=rsync'))
    expect(protocol.code).toBe('E_CONFIG_INVALID')
    expect(protocol.exitCode).toBe(2)
    expect(protocol.message).toBe('invalid si.dl-protocol (kernel): "rsync"')
    expect(protocol.hint).toBe('give torrent (the swarm) or http (one GET from the image server)')

    const action = thrown(() => settings('IMAGESERVER=s IMAGENAME=x si.post-action=beep'))
    expect(action.code).toBe('E_CONFIG_INVALID')
    expect(action.message).toMatch(/^invalid si\.post-action=beep: /)
    expect(action.hint).toBe(
      'give si.post-action=reboot, poweroff (or shutdown), shell, or directboot',
    )

    const host = thrown(() => settings('IMAGESERVER=s IMAGENAME=x imageswarm.hostname=node_7'))
    expect(host.path).toBe('imageswarm.hostname')
    const staging = thrown(() => settings('IMAGESERVER=s IMAGENAME=x si.tmpfs-staging=/tmp/x'))
    expect(staging.message).toBe('invalid si.tmpfs-staging (kernel): "/tmp/x"')
    expect(staging.hint).toBe('give y or n')
  })
})

describe('the DHCP lease /init recorded', () => {
  it('reads what the udhcpc script writes; empty values are absent', () => {
    expect(
      parseDhcpLease(
        'DHCP_INTERFACE=eth0\nDHCP_MAC=52:54:00:77:00:01\nDHCP_IP=10.77.0.11\nDHCP_PREFIX=24\nDHCP_ROUTER=10.77.0.1\nDHCP_DNS=\nDHCP_HOSTNAME=node1\nDHCP_DOMAIN=\nDHCP_SERVER=10.77.0.1\n',
      ),
    ).toEqual({
      interface: 'eth0',
      mac: '52:54:00:77:00:01',
      ip: '10.77.0.11',
      prefix: 24,
      router: '10.77.0.1',
      hostname: 'node1',
    })
    expect(parseDhcpLease('')).toEqual({})
  })
})

describe('/etc/hosts', () => {
  it('puts the name on 127.0.1.1 after 127.0.0.1, replacing the golden client’s', () => {
    expect(
      hostsWithName(
        '127.0.0.1\tlocalhost\n127.0.1.1\tgolden.lab\tgolden\n\n::1 localhost\n',
        'node1',
        'lab',
      ),
    ).toBe('127.0.0.1\tlocalhost\n127.0.1.1\tnode1.lab\tnode1\n\n::1 localhost\n')
    expect(hostsWithName('10.0.0.5 server\n', 'node1')).toBe('127.0.1.1\tnode1\n10.0.0.5 server\n')
  })

  it('starts from Debian’s default when the image has none', () => {
    expect(hostsWithName(undefined, 'node2')).toBe(
      '127.0.0.1\tlocalhost\n127.0.1.1\tnode2\n\n# The following lines are desirable for IPv6 capable hosts\n::1     localhost ip6-localhost ip6-loopback\nff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n',
    )
  })
})

describe('post-install scripts', () => {
  it('runs the image’s executable regular files by name, as run-parts, saying why others are skipped', () => {
    const entry = (name: string, file = true, executable = true) => ({ name, file, executable })
    expect(
      imageScriptsToRun([
        entry('50-ssh'),
        entry('10-first'),
        entry('README', true, false),
        entry('20-old~'),
        entry('30-conf.dpkg-old'),
        entry('.hidden'),
        entry('40-dir', false),
        entry('B-upper'),
      ]),
    ).toEqual({
      run: ['10-first', '50-ssh', 'B-upper'],
      skipped: [
        '.hidden (hidden)',
        '20-old~ (a backup)',
        '30-conf.dpkg-old (a backup)',
        '40-dir (not a regular file)',
        'README (not executable)',
      ],
    })
  })

  it('cuts the base host name at the first digit or dot, as SystemImager', () => {
    expect(baseHostname('node07')).toBe('node')
    expect(baseHostname('web.example.org')).toBe('web')
    expect(baseHostname('login-a3')).toBe('login-a')
    expect(baseHostname('7up')).toBe('')
  })

  it('writes variables.txt that sh sources to SystemImager’s names', async () => {
    const text = variablesText({
      hostname: 'node07',
      domain: 'lab',
      image: 'compute',
      server: 'http://10.0.0.1:6969',
      groups: ['rack1', 'gpu'],
      overrides: ['compute', 'rack1', 'node07'],
      layoutName: 'default',
      postAction: 'reboot',
      device: 'eth0',
      mac: '52:54:00:77:00:07',
      ip: '10.0.0.17',
      prefix: 22,
      router: '10.0.0.1',
    })
    const { stdout } = await run('sh', [
      '-c',
      `${text}\nprintf '%s|' "$HOSTNAME" "$BASE_HOSTNAME" "$DOMAINNAME" "$IMAGESERVER" "$IMAGENAME" "$GROUPNAMES" "$OVERRIDES" "$NETMASK" "$IPADDR" "$GATEWAY" "$CLIENT_MAC" "$DL_PROTOCOL" "$IMAGESWARM_SERVER"`,
    ])
    expect(stdout).toBe(
      'node07|node|lab|10.0.0.1|compute|rack1 gpu|compute rack1 node07|255.255.252.0|10.0.0.17|10.0.0.1|52:54:00:77:00:07|torrent|http://10.0.0.1:6969|',
    )
  })

  it('quotes any value for sh', async () => {
    const value = `it's $HOME \`id\` "x"\\`
    const { stdout } = await run('sh', ['-c', `V=${shellQuote(value)}; printf '%s' "$V"`])
    expect(stdout).toBe(value)
    expect([0, 8, 24, 32].map(netmask)).toEqual([
      '0.0.0.0',
      '255.0.0.0',
      '255.255.255.0',
      '255.255.255.255',
    ])
  })
})
