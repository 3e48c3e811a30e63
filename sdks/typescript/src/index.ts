/** Emit business events to a Switchboard hub; see docs/sdk.md ("The TypeScript SDK"). */

export { Client } from "./client.js";
export { MAX_BATCH_EVENTS, MAX_BODY_BYTES, SwitchboardError } from "./types.js";
export type {
  AnyEvents,
  ClientOptions,
  ClientStats,
  EmitOptions,
  ErrorCode,
  EventTypes,
  FetchLike,
  NativeEvent,
} from "./types.js";
export type { BaseEvent, BaseEventInput, ClinicActor, ClinicEvent, EventMetadata } from "./adapters.js";
export { classify, parseRetryAfter, retryDelay } from "./retry.js";
export type { Outcome } from "./retry.js";
export { uuidv7, uuidv7Time } from "./uuid.js";
