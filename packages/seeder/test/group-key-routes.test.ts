import { once } from 'node:events'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  encodeGroupKeyAuthorization,
  encodeGroupKeyFile,
  encodeNodeSecretFile,
  GROUP_KEY_DIRS,
  type GroupKey,
  type GroupKeyAnswer,
  generateGroupKey,
  generateNodeSecret,
  groupKeyFileName,
  groupKeyProof,
  type NodeSecret,
  nodeSecretFileName,
  openGroupKey,
} from '@imageswarm/core'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { GroupKeyRoutes } from '../src/group-key-routes.js'

let dir: string
let server: Server
let base: string
let compute: GroupKey
let n1: NodeSecret
let clock: number

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'seeder-group-keys-'))
  await mkdir(join(dir, GROUP_KEY_DIRS.nodes), { recursive: true })
  compute = generateGroupKey('compute')
  await writeFile(join(dir, groupKeyFileName('compute')), encodeGroupKeyFile(compute))
  n1 = generateNodeSecret('n1', 'compute')
  await writeFile(
    join(dir, GROUP_KEY_DIRS.nodes, nodeSecretFileName('n1')),
    encodeNodeSecretFile(n1),
  )
  clock = Date.now()
  const routes = new GroupKeyRoutes({ dir, now: () => clock })
  server = createServer((req, res) => {
    if (!routes.handle(req, res)) res.writeHead(404).end()
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})

afterEach(async () => {
  server.closeAllConnections()
  server.close()
  await once(server, 'close')
  await rm(dir, { recursive: true, force: true })
})

async function nonce(group = 'compute'): Promise<string> {
  const answer = await fetch(`${base}/keys/groups/${group}`)
  expect(answer.status).toBe(401)
  expect(answer.headers.get('cache-control')).toBe('no-store')
  const body = (await answer.json()) as { nonce: string; expiresIn: number }
  expect(answer.headers.get('www-authenticate')).toBe(`ImageswarmNode nonce="${body.nonce}"`)
  return body.nonce
}

function ask(group: string, authorization: { node: string; nonce: string; proof: string }) {
  return fetch(`${base}/keys/groups/${group}`, {
    headers: { authorization: encodeGroupKeyAuthorization(authorization) },
  })
}

const proofOf = (secret: NodeSecret, nonce: string, group = 'compute') =>
  groupKeyProof(secret.secret, { nonce, node: secret.node, group })

async function errorOf(answer: Response): Promise<{ code: string; message: string }> {
  return ((await answer.json()) as { error: { code: string; message: string } }).error
}

describe('GET /keys/groups/NAME', () => {
  it('hands the group key, sealed to the node, to a node that proves its secret over a fresh nonce', async () => {
    const given = await nonce()
    const answer = await ask('compute', { node: 'n1', nonce: given, proof: proofOf(n1, given) })
    expect(answer.status).toBe(200)
    // No cache on the way may keep the key.
    expect(answer.headers.get('cache-control')).toBe('no-store')
    const text = await answer.text()
    // The key never appears in the answer as it crosses the wire.
    expect(text).not.toContain(compute.key.toString('base64'))
    expect(text).not.toContain(compute.key.toString('hex'))
    const body = JSON.parse(text) as GroupKeyAnswer
    expect(body).toEqual({ group: 'compute', keyId: compute.keyId, sealedKey: expect.any(String) })
    const request = { nonce: given, node: 'n1', group: 'compute' }
    expect(openGroupKey(n1.secret, request, body)).toEqual(compute.key)
    // Sealed for this request and this node: another node's secret or another nonce opens nothing.
    const n2 = generateNodeSecret('n2', 'compute')
    expect(openGroupKey(n2.secret, request, body)).toBeUndefined()
    expect(openGroupKey(n1.secret, { ...request, nonce: '0'.repeat(32) }, body)).toBeUndefined()
    expect(openGroupKey(n1.secret, request, { ...body, keyId: '0'.repeat(16) })).toBeUndefined()
  })

  it('refuses a nonce used once already (a replayed request) with 401', async () => {
    const given = await nonce()
    const request = { node: 'n1', nonce: given, proof: proofOf(n1, given) }
    expect((await ask('compute', request)).status).toBe(200)
    const replayed = await ask('compute', request)
    expect(replayed.status).toBe(401)
    expect(await errorOf(replayed)).toMatchObject({
      code: 'E_ARCHIVE_KEY_UNAVAILABLE',
      message: expect.stringMatching(/no valid nonce/),
    })
  })

  it('refuses a nonce it never gave and one past its minute with 401', async () => {
    const made = '0'.repeat(32)
    expect(
      (await ask('compute', { node: 'n1', nonce: made, proof: proofOf(n1, made) })).status,
    ).toBe(401)
    const given = await nonce()
    clock += 61_000
    expect(
      (await ask('compute', { node: 'n1', nonce: given, proof: proofOf(n1, given) })).status,
    ).toBe(401)
  })

  it('refuses a wrong proof and an unknown node alike with 403, and the nonce is spent', async () => {
    const given = await nonce()
    const forged = generateNodeSecret('n1', 'compute')
    const wrong = await ask('compute', { node: 'n1', nonce: given, proof: proofOf(forged, given) })
    expect(wrong.status).toBe(403)
    const wrongError = await errorOf(wrong)
    expect(wrongError).toMatchObject({ code: 'E_ARCHIVE_KEY_UNAVAILABLE' })
    expect(wrongError.message).toBe('node n1 did not prove its node secret')
    // The right proof over the nonce the wrong one spent gets nothing either.
    expect(
      (await ask('compute', { node: 'n1', nonce: given, proof: proofOf(n1, given) })).status,
    ).toBe(401)

    const other = await nonce()
    const stranger = generateNodeSecret('n9', 'compute')
    const unknown = await ask('compute', {
      node: 'n9',
      nonce: other,
      proof: proofOf(stranger, other),
    })
    expect(unknown.status).toBe(403)
    expect((await errorOf(unknown)).message).toBe('node n9 did not prove its node secret')
  })

  it("refuses a node asking for another group's key with 403, and a group without a key with 404", async () => {
    const given = await nonce('login')
    const claimed = await ask('login', {
      node: 'n1',
      nonce: given,
      proof: proofOf(n1, given, 'login'),
    })
    expect(claimed.status).toBe(403)
    expect((await errorOf(claimed)).message).toBe('node n1 is not in group login')

    await rm(join(dir, groupKeyFileName('compute')))
    const again = await nonce()
    const revoked = await ask('compute', { node: 'n1', nonce: again, proof: proofOf(n1, again) })
    expect(revoked.status).toBe(404)
  })

  it('answers 405 to anything but GET', async () => {
    const answer = await fetch(`${base}/keys/groups/compute`, { method: 'POST' })
    expect(answer.status).toBe(405)
    expect(answer.headers.get('allow')).toBe('GET')
  })
})
