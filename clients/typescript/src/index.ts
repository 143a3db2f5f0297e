export { AgentDBClient, parseRetryAfter, uuidv7, jwtClaims } from "./client.js";
export type { AgentDBClientOptions, FetchLike, TokenInfo } from "./client.js";
export { EphemeralAgent } from "./agent.js";
export type { SpawnOptions, AgentContext, AgentEpisode } from "./agent.js";
export {
  AgentDBError,
  AuthenticationError,
  PermissionError,
  QuotaExceededError,
  NotFoundError,
  InvalidRequestError,
  PayloadTooLargeError,
  RateLimitError,
  UnavailableError,
  InternalError,
  TimeoutError,
  ConnectionError,
  AgentExpiredError,
} from "./errors.js";
export type { AgentDBErrorOptions } from "./errors.js";
export { SSEParser, readEvents } from "./sse.js";
export type { SSEvent } from "./sse.js";
export type * from "./types.js";
