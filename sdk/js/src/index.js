/**
 * relayapi-tokens: mint RelayAPI tokens and relay URLs for a frontend, and talk to the relay.
 *
 * The public surface is exactly what this file exports; every other module is internal and not
 * reachable through the package's `exports` map.
 *
 * @module
 */

export { RelayAPIClient, ENDPOINTS, DEFAULT_TIMEOUT_SECONDS, MAX_CLOCK_SKEW_SECONDS } from './client.js';
export { TokenGenerator } from './generator.js';
export { DEFAULT_MAX_CALLS, DEFAULT_EXPIRE_SECONDS, DEFAULT_PROVIDER } from './options.js';
export {
  RelayAPIError,
  ConfigError,
  InvalidArgumentError,
  InvalidTokenError,
  TokenExpiredError,
  TokenNotYetValidError,
  TokenLifetimeTooLongError,
  APIError,
  RelayConnectionError,
  BadResponseError,
} from './errors.js';
