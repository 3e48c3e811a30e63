/** Checks and encoding of what emit receives, apart from the client's queue and sender. */

import { ENVELOPE_FIELDS } from "./types.js";

/** UTF-8 length of a string without allocating its bytes. */
export function utf8Length(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      n += 4; // a surrogate pair is one 4-byte character
      i += 1;
    } else n += 3;
  }
  return n;
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "string" ? JSON.stringify(value.slice(0, 40)) : typeof value;
}

export function unknownFields(fields: Record<string, unknown>): string {
  const unknown = Object.keys(fields).filter((k) => !ENVELOPE_FIELDS.has(k));
  return unknown.length
    ? `unknown envelope field(s) ${unknown.sort().join(", ")}; known: ${[...ENVELOPE_FIELDS].sort().join(", ")}`
    : "";
}

/** A Date becomes ISO 8601 in UTC; no time at all becomes now (when it happened, not when sent). */
export function toTime(value: unknown): unknown {
  if (value === undefined || value === null) return new Date().toISOString();
  if (value instanceof Date) return value.toISOString();
  return value;
}

export function errorDetails(body: string): { path?: string; message?: string }[] {
  try {
    const doc: unknown = JSON.parse(body);
    const error = isPlainObject(doc) ? doc["error"] : undefined;
    const details = isPlainObject(error) ? error["details"] : undefined;
    return Array.isArray(details) ? (details as { path?: string; message?: string }[]) : [];
  } catch {
    return [];
  }
}
