import { X509Certificate } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, request, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { certificateFingerprint, isImageSwarmError } from '@imageswarm/core'
import { writeSelfSignedCertificate } from '@imageswarm/core/testing'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { fetchInstallFile } from '../src/server-api.js'
import { ServerConnection, tlsRefusalOf } from '../src/server-connection.js'

interface Certificate {
  cert: Buffer
  key: Buffer
  sha256: string
}

let dir: string
let first: Certificate
let second: Certificate

/** A self-signed certificate for 127.0.0.1 and its pin. */
async function makeCertificate(name: string): Promise<Certificate> {
  const { cert, key } = writeSelfSignedCertificate(dir, name)
  return { cert, key, sha256: certificateFingerprint(new X509Certificate(cert).raw) }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'imageswarm-tls-'))
  first = await makeCertificate('first')
  second = await makeCertificate('second')
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

let server: Server | undefined
const connections: ServerConnection[] = []

afterEach(async () => {
  await Promise.all(connections.splice(0).map((connection) => connection.close()))
  server?.closeAllConnections()
  if (server) await new Promise((resolve) => server!.close(resolve))
  server = undefined
})

/** An HTTPS server on loopback presenting `certificate`; counts the requests it read. */
async function serveHttps(certificate: Certificate) {
  const seen = { requests: 0 }
  server = createServer({ cert: certificate.cert, key: certificate.key }, (req, res) => {
    seen.requests++
    res.setHeader('content-type', 'text/plain')
    res.end(`hello ${req.url}`)
  })
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve))
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`
  return { url, seen }
}

function connectionTo(url: string): ServerConnection {
  const connection = new ServerConnection(url)
  connections.push(connection)
  return connection
}

/** GET over node:https with `agent`, as the group key requests do. */
function getWithAgent(url: string, agent: ServerConnection['agent']): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ...(agent ? { agent } : {}) }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.once('end', () => resolve(Buffer.concat(chunks).toString()))
    })
    req.once('error', reject)
    req.end()
  })
}

/**
 * What a manifest request over `connection` fails with (undefined if it succeeds). The
 * connect budget is long: a refusal taken for a network failure would be retried until the
 * test times out.
 */
function manifestFailure(url: string, connection: ServerConnection): Promise<unknown> {
  return fetchInstallFile('/images/node/manifest.json', 'manifest', 4096, {
    server: url,
    connectTimeoutSeconds: 600,
    connection,
  }).then(
    () => undefined,
    (err: unknown) => err,
  )
}

describe('a server connection pinned by the key list', () => {
  it('talks to a self-signed server whose certificate is pinned, over fetch and node:https', async () => {
    const { url } = await serveHttps(first)
    const connection = connectionTo(url)
    connection.pin(['f'.repeat(64), first.sha256])
    const answer = await fetch(`${url}/images`, { dispatcher: connection.dispatcher! })
    expect(await answer.text()).toBe('hello /images')
    expect(await getWithAgent(`${url}/keys/groups/compute`, connection.agent)).toBe(
      'hello /keys/groups/compute',
    )
  })

  it('refuses a certificate that is not pinned before any request reaches the server', async () => {
    const { url, seen } = await serveHttps(second)
    const connection = connectionTo(url)
    connection.pin([first.sha256])
    const fetchError = await fetch(`${url}/images`, { dispatcher: connection.dispatcher! }).then(
      () => undefined,
      (err: unknown) => err,
    )
    const refusal = tlsRefusalOf(fetchError, url)
    expect(refusal?.code).toBe('E_TLS_PIN_MISMATCH')
    expect(refusal?.message).toContain(second.sha256)
    const agentError = await getWithAgent(url, connection.agent).then(
      () => undefined,
      (err: unknown) => err,
    )
    expect(isImageSwarmError(agentError) && agentError.code).toBe('E_TLS_PIN_MISMATCH')
    expect(seen.requests).toBe(0)
  })

  it('fails a server request at once with E_TLS_PIN_MISMATCH, not after the connect timeout', async () => {
    const { url, seen } = await serveHttps(second)
    const connection = connectionTo(url)
    connection.pin([first.sha256])
    const error = await manifestFailure(url, connection)
    expect(isImageSwarmError(error) && error.code).toBe('E_TLS_PIN_MISMATCH')
    expect(isImageSwarmError(error) && error.hint).toContain('key tls-pin')
    expect(seen.requests).toBe(0)
  })

  it('fetches the key list without a certificate check (its root signature is the check)', async () => {
    const { url } = await serveHttps(second)
    const connection = connectionTo(url)
    connection.pin([first.sha256])
    const body = await fetchInstallFile('/keys.json', 'key list', 4096, {
      server: url,
      connectTimeoutSeconds: 5,
      connection,
      verifiedBySignature: true,
    })
    expect(body?.toString()).toBe('hello /keys.json')
  })

  it('without a pin, takes only what the CA store trusts: a self-signed server is E_TLS_UNTRUSTED', async () => {
    const { url, seen } = await serveHttps(first)
    const connection = connectionTo(url)
    connection.pin([])
    expect(connection.dispatcher).toBeUndefined()
    const error = await manifestFailure(url, connection)
    expect(isImageSwarmError(error) && error.code).toBe('E_TLS_UNTRUSTED')
    expect(isImageSwarmError(error) && error.exitCode).toBe(18)
    expect(seen.requests).toBe(0)
  })

  it('changes nothing over plain HTTP', () => {
    const connection = connectionTo('http://127.0.0.1:6969')
    connection.pin([first.sha256])
    expect(connection.https).toBe(false)
    expect(connection.dispatcher).toBeUndefined()
    expect(connection.agent).toBeUndefined()
    expect(connection.keyListDispatcher).toBeUndefined()
  })
})
