import { readFile } from 'node:fs/promises'
import { type Agent, request as httpRequest } from 'node:http'
import { request as httpsRequest } from 'node:https'
import {
  type ArchiveKey,
  encodeGroupKeyAuthorization,
  errnoOf,
  type GroupKey,
  type GroupKeyAnswer,
  type GroupKeyChallenge,
  groupKeyFromBytes,
  groupKeyPath,
  groupKeyProof,
  type ImageManifest,
  ImageSwarmError,
  type Logger,
  type NodeSecret,
  openGroupKey,
  parseNodeSecretFile,
  serverUrl,
  unwrapArchiveKey,
} from '@imageswarm/core'
import type { ClientConfig } from './config.js'
import { tlsRefusalOf } from './server-connection.js'

/** A group key answer is a few hundred bytes; anything much larger is not one. */
const ANSWER_LIMIT = 64 * 1024
const REQUEST_TIMEOUT_MS = 30_000

/** What a group key request goes through. */
export interface KeyRequestOptions {
  server: string
  /**
   * The connection's agent: over HTTPS, the one that accepts only the certificate the
   * verified key list pins (ServerConnection.agent); none over plain HTTP (a trusted
   * install network) or without a pin (Node's CA check).
   */
  agent?: Agent
  signal?: AbortSignal
}

interface KeyAnswer {
  status: number
  body: Buffer
}

/**
 * One GET to the image server's key endpoints. Every group key request goes through here,
 * so that pinning the server's certificate is one agent passed in (ServerConnection.agent;
 * docs/trust.md, "HTTPS"), not a change to each caller.
 */
function requestKeyEndpoint(
  path: string,
  headers: Record<string, string>,
  options: KeyRequestOptions,
): Promise<KeyAnswer> {
  const url = new URL(serverUrl(options.server, path))
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest
  return new Promise<KeyAnswer>((resolve, reject) => {
    const req = send(
      url,
      {
        method: 'GET',
        headers,
        timeout: REQUEST_TIMEOUT_MS,
        ...(options.agent ? { agent: options.agent } : {}),
        ...(options.signal ? { signal: options.signal } : {}),
      },
      (res) => {
        const chunks: Buffer[] = []
        let size = 0
        res.on('data', (chunk: Buffer) => {
          size += chunk.length
          if (size > ANSWER_LIMIT) res.destroy(new Error(`answer over ${ANSWER_LIMIT} bytes`))
          else chunks.push(chunk)
        })
        res.once('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }))
        res.once('error', reject)
      },
    )
    req.once('timeout', () => req.destroy(new Error('no answer in 30 s')))
    req.once('error', reject)
    req.end()
  })
}

function unavailable(message: string, hint: string, path: string, cause?: unknown) {
  return new ImageSwarmError('E_ARCHIVE_KEY_UNAVAILABLE', message, {
    operation: 'fetch group key',
    path,
    hint,
    ...(cause === undefined ? {} : { cause }),
  })
}

function parseJson<T>(body: Buffer): T | undefined {
  try {
    return JSON.parse(body.toString('utf8')) as T
  } catch {
    return undefined
  }
}

/** The server's refusal message, if it sent one. */
function refusalOf(body: Buffer): string | undefined {
  const error = parseJson<{ error?: { message?: unknown } }>(body)?.error
  return typeof error?.message === 'string' ? error.message.slice(0, 500) : undefined
}

/**
 * Fetches this node's group key: a nonce, then the request proving the node secret
 * (`GET /keys/groups/NAME`, see GroupKeyRoutes on the server). Any refusal is
 * `E_ARCHIVE_KEY_UNAVAILABLE` with the server's reason.
 */
export async function fetchGroupKey(
  secret: NodeSecret,
  group: string,
  options: KeyRequestOptions,
): Promise<GroupKey> {
  const path = groupKeyPath(group)
  const where = serverUrl(options.server, path)
  const ask = (headers: Record<string, string>) =>
    requestKeyEndpoint(path, headers, options).catch((err: unknown) => {
      // A certificate the pin or the CA store refuses is said as such, not as a missing key.
      const refusal = tlsRefusalOf(err, where)
      if (refusal) throw refusal
      throw unavailable(
        `cannot fetch the key of group ${group} from ${where}: ${err instanceof Error ? err.message : String(err)}`,
        'is the image server running with --group-keys DIR?',
        where,
        err,
      )
    })
  const first = await ask({})
  const challenge = first.status === 401 ? parseJson<GroupKeyChallenge>(first.body) : undefined
  if (!challenge || !/^[0-9a-f]{32}$/.test(String(challenge.nonce))) {
    throw unavailable(
      `${where} hands out no group keys (HTTP ${first.status})`,
      'run the server with --group-keys DIR (imageswarm key group add NAME --group-keys DIR)',
      where,
    )
  }
  const request = { nonce: challenge.nonce, node: secret.node, group }
  const answer = await ask({
    authorization: encodeGroupKeyAuthorization({
      ...request,
      proof: groupKeyProof(secret.secret, request),
    }),
  })
  if (answer.status !== 200) {
    throw unavailable(
      `the server refused the key of group ${group} to node ${secret.node} (HTTP ${answer.status}): ${refusalOf(answer.body) ?? 'no reason given'}`,
      "check the node's group (--group, imageswarm.group=) and its secret file against the server's (imageswarm key group list --group-keys DIR)",
      where,
    )
  }
  const body = parseJson<GroupKeyAnswer>(answer.body)
  let key: GroupKey | undefined
  try {
    const opened =
      body?.group === group && typeof body.sealedKey === 'string' && typeof body.keyId === 'string'
        ? openGroupKey(secret.secret, request, body)
        : undefined
    key = opened === undefined ? undefined : groupKeyFromBytes(group, opened)
  } catch {
    key = undefined
  }
  if (!key || key.keyId !== body?.keyId) {
    throw unavailable(
      `${where} answered with no group key this node's secret opens`,
      "ask again; if it persists, the server's secret for this node differs from the node's (imageswarm key node add)",
      where,
    )
  }
  return key
}

/** The node secret file (`nodeSecretFile`). */
export async function readNodeSecretFile(path: string): Promise<NodeSecret> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    throw new ImageSwarmError(
      'E_KEY_FILE_INVALID',
      `node secret ${path} cannot be read (${errnoOf(err) ?? String(err)})`,
      {
        operation: 'read node secret',
        path,
        hint: 'give the file imageswarm key node add --output FILE wrote (--node-secret-file, imageswarm.node-secret-file=)',
        cause: err,
      },
    )
  }
  return parseNodeSecretFile(text, path)
}

/**
 * The archive key of an encrypted image, for this node: its node secret, its group's key
 * from the server, the wrapping for that group in the (verified) manifest. Refused with
 * `E_ARCHIVE_KEY_UNAVAILABLE` when the node has no secret, the server does not hand it the
 * key, or the image is not encrypted for its group (another group, a revoked one).
 */
export async function openArchiveKey(
  manifest: ImageManifest,
  config: Pick<ClientConfig, 'group' | 'nodeSecretFile'>,
  options: KeyRequestOptions,
  logger: Logger,
): Promise<ArchiveKey> {
  const encryption = manifest.encryption
  if (!encryption) throw new TypeError('the image is not encrypted')
  if (config.nodeSecretFile === undefined) {
    throw unavailable(
      `image ${manifest.name} is encrypted, and this node has no node secret to fetch its group key with`,
      'give the node its secret file (imageswarm key node add NODE --group NAME --output FILE): --node-secret-file FILE or imageswarm.node-secret-file=PATH',
      manifest.name,
    )
  }
  const secret = await readNodeSecretFile(config.nodeSecretFile)
  const group = config.group ?? secret.group
  const started = performance.now()
  const groupKey = await fetchGroupKey(secret, group, options)
  const archiveKey = unwrapArchiveKey(
    encryption.wrappedKeys,
    encryption.archiveKeyId,
    groupKey,
    `image ${manifest.name} (serial ${manifest.serial ?? 'none'})`,
  )
  logger.info(
    {
      image: manifest.name,
      group,
      node: secret.node,
      groupKey: groupKey.keyId,
      archiveKey: archiveKey.keyId,
      seconds: Number(((performance.now() - started) / 1000).toFixed(4)),
    },
    'archive key unwrapped',
  )
  return archiveKey
}
