/** The pure parts: ids, the retry decisions, the answer classification. */

import assert from "node:assert/strict";
import { test } from "node:test";

import { classify, parseRetryAfter, retryDelay, uuidv7, uuidv7Time } from "../dist/index.js";

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

test("uuidv7 ids are version 7, RFC 9562 variant, and carry the time they were made", () => {
  const before = Date.now();
  const id = uuidv7();
  assert.match(id, UUID_V7);
  const ms = uuidv7Time(id)!;
  assert.ok(ms >= before && ms <= Date.now(), `${ms} not within the call`);
});

test("uuidv7 ids made in one millisecond, or with the clock stepping back, still increase", () => {
  const ids = Array.from({ length: 5000 }, () => uuidv7(1_700_000_000_000)); // one frozen ms
  ids.push(uuidv7(1_600_000_000_000)); // the clock stepped back
  for (let i = 1; i < ids.length; i++) assert.ok(ids[i - 1]! < ids[i]!, `${ids[i - 1]} !< ${ids[i]}`);
  assert.equal(new Set(ids).size, ids.length);
  ids.forEach((id) => assert.match(id, UUID_V7));
});

test("classify answers as the Python SDK does", () => {
  assert.equal(classify(undefined, 3), "retry");
  assert.equal(classify(429, 3), "retry");
  assert.equal(classify(503, 3), "retry");
  assert.equal(classify(202, 3), "results");
  assert.equal(classify(422, 3), "results");
  assert.equal(classify(413, 3), "split");
  assert.equal(classify(413, 1), "fail");
  assert.equal(classify(400, 3), "fail");
  assert.equal(classify(401, 3), "fail");
});

test("retryDelay is full jitter under the cap, and Retry-After is a floor beyond it", () => {
  assert.equal(retryDelay(0, 500, 30_000, undefined, () => 0.999), 0.999 * 500);
  assert.equal(retryDelay(3, 500, 30_000, undefined, () => 1), 4000);
  assert.equal(retryDelay(20, 500, 30_000, undefined, () => 1), 30_000);
  assert.equal(retryDelay(0, 500, 30_000, 45_000, () => 0.5), 45_000);
  assert.equal(retryDelay(4, 500, 30_000, 1_000, () => 0.5), 4000);
});

test("parseRetryAfter reads seconds and ignores dates and garbage", () => {
  assert.equal(parseRetryAfter("2"), 2000);
  assert.equal(parseRetryAfter("0.5"), 500);
  assert.equal(parseRetryAfter(null), undefined);
  assert.equal(parseRetryAfter(""), undefined);
  assert.equal(parseRetryAfter("-1"), undefined);
  assert.equal(parseRetryAfter("Wed, 21 Oct 2015 07:28:00 GMT"), undefined);
  assert.equal(parseRetryAfter("Infinity"), undefined);
});
