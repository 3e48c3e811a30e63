/** The public types of the client: its options, the envelope fields, errors and counters. */

/** The hub's per-request limits. */
export const MAX_BATCH_EVENTS = 1000;
export const MAX_BODY_BYTES = 1024 * 1024;

/** Envelope fields besides `type` and `data` (docs/sdk.md explains each). */
export interface EmitOptions {
  /** Your idempotency key; default: a UUIDv7 made at emit time, kept across retries. */
  id?: string;
  version?: string;
  /** When it happened: a Date or ISO 8601 with a timezone; default: the moment of emit. */
  time?: Date | string;
  source?: string;
  subject?: string;
  actor?: { id?: string | null; type?: string | null };
  trace_id?: string;
  correlation_id?: string;
  causation_id?: string;
  context?: Record<string, unknown>;
}

export const ENVELOPE_FIELDS: ReadonlySet<string> = new Set([
  "id",
  "version",
  "time",
  "source",
  "subject",
  "actor",
  "trace_id",
  "correlation_id",
  "causation_id",
  "context",
]);

/** The native envelope as one object: `emit({type, data, ...})`. */
export type NativeEvent<K extends string = string, D = object> = EmitOptions & {
  type: K;
  data: D;
};

/** Any event type with any object as its data: the default when no catalog types are given. */
export type AnyEvents = Record<string, object>;

/** A map from event type to its data, e.g. the `Events` interface `catalog codegen` writes. */
export type EventTypes<E> = { [K in keyof E]: object };

export type ErrorCode =
  | "invalid_event" // emit got something that cannot be sent (wrong type, not JSON, over 1 MiB)
  | "queue_full" // dropped: maxQueue events were waiting (reported once per run of drops)
  | "closed" // dropped: emitted after close (reported once per run of drops)
  | "rejected" // the hub refused the event as invalid; `details` says why; never retried
  | "batch_failed" // a 4xx other than 413/422/429: the request is wrong; not retried
  | "gave_up" // still failing after maxRetries retries
  | "unsent_at_close"; // close() timed out with these events still unsent

/** What `onError` receives. Carries event ids and the hub's messages, never event data. */
export class SwitchboardError extends Error {
  override readonly name = "SwitchboardError";
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly eventIds: readonly string[] = [],
    readonly status?: number,
    readonly details: readonly { path?: string; message?: string }[] = [],
  ) {
    super(message);
  }
}

/** Counters since the client was made; `queued == sent + rejected + failed + pending`. */
export interface ClientStats {
  queued: number; // taken into the queue by emit
  sent: number; // the hub answered accepted or duplicate
  rejected: number; // the hub answered rejected (invalid event); reported, never retried
  dropped: number; // not queued: invalid, the queue was full, or the client was closed
  failed: number; // given up: retries exhausted, a non-retryable 4xx, or closed while pending
  retries: number; // requests sent again after a retryable failure
  errors: number; // calls of onError
}

export type FetchLike = (input: string, init: RequestInit) => Promise<Response>;

export interface ClientOptions {
  /** The hub's base URL, e.g. `https://hub.example.com`. */
  url: string;
  /** An API key with the `ingest` scope. Sent only in the Authorization header. */
  apiKey: string;
  /** Default `source` of every event. */
  source?: string;
  /** Events per request, 1..1000 (default 100). */
  batchSize?: number;
  /** How long a partial batch waits for more events, in ms (default 200). */
  flushIntervalMs?: number;
  /** Events held in memory before emits are dropped (default 10,000). */
  maxQueue?: number;
  /** Retries of one batch before it fails (default 8). */
  maxRetries?: number;
  /** One request, connect to last byte, in ms (default 10,000). */
  timeoutMs?: number;
  /** The backoff curve in ms (defaults 500 and 30,000); Retry-After may exceed the cap. */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** Called for every lost or rejected event (default: one console.warn line). Never throws. */
  onError?: (error: SwitchboardError) => void;
  /** The fetch to use (default: globalThis.fetch). */
  fetch?: FetchLike;
  /** Node: close (flushing) on `beforeExit`, waiting up to this many ms; 0 turns it off (default 2,000). */
  exitTimeoutMs?: number;
}
