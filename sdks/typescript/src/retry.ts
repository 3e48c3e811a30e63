/** Pure decisions of the sender, the same as the Python SDK's (src/switchboard/client.py). */

/** What one HTTP answer means for the batch that was sent. */
export type Outcome =
  | "results" // 2xx or 422: the body holds a result per event
  | "retry" // 429, 5xx, no answer: send the same batch again later
  | "split" // 413 on a multi-event batch: the hub's limit is lower; send halves
  | "fail"; // any other status: the request itself is wrong; repeating cannot help

/** Map an HTTP status (undefined: no answer at all) to what the sender does next. */
export function classify(status: number | undefined, batchLength: number): Outcome {
  if (status === undefined || status === 429 || status >= 500) return "retry";
  if ((status >= 200 && status < 300) || status === 422) return "results";
  if (status === 413 && batchLength > 1) return "split";
  return "fail";
}

/**
 * Milliseconds to wait before retry number `attempt + 1` (attempt counts from 0).
 *
 * Exponential backoff with full jitter, uniform in [0, min(cap, base * 2^attempt)], so clients
 * recovering from one outage do not retry in lockstep. A server's Retry-After is a floor: the
 * hub asked us to stay away that long, so we do, even beyond `cap`.
 */
export function retryDelay(
  attempt: number,
  baseMs: number,
  capMs: number,
  retryAfterMs?: number,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 60));
  const delay = random() * ceiling;
  return retryAfterMs === undefined ? delay : Math.max(delay, retryAfterMs);
}

/** Retry-After in milliseconds; an HTTP-date or garbage is ignored (backoff applies instead). */
export function parseRetryAfter(value: string | null | undefined): number | undefined {
  if (value === null || value === undefined || value.trim() === "") return undefined;
  const seconds = Number(value);
  return Number.isFinite(seconds) && seconds >= 0 ? seconds * 1000 : undefined;
}
