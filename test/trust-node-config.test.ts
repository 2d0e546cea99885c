// Signed node configs end to end (issue 17, docs/trust.md "Signed node configs"): a real
// `imageswarm serve --keys` with SystemImager's scripts and overrides; its node.json and
// node.json.minisig checked with stock minisign, and the installer's own node-config code
// (called here in-process, no VM) refusing a node config altered on the way and a
// post-install script changed after the config was signed.
import { execFile } from 'node:child_process'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import type { IncomingMessage } from 'node:http'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { fetchManifestFile } from '@imageswarm/client'
import { ImageSwarmError, parsePublicKeyFile, silentLogger } from '@imageswarm/core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
// The root workspace does not depend on the installer package (adding it would touch the
// lockfile): its built module is imported by path, as the ramdisk bundle uses it.
import {
  fetchNodeConfig,
  type NodeConfigTrustOptions,
  runPostInstallScripts,
} from '../packages/installer/dist/node/index.js'
import { CLI, startServer } from '../scripts/lib/deployment.mjs'
import { biosLayoutXml } from './helpers/disks-layout.js'
import { useHttpServers } from './helpers/http-servers.js'
import type { Server } from './helpers/server-fixture.js'
import { addSampleImage, makeServerLayout, type ServerLayout } from './helpers/workspace.js'

const execFileAsync = promisify(execFile)
const { startInterceptingProxy } = useHttpServers()

const MAC = '52:54:00:12:34:56'
const SCRIPT = '#!/bin/sh\necho configured by the server\n'
const LAYOUT = biosLayoutXml()

async function thrown(promise: Promise<unknown>): Promise<ImageSwarmError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  )
  if (err instanceof ImageSwarmError) return err
  throw new Error(`expected an ImageSwarmError, got ${String(err)}`)
}

describe('node configs from serve --keys', () => {
  let layout: ServerLayout
  let keys: string
  let scriptsDir: string
  let server: Server
  let trust: NodeConfigTrustOptions
  const query = { image: 'compute', mac: MAC, hostname: 'node01' }
  const request = (url: string) => ({ server: url, connectTimeoutSeconds: 10 })

  beforeAll(async () => {
    layout = await makeServerLayout('imageswarm-trust-node-config-')
    await addSampleImage(layout, 'compute')
    keys = join(layout.dir, 'keys')
    await execFileAsync(process.execPath, [CLI, 'key', 'generate', '--output', keys])
    scriptsDir = join(layout.dir, 'scripts')
    const overridesDir = join(layout.dir, 'overrides')
    await mkdir(join(scriptsDir, 'disks-layouts'), { recursive: true })
    await writeFile(join(scriptsDir, 'disks-layouts', 'compute.xml'), LAYOUT)
    await writeFile(join(scriptsDir, 'cluster.txt'), 'node01:compute:compute:compute\n')
    await mkdir(join(scriptsDir, 'post-install'))
    await writeFile(join(scriptsDir, 'post-install', '10all.hello'), SCRIPT, { mode: 0o755 })
    await mkdir(join(overridesDir, 'compute', 'etc'), { recursive: true })
    await writeFile(join(overridesDir, 'compute', 'etc', 'motd'), 'compute nodes\n')
    server = await startServer({
      images: ['compute'],
      ...layout,
      scriptsDir,
      overridesDir,
      args: ['--keys', keys],
    })
    // The serial the client verified: the served manifest's (its own test is trust-signing).
    const manifest = await fetchManifestFile('compute', request(server.url))
    const root = join(keys, 'root.pub')
    trust = {
      root: {
        publicKey: parsePublicKeyFile(await readFile(root, 'utf8'), root),
        source: root,
        testMode: false,
      },
      floor: { reasons: [] },
      serial: JSON.parse(manifest.bytes.toString('utf8')).serial,
      logger: silentLogger(),
    }
  })
  afterAll(async () => {
    await server?.stop()
    await layout?.remove()
  })

  it('is signed for the node, and stock minisign -V verifies it with the signing key', async () => {
    const params = new URLSearchParams(query).toString()
    const dir = join(layout.dir, 'fetched')
    await mkdir(dir, { recursive: true })
    for (const name of ['node.json', 'node.json.minisig']) {
      const answer = await fetch(`${server.url}/install/${name}?${params}`)
      expect(answer.status).toBe(200)
      await writeFile(join(dir, name), Buffer.from(await answer.arrayBuffer()))
    }
    const { stdout } = await execFileAsync('minisign', [
      '-V',
      '-p',
      join(keys, 'signing-1.pub'),
      '-m',
      join(dir, 'node.json'),
    ])
    expect(stdout).toContain('Signature and comment signature verified')
    expect(stdout).toMatch(
      new RegExp(
        `Trusted comment: imageswarm node-config image=compute serial=${trust.serial} mac=${MAC} hostname=node01 expires=`,
      ),
    )
    const document = JSON.parse(await readFile(join(dir, 'node.json'), 'utf8'))
    expect(document.signed).toMatchObject({
      mac: MAC,
      serial: trust.serial,
      overrideSha256: { compute: expect.stringMatching(/^[0-9a-f]{64}$/) },
      postInstallSha256: { '10all.hello': expect.stringMatching(/^[0-9a-f]{64}$/) },
    })

    const fetched = await fetchNodeConfig(query, request(server.url), trust)
    expect(fetched.signed).toEqual({
      signingKeyId: expect.stringMatching(/^[0-9A-F]{16}$/),
      keyListVersion: 1,
    })
    expect(fetched.config).toMatchObject({
      hostname: 'node01',
      layoutName: 'compute.xml',
      overrides: ['compute'],
      postInstall: ['10all.hello'],
    })
  })

  it('refuses a node config altered on the way, which a node without a trust root takes as before', async () => {
    const proxy = await startInterceptingProxy(server.url, (req: IncomingMessage, res) => {
      if (!req.url?.startsWith('/install/node.json?')) return false
      // The real answer with the partition table changed: a hostile layout.
      fetch(`${server.url}${req.url}`)
        .then(async (answer) => {
          const text = (await answer.text()).replace('"gpt"', '"msdos"')
          res.writeHead(200, { 'content-type': 'application/json' }).end(text)
        })
        .catch(() => res.destroy())
      return true
    })
    const forged = await thrown(fetchNodeConfig(query, request(proxy), trust))
    expect([forged.code, forged.exitCode]).toEqual(['E_SIGNATURE_INVALID', 18])
    expect(forged.message).toMatch(/node\.json\.minisig.* does not match the signed file/)

    // Without a trust root the same node takes it, as before signing existed.
    const unchecked = await fetchNodeConfig(query, request(proxy))
    expect(unchecked.config.layout?.disks[0]?.label).toBe('msdos')
  })

  it('refuses a post-install script changed after its node config was signed, before running anything', async () => {
    const fetched = await fetchNodeConfig(query, request(server.url), trust)
    const digests = fetched.config.signed?.postInstallSha256
    await writeFile(join(scriptsDir, 'post-install', '10all.hello'), '#!/bin/sh\nrm -rf /\n')
    try {
      const target = join(layout.dir, 'target')
      await mkdir(join(target, 'tmp'), { recursive: true })
      const err = await thrown(
        runPostInstallScripts({
          target,
          serverScripts: fetched.config.postInstall,
          variables: {
            image: 'compute',
            server: server.url,
            groups: [],
            overrides: [],
            layoutName: 'compute',
            postAction: 'reboot',
          },
          request: request(server.url),
          ...(digests ? { digests } : {}),
          console: { say: () => {} },
          logger: silentLogger(),
        }),
      )
      expect([err.code, err.exitCode]).toEqual(['E_SIGNATURE_INVALID', 18])
      expect(err.message).toMatch(
        /^post-install script 10all\.hello \(.*\/install\/post-install\/10all\.hello\) does not match the signed node config/,
      )
    } finally {
      await writeFile(join(scriptsDir, 'post-install', '10all.hello'), SCRIPT)
    }
  })
})
