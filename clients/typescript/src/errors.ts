// Errors: every failure the server reports is a MobilesamError carrying the gRPC code; a
// prompt superseded by a newer one (`predict({ supersede: true })`) is a Superseded; bad
// arguments are refused before anything is sent, as an ArgumentError.
import { Code, ConnectError } from "@connectrpc/connect";

export { Code };

/** The gRPC name of a status code, e.g. `NOT_FOUND` for `Code.NotFound`. */
export function codeName(code: Code): string {
  if (code === Code.Canceled) return "CANCELLED";
  const name = Code[code];
  return name === undefined ? String(code) : name.replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

/** A failed call: the server's (or the transport's) gRPC status. */
export class MobilesamError extends Error {
  /** The gRPC status code (`Code.NotFound` = 5, ...). */
  readonly code: Code;
  /** The server's message, without the code prefix. */
  readonly rawMessage: string;

  constructor(code: Code, message: string, options?: { cause?: unknown }) {
    super(`${codeName(code)}: ${message}`, options);
    this.name = "MobilesamError";
    this.code = code;
    this.rawMessage = message;
  }

  /** The gRPC name of `code`, e.g. `"NOT_FOUND"`. */
  get codeName(): string {
    return codeName(this.code);
  }
}

/** A prompt answered ABORTED: a newer prompt with `supersede: true` replaced it before it
 * was decoded (latest wins). Not a failure: drop it and wait for the newer answer. */
export class Superseded extends MobilesamError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(Code.Aborted, message, options);
    this.name = "Superseded";
  }
}

/** An argument refused by the client before sending (code INVALID_ARGUMENT, as the server
 * would answer). The message names the argument and the position, e.g. `points[1][0]`. */
export class ArgumentError extends MobilesamError {
  constructor(message: string) {
    super(Code.InvalidArgument, message);
    this.name = "ArgumentError";
  }
}

/** Any error from a call as a MobilesamError (Superseded for ABORTED when `aborted` says so). */
export function toMobilesamError(error: unknown, superseded = false): MobilesamError {
  if (error instanceof MobilesamError) return error;
  const connect = ConnectError.from(error);
  if (superseded && connect.code === Code.Aborted) return new Superseded(connect.rawMessage, { cause: error });
  return new MobilesamError(connect.code, connect.rawMessage, { cause: error });
}
