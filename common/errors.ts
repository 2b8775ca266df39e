/**
 * The few error classes every role throws. Each carries a stable code; protocol front ends map
 * them once to their reply (`CLIENT_ERROR` / `SERVER_ERROR` lines, HTTP status + JSON body).
 */
export type ErrorCode =
  | "CONFIG_INVALID"
  | "BAD_REQUEST"
  | "BAD_KEY"
  | "TOO_LARGE"
  | "NON_NUMERIC"
  | "ENGINE_FAILURE"
  | "UNAVAILABLE"
  | "VERSION_OVERFLOW";

export class FlareError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Start-up configuration that cannot be used; the message names the key. */
export class ConfigError extends FlareError {
  constructor(message: string, options?: ErrorOptions) {
    super("CONFIG_INVALID", message, options);
  }
}

/** The client sent something we refuse: memcached `CLIENT_ERROR`, HTTP 4xx. */
export class ClientError extends FlareError {}

/** We could not do what a valid request asked: memcached `SERVER_ERROR`, HTTP 5xx. */
export class ServerError extends FlareError {}
