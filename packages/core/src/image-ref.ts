import { ImageSwarmError } from './errors.js'

// SystemImager image names become directory and file names on the server and URL path
// segments on the wire, so they are restricted to a portable, unambiguous set.
export const IMAGE_NAME_PATTERN = /^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/

/**
 * Checks an image name and returns it.
 *
 * @example parseImageName('compute-node_rocky9') // 'compute-node_rocky9'
 */
export function parseImageName(name: string, source = 'image name'): string {
  if (!IMAGE_NAME_PATTERN.test(name)) {
    throw new ImageSwarmError(
      'E_IMAGE_NAME_INVALID',
      `invalid ${source}: ${JSON.stringify(name)}`,
      {
        path: name,
        hint: 'image names use letters, digits, ".", "_", "+" and "-", start with a letter or digit, at most 128 characters',
      },
    )
  }
  return name
}
