/** Emit business events to a Switchboard hub; see docs/sdk.md ("The TypeScript SDK"). */

export { Client, MAX_BATCH_EVENTS, MAX_BODY_BYTES, SwitchboardError } from "./client.js";
export type {
  AnyEvents,
  ClientOptions,
  ClientStats,
  EmitOptions,
  ErrorCode,
  EventTypes,
  FetchLike,
  NativeEvent,
} from "./client.js";
export type { BaseEvent, BaseEventInput, ClinicActor, ClinicEvent, EventMetadata } from "./adapters.js";
export { classify, parseRetryAfter, retryDelay } from "./retry.js";
export type { Outcome } from "./retry.js";
export { uuidv7, uuidv7Time } from "./uuid.js";
