import { expect } from 'vitest'
import {
  isImageSwarmError,
  KEY_LIST_TYPE,
  type KeyList,
  type SecretKey,
  signingKeyEntry,
} from '../../src/index.js'

/**
 * Checks that `error` is an ImageSwarmError with `code`, a hint and, if given, `text` in its
 * message; returns its exit code (-1 when it is not one).
 */
export function expectCode(error: unknown, code: string, text?: string): number {
  expect(isImageSwarmError(error), String(error)).toBe(true)
  if (!isImageSwarmError(error)) return -1
  expect(error.code).toBe(code)
  if (text !== undefined) expect(error.message).toContain(text)
  expect(error.hint).toBeTruthy()
  return error.exitCode
}

/** A version 1 key list of `root` listing `signing`, made at `now` and valid for a year. */
export function firstKeyList(
  root: SecretKey,
  signing: readonly SecretKey[],
  now: Date,
  overrides: Partial<KeyList> = {},
): KeyList {
  return {
    type: KEY_LIST_TYPE,
    schemaVersion: 1,
    version: 1,
    created: now.toISOString(),
    expires: new Date(now.getTime() + 365 * 86_400_000).toISOString(),
    rootKeyId: root.keyId,
    signingKeys: signing.map((key) => signingKeyEntry(key.publicKey, now)),
    revokedKeyIds: [],
    ...overrides,
  }
}
