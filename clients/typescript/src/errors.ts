/**
 * Typed errors. Every error the hub answers carries a stable `code` (`unauthenticated`,
 * `token_expired`, `forbidden`, `tenant_mismatch`, `invalid_request`, `not_found`, `too_large`,
 * `overloaded`, `unavailable`, `quota_exceeded`, `internal`, …) and the HTTP `status`; the message is for people.
 * Errors made by the client itself (timeout, connection, an expired agent) have status 0.
 */

export interface AgentDBErrorOptions {
  code: string;
  status: number;
  cause?: unknown;
  /** For 429/503: how long the hub asked us to wait, in milliseconds. */
  retryAfterMs?: number;
  /** The hub's id of the request (its `x-request-id` header). */
  requestId?: string;
}

export class AgentDBError extends Error {
  /** The hub's stable code, or the client's (`timeout`, `connection`, `agent_expired`). */
  readonly code: string;
  /** The HTTP status; 0 when no answer was received. */
  readonly status: number;
  readonly retryAfterMs: number | undefined;
  /**
   * The hub's id of the request (its `x-request-id` header), under which the hub's audit log
   * records it: quote it to the hub's operator. Undefined when no answer was received.
   */
  readonly requestId: string | undefined;

  constructor(message: string, options: AgentDBErrorOptions) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = options.code;
    this.status = options.status;
    this.retryAfterMs = options.retryAfterMs;
    this.requestId = options.requestId;
  }
}

/** 401: no token, a forged, revoked or expired token, an unknown API key. */
export class AuthenticationError extends AgentDBError {}
/** 403: the scope does not allow it (`forbidden`), or certificate and token disagree (`tenant_mismatch`). */
export class PermissionError extends AgentDBError {}
/**
 * 403 `quota_exceeded`: the write would pass one of the tenant's quotas (episodes, stored bytes,
 * writes per second); nothing was written. Not retried.
 */
export class QuotaExceededError extends PermissionError {}
/** 404: no such episode for this tenant (another tenant's id answers the same). */
export class NotFoundError extends AgentDBError {}
/** 400 or 422: the request is malformed or breaks a rule; nothing was written. */
export class InvalidRequestError extends AgentDBError {}
/** 413: the body is over the hub's limit. */
export class PayloadTooLargeError extends AgentDBError {}
/** 429: the tenant has too many requests in flight (retried before it is thrown). */
export class RateLimitError extends AgentDBError {}
/** 503: the hub cannot serve now (retried before it is thrown). */
export class UnavailableError extends AgentDBError {}
/** 500 and other 5xx: a fault on the hub. */
export class InternalError extends AgentDBError {}

/** The request took longer than `timeoutMs` (after every retry). */
export class TimeoutError extends AgentDBError {
  constructor(message: string, cause?: unknown) {
    super(message, { code: "timeout", status: 0, cause });
  }
}

/** The hub could not be reached, or the connection failed (after every retry). */
export class ConnectionError extends AgentDBError {
  constructor(message: string, cause?: unknown) {
    super(message, { code: "connection", status: 0, cause });
  }
}

/** Work was asked of an ephemeral agent after its lifetime ended or after `destroy()`. */
export class AgentExpiredError extends AgentDBError {
  constructor(message = "the agent's lifetime has ended") {
    super(message, { code: "agent_expired", status: 0 });
  }
}

/** The typed error for an HTTP status and the hub's code. */
export function errorFor(
  status: number,
  code: string,
  message: string,
  retryAfterMs?: number,
  requestId?: string,
): AgentDBError {
  const options: AgentDBErrorOptions = { code, status, retryAfterMs, requestId };
  switch (status) {
    case 400:
    case 422:
      return new InvalidRequestError(message, options);
    case 401:
      return new AuthenticationError(message, options);
    case 403:
      if (code === "quota_exceeded") return new QuotaExceededError(message, options);
      return new PermissionError(message, options);
    case 404:
      return new NotFoundError(message, options);
    case 413:
      return new PayloadTooLargeError(message, options);
    case 429:
      return new RateLimitError(message, options);
    case 503:
      return new UnavailableError(message, options);
    default:
      if (status >= 500) return new InternalError(message, options);
      return new AgentDBError(message, options);
  }
}

/**
 * The status the hub answers `code` with, for errors that arrive without one (a change stream's
 * `error` event); 500 for a code it does not answer.
 */
export function statusFor(code: string): number {
  switch (code) {
    case "invalid_request":
      return 400;
    case "unauthenticated":
    case "token_expired":
      return 401;
    case "forbidden":
    case "tenant_mismatch":
    case "quota_exceeded":
      return 403;
    case "not_found":
      return 404;
    case "too_large":
      return 413;
    case "overloaded":
      return 429;
    case "unavailable":
      return 503;
    default:
      return 500;
  }
}

/** The default stable code for a status, when an answer carried none. */
export function defaultCode(status: number): string {
  switch (status) {
    case 400:
    case 422:
      return "invalid_request";
    case 401:
      return "unauthenticated";
    case 403:
      return "forbidden";
    case 404:
      return "not_found";
    case 413:
      return "too_large";
    case 429:
      return "overloaded";
    case 503:
      return "unavailable";
    default:
      return status >= 500 ? "internal" : "unknown";
  }
}
