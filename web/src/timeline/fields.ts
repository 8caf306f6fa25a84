// An event's fields: the flattened JSON object the server sends (attacker-controlled:
// only ever rendered as text), parsed once per event.

import type { TimelineEvent } from "../gen/casescope/cases/v1/cases_pb.js";

export type Fields = Record<string, unknown>;

const parsed = new WeakMap<TimelineEvent, Fields>();

export function fieldsOf(event: TimelineEvent): Fields {
  let fields = parsed.get(event);
  if (!fields) {
    try {
      const value: unknown = JSON.parse(event.fieldsJson || "{}");
      fields = value && typeof value === "object" && !Array.isArray(value) ? (value as Fields) : {};
    } catch {
      fields = {};
    }
    parsed.set(event, fields);
  }
  return fields;
}

/** A field value as text: strings as they are, anything else as JSON. */
export function fieldText(value: unknown): string {
  if (typeof value === "string") return value;
  if (value === null || value === undefined) return "";
  return JSON.stringify(value);
}

/** The event's time in Unix microseconds. */
export function eventMicros(event: TimelineEvent): bigint {
  const ts = event.timestamp;
  if (!ts) return 0n;
  return ts.seconds * 1_000_000n + BigInt(Math.trunc(ts.nanos / 1000));
}
