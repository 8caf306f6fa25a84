// The timeline's selection as the page address holds it (`#/cases/<id>/timeline?…`), so
// a search can be reloaded, bookmarked, shared and opened from other screens (a detection
// level, a tag), and as the TimelineQuery the server takes.

import type { MessageInitShape } from "@bufbuild/protobuf";
import { SortOrder } from "../gen/casescope/common/v1/common_pb.js";
import type { TimelineQuerySchema, TimelineQuery } from "../gen/casescope/cases/v1/cases_pb.js";

export interface Selection {
  /** The query string (event query language plus tag:, starred:, commented:). */
  q: string;
  /** Inclusive start and exclusive end, Unix microseconds; null = open. */
  from: bigint | null;
  to: bigint | null;
  levels: string[];
  tactics: string[];
  rules: string[];
  tags: string[];
  detections: boolean;
  starred: boolean;
  commented: boolean;
  newestFirst: boolean;
}

export const EMPTY: Selection = {
  q: "",
  from: null,
  to: null,
  levels: [],
  tactics: [],
  rules: [],
  tags: [],
  detections: false,
  starred: false,
  commented: false,
  newestFirst: false,
};

function micros(text: string | null): bigint | null {
  if (!text || !/^-?\d{1,19}$/.test(text)) return null;
  return BigInt(text);
}

/** The selection a `?…` address part names (unknown keys are ignored). */
export function parseSelection(search: string): Selection {
  const params = new URLSearchParams(search);
  return {
    q: params.get("q") ?? "",
    from: micros(params.get("from")),
    to: micros(params.get("to")),
    levels: params.getAll("level"),
    tactics: params.getAll("tactic"),
    rules: params.getAll("rule"),
    tags: params.getAll("tag"),
    detections: params.get("detections") === "1",
    starred: params.get("starred") === "1",
    commented: params.get("commented") === "1",
    newestFirst: params.get("order") === "desc",
  };
}

/** The address of the timeline of `caseId` showing `selection`. */
export function timelineHref(caseId: string, selection: Partial<Selection>): string {
  const s = { ...EMPTY, ...selection };
  const params = new URLSearchParams();
  if (s.q) params.set("q", s.q);
  if (s.from !== null) params.set("from", s.from.toString());
  if (s.to !== null) params.set("to", s.to.toString());
  for (const level of s.levels) params.append("level", level);
  for (const tactic of s.tactics) params.append("tactic", tactic);
  for (const rule of s.rules) params.append("rule", rule);
  for (const tag of s.tags) params.append("tag", tag);
  if (s.detections) params.set("detections", "1");
  if (s.starred) params.set("starred", "1");
  if (s.commented) params.set("commented", "1");
  if (s.newestFirst) params.set("order", "desc");
  const text = params.toString();
  return `#/cases/${caseId}/timeline${text ? `?${text}` : ""}`;
}

/** The selection as the server's TimelineQuery. */
export function toQuery(s: Selection): MessageInitShape<typeof TimelineQuerySchema> {
  return {
    query: s.q,
    timeRange: {
      ...(s.from !== null ? { startUnixMicros: s.from } : {}),
      ...(s.to !== null ? { endUnixMicros: s.to } : {}),
    },
    detectionLevels: s.levels,
    detectionTactics: s.tactics,
    detectionRuleIds: s.rules.map((value) => ({ value })),
    tags: s.tags,
    onlyWithDetections: s.detections,
    onlyStarred: s.starred,
    onlyCommented: s.commented,
    sort: s.newestFirst ? SortOrder.DESCENDING : SortOrder.ASCENDING,
  };
}

/** A saved or past search's query as a selection. */
export function fromQuery(query: TimelineQuery | undefined): Selection {
  if (!query) return EMPTY;
  return {
    q: query.query,
    from: query.timeRange?.startUnixMicros ?? null,
    to: query.timeRange?.endUnixMicros ?? null,
    levels: [...query.detectionLevels],
    tactics: [...query.detectionTactics],
    rules: query.detectionRuleIds.map((r) => r.value),
    tags: [...query.tags],
    detections: query.onlyWithDetections,
    starred: query.onlyStarred,
    commented: query.onlyCommented,
    newestFirst: query.sort === SortOrder.DESCENDING,
  };
}

/** A one-line account of a selection (history, saved searches). */
export function describe(s: Selection): string {
  const parts: string[] = [];
  parts.push(s.q ? s.q : "every event");
  if (s.from !== null || s.to !== null) {
    parts.push(`${s.from !== null ? formatMicros(s.from) : "…"} – ${s.to !== null ? formatMicros(s.to) : "…"}`);
  }
  if (s.levels.length) parts.push(`level ${s.levels.join("/")}`);
  if (s.tactics.length) parts.push(`tactic ${s.tactics.join("/")}`);
  if (s.rules.length) parts.push(`${s.rules.length} rule(s)`);
  if (s.tags.length) parts.push(`tag ${s.tags.join("/")}`);
  if (s.detections) parts.push("with detections");
  if (s.starred) parts.push("starred");
  if (s.commented) parts.push("commented");
  return parts.join(" · ");
}

/** `value` as a query-language term: quoted, with `"` and `\` escaped. */
export function quote(value: string): string {
  return `"${value.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/** The query narrowed to events whose `field` is (or, `exclude`, is not) `value`. */
export function withClause(q: string, field: string, value: string, exclude: boolean): string {
  const clause = `${exclude ? "-" : ""}${field}:${quote(value)}`;
  const base = q.trim();
  if (!base) return clause;
  return /\s(OR|or)\s/.test(base) ? `(${base}) ${clause}` : `${base} ${clause}`;
}

/** The character a syntax error points at, from the server's message. */
export function errorPosition(message: string): number | null {
  const match = /query error at character (\d+)/.exec(message);
  return match?.[1] ? Number(match[1]) : null;
}

/** UTC, to the millisecond: `2024-01-02 03:04:05.678`. */
export function formatMicros(value: bigint | number): string {
  const ms = typeof value === "bigint" ? Number(value / 1000n) : Math.floor(value / 1000);
  if (!Number.isFinite(ms)) return value.toString();
  const date = new Date(ms);
  if (Number.isNaN(date.getTime())) return value.toString();
  return date.toISOString().replace("T", " ").replace("Z", "");
}

/** An `<input type="datetime-local">` value (read as UTC) as Unix microseconds. */
export function inputToMicros(value: string): bigint | null {
  if (!value) return null;
  const ms = Date.parse(`${value}Z`);
  return Number.isNaN(ms) ? null : BigInt(ms) * 1000n;
}

export function microsToInput(value: bigint | null): string {
  if (value === null) return "";
  const date = new Date(Number(value / 1000n));
  return Number.isNaN(date.getTime()) ? "" : date.toISOString().slice(0, 19);
}
