// A timeline row: what the table and the drawer show of an event, kept lean (one object
// and its strings; the generated message has several nested objects per event, and a
// scrolled-through timeline holds 100,000s of rows for the garbage collector to walk).
// An event's fields are the flattened JSON object the server sends (attacker-controlled:
// only ever rendered as text), parsed when shown.

import type { TimelineDetection, TimelineEvent } from "../gen/casescope/cases/v1/cases_pb.js";

export interface Row {
  id: string;
  /** Unix microseconds (a number holds them exactly until the year 2255). */
  micros: number;
  code: number;
  computer: string;
  channel: string;
  provider: string;
  fieldsJson: string;
  tags: readonly string[];
  starred: boolean;
  detectionCount: number;
  iocMatchCount: number;
  commentCount: number;
  detections: readonly TimelineDetection[];
  /** The EVTX record number, as text; null when the event has none. */
  recordId: string | null;
}

const NONE: readonly never[] = Object.freeze([]);

export function rowOf(event: TimelineEvent): Row {
  return {
    id: event.eventId?.value ?? "",
    micros: Number(eventMicros(event)),
    code: event.eventCode,
    computer: event.computer,
    channel: event.channel,
    provider: event.provider,
    fieldsJson: event.fieldsJson,
    tags: event.tags.length ? event.tags : NONE,
    starred: event.starred,
    detectionCount: event.detectionCount,
    iocMatchCount: event.iocMatchCount,
    commentCount: event.commentCount,
    detections: event.detections.length ? event.detections : NONE,
    recordId: event.recordId === undefined ? null : event.recordId.toString(),
  };
}

export type Fields = Record<string, unknown>;

/** Parsed fields kept for the events rendered last (a few screens' worth): the rows
 *  scrolled past are not kept parsed — 100,000 parsed events would be millions of objects
 *  for the garbage collector to walk. */
const KEPT = 512;
const parsed = new Map<Row, Fields>();

export function fieldsOf(event: Row): Fields {
  let fields = parsed.get(event);
  if (!fields) {
    try {
      const value: unknown = JSON.parse(event.fieldsJson || "{}");
      fields = value && typeof value === "object" && !Array.isArray(value) ? (value as Fields) : {};
    } catch {
      fields = {};
    }
    if (parsed.size >= KEPT) {
      // The oldest entry (a Map iterates in insertion order).
      const oldest = parsed.keys().next();
      if (!oldest.done) parsed.delete(oldest.value);
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
