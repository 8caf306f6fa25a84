// The case timeline: a query (the event query language plus tag:, starred:, commented:)
// and filters, held in the page address; a histogram of the selection to brush-zoom; the
// events in a virtualised table that pages with the server's cursor; an event drawer;
// saved searches, history and export beside it.

import { useEffect, useRef, useState } from "preact/hooks";
import { Code, ConnectError } from "@connectrpc/connect";
import { client, errorText } from "../api.js";
import { visible } from "../text.js";
import { CasesService, type TimelineHistogramResponse } from "../gen/casescope/cases/v1/cases_pb.js";
import { rowOf, type Row } from "./fields.js";
import { EventDrawer } from "./drawer.js";
import { Histogram } from "./histogram.js";
import {
  errorPosition,
  formatMicros,
  inputToMicros,
  microsToInput,
  parseSelection,
  timelineHref,
  toQuery,
  withClause,
  type Selection,
} from "./query.js";
import { SearchesPanel } from "./searches.js";
import { fieldColumn, STANDARD_COLUMNS, TimelineTable, type Column } from "./table.js";

/** Events per page (the server's maximum). */
const PAGE = 1000;
/** Rows kept loaded at most; past it the table says to narrow the selection or export. */
export const MAX_ROWS = 200_000;
const HISTOGRAM_BUCKETS = 120;
const COLUMNS_KEY = "casescope.timeline.columns";

interface Results {
  /** The selection these rows are of. */
  key: string;
  rows: Row[];
  total: bigint;
  lowerBound: boolean;
  next: string;
}

function savedColumns(): Column[] {
  try {
    const ids: unknown = JSON.parse(localStorage.getItem(COLUMNS_KEY) ?? "null");
    if (Array.isArray(ids) && ids.every((id) => typeof id === "string") && ids.length > 0) {
      return ids.map(
        (id: string) => STANDARD_COLUMNS.find((c) => c.id === id) ?? fieldColumn(id.replace(/^field:/, "")),
      );
    }
  } catch {
    // A bad stored value: the default columns.
  }
  return STANDARD_COLUMNS;
}

function navigate(caseId: string, selection: Selection) {
  window.location.hash = timelineHref(caseId, selection);
}

export function Timeline({ caseId, search }: { caseId: string; search: string }) {
  const selection = parseSelection(search);
  const key = JSON.stringify(selection, (_, v) => (typeof v === "bigint" ? v.toString() : v));
  const [text, setText] = useState(selection.q);
  const [stored, setResults] = useState<Results | null>(null);
  const [loading, setLoading] = useState(false);
  const [failed, setError] = useState<{ key: string; message: string; position: number | null } | null>(null);
  // Until the effect below starts the new search, what is stored is the previous one's.
  const results = stored?.key === key ? stored : null;
  const error = failed?.key === key ? failed : null;
  const [histogram, setHistogram] = useState<TimelineHistogramResponse | string | null>(null);
  const [open, setOpen] = useState<{ event: Row; index: number | null } | null>(null);
  const [columns, setColumns] = useState<Column[]>(savedColumns);
  const [searched, setSearched] = useState(0);
  const generation = useRef(0);
  const requested = useRef("");
  const input = useRef<HTMLInputElement>(null);

  const fetchPage = async (cursor: string, gen: number) => {
    const pageKey = key;
    if (cursor) {
      // The table may ask again before the answer came: one request per cursor.
      if (requested.current === cursor) return;
      requested.current = cursor;
    }
    setLoading(true);
    try {
      const answer = await client(CasesService).searchTimeline({
        caseId: { value: caseId },
        query: toQuery(selection),
        page: { pageSize: PAGE, cursor },
      });
      if (gen !== generation.current) return;
      setResults((previous) => {
        // A page is appended once, after the page whose cursor it was asked with.
        if (cursor && (!previous || previous.key !== pageKey || previous.next !== cursor)) return previous;
        const page = answer.events.map(rowOf);
        const rows = cursor && previous ? previous.rows.concat(page) : page;
        return {
          key: pageKey,
          rows,
          total: answer.totalHits,
          lowerBound: answer.totalHitsIsLowerBound,
          next: rows.length >= MAX_ROWS ? "" : (answer.page?.nextCursor ?? ""),
        };
      });
      if (!cursor) setSearched((n) => n + 1);
    } catch (failure) {
      if (gen !== generation.current) return;
      const message = errorText(failure);
      const invalid = ConnectError.from(failure).code === Code.InvalidArgument;
      setError({ key: pageKey, message, position: invalid ? errorPosition(message) : null });
    } finally {
      if (gen === generation.current) setLoading(false);
    }
  };

  useEffect(() => {
    const gen = ++generation.current;
    setText(selection.q);
    setResults(null);
    setError(null);
    setOpen(null);
    setHistogram(null);
    void fetchPage("", gen);
    client(CasesService)
      .timelineHistogram({ caseId: { value: caseId }, query: toQuery(selection), maxBuckets: HISTOGRAM_BUCKETS })
      .then(
        (answer) => gen === generation.current && setHistogram(answer),
        (failure) => gen === generation.current && setHistogram(errorText(failure)),
      );
  }, [caseId, key]);

  const set = (change: Partial<Selection>) => navigate(caseId, { ...selection, ...change });
  const submit = (e: Event) => {
    e.preventDefault();
    if (text === selection.q) {
      // The same search again: run it again (new events may have arrived).
      generation.current++;
      const gen = generation.current;
      setResults(null);
      setError(null);
      void fetchPage("", gen);
    } else {
      set({ q: text });
    }
  };
  const closeDrawer = () => {
    const index = open?.index;
    setOpen(null);
    if (index !== null && index !== undefined) {
      requestAnimationFrame(() =>
        document.querySelector<HTMLElement>(`.vtable [role=row][data-index="${index}"]`)?.focus(),
      );
    }
  };
  const changed = (event: Row) => {
    setOpen((o) => (o ? { ...o, event } : o));
    setResults((r) => {
      if (!r) return r;
      const at = r.rows.findIndex((x) => x.id === event.id);
      if (at < 0) return r;
      const rows = r.rows.slice();
      rows[at] = event;
      return { ...r, rows };
    });
  };
  const chooseColumns = (next: Column[]) => {
    setColumns(next);
    localStorage.setItem(COLUMNS_KEY, JSON.stringify(next.map((c) => c.id)));
  };

  return (
    <section aria-labelledby="timeline-title" class="timeline-screen">
      <p>
        <a href="#/cases">Cases</a> › <a href={`#/cases/${caseId}`}>Case overview</a>
      </p>
      <h1 id="timeline-title">Timeline</h1>
      <form class="query" onSubmit={submit} role="search" aria-label="Search the timeline">
        <label class="grow">
          Query
          <input
            ref={input}
            type="search"
            class="mono"
            value={text}
            spellcheck={false}
            placeholder='e.g. EventID:4624 AND -TargetUserName:"SYSTEM" tag:lateral-movement'
            aria-invalid={error?.position !== null && error?.position !== undefined}
            aria-describedby={error ? "query-error" : undefined}
            onInput={(e) => setText(e.currentTarget.value)}
          />
        </label>
        <button type="submit">Search</button>
      </form>
      {error && <QueryError message={error.message} position={error.position} query={selection.q} onFocus={(at) => {
        input.current?.focus();
        input.current?.setSelectionRange(at, at + 1);
      }} />}
      <Filters selection={selection} set={set} />
      <details class="more">
        <summary>Saved searches, history and export</summary>
        <SearchesPanel caseId={caseId} selection={selection} searched={searched} />
      </details>
      <details class="more">
        <summary>Columns</summary>
        <ColumnChooser columns={columns} onChange={chooseColumns} />
      </details>
      {typeof histogram === "string" && <p class="error">Histogram: {histogram}</p>}
      {histogram && typeof histogram === "object" && (
        <Histogram histogram={histogram} onZoom={(from, to) => set({ from, to })} />
      )}
      <p
        class="status"
        role="status"
        aria-live="polite"
        id="timeline-count"
        // The address part the count is of (tests wait for it to match the address).
        data-search={results ? search : undefined}
      >
        {results === null
          ? error
            ? ""
            : "Searching…"
          : results.total === 0n
            ? "No event matches."
            : `${results.lowerBound ? "At least " : ""}${results.total.toLocaleString()} ${results.total === 1n ? "event" : "events"}${
                results.rows.length < Number(results.total) ? ` (${results.rows.length.toLocaleString()} loaded)` : ""
              }`}
        {results && results.rows.length >= MAX_ROWS && ` Only the first ${MAX_ROWS.toLocaleString()} are listed: narrow the selection or export it.`}
      </p>
      {results && error && results.next && (
        <button
          type="button"
          onClick={() => {
            // A page that failed is asked for again only when the analyst says so.
            requested.current = "";
            setError(null);
            void fetchPage(results.next, generation.current);
          }}
        >
          Load the next page again
        </button>
      )}
      <div class={open ? "split open" : "split"}>
        {results && results.rows.length > 0 && (
          <TimelineTable
            rows={results.rows}
            columns={columns}
            more={results.next !== ""}
            loading={loading}
            loadMore={() => results.next && void fetchPage(results.next, generation.current)}
            onOpen={(index) => {
              const event = results.rows[index];
              if (event) setOpen({ event, index });
            }}
            openIndex={open?.index ?? null}
          />
        )}
        {open && (
          <EventDrawer
            caseId={caseId}
            event={open.event}
            onClose={closeDrawer}
            onFilter={(field, value, exclude) => set({ q: withClause(selection.q, field, value, exclude) })}
            onChanged={changed}
            onOpen={(event) => setOpen({ event, index: null })}
            ruleHref={(rule) => timelineHref(caseId, { rules: [rule] })}
          />
        )}
      </div>
    </section>
  );
}

function QueryError({
  message,
  position,
  query,
  onFocus,
}: {
  message: string;
  position: number | null;
  query: string;
  onFocus: (at: number) => void;
}) {
  const chars = Array.from(query);
  if (position === null || position > chars.length) {
    return (
      <p class="error" role="alert" id="query-error">
        {message}
      </p>
    );
  }
  // The input counts UTF-16 units; the server counts characters.
  const unit = chars.slice(0, position).join("").length;
  return (
    <div class="error" role="alert" id="query-error">
      <p>{message}</p>
      <pre class="caret mono" aria-label={`The error is at character ${position + 1}`}>
        {visible(chars.slice(0, position).join(""))}
        <mark>{visible(chars[position] ?? " ")}</mark>
        {visible(chars.slice(position + 1).join(""))}
      </pre>
      <button type="button" class="link" onClick={() => onFocus(unit)}>
        Go to the error
      </button>
    </div>
  );
}

function Filters({ selection, set }: { selection: Selection; set: (change: Partial<Selection>) => void }) {
  const chips: { label: string; clear: Partial<Selection> }[] = [];
  for (const level of selection.levels) {
    chips.push({ label: `level: ${level}`, clear: { levels: selection.levels.filter((l) => l !== level) } });
  }
  for (const tactic of selection.tactics) {
    chips.push({ label: `tactic: ${tactic}`, clear: { tactics: selection.tactics.filter((t) => t !== tactic) } });
  }
  for (const rule of selection.rules) {
    chips.push({ label: `rule: ${rule}`, clear: { rules: selection.rules.filter((r) => r !== rule) } });
  }
  for (const tag of selection.tags) {
    chips.push({ label: `tag: ${tag}`, clear: { tags: selection.tags.filter((t) => t !== tag) } });
  }
  return (
    <div class="filters wrap">
      <label>
        From (UTC)
        <input
          type="datetime-local"
          step={1}
          value={microsToInput(selection.from)}
          onChange={(e) => set({ from: inputToMicros(e.currentTarget.value) })}
        />
      </label>
      <label>
        To (UTC)
        <input
          type="datetime-local"
          step={1}
          value={microsToInput(selection.to)}
          onChange={(e) => set({ to: inputToMicros(e.currentTarget.value) })}
        />
      </label>
      {(selection.from !== null || selection.to !== null) && (
        <button type="button" class="link" onClick={() => set({ from: null, to: null })}>
          Whole time range
        </button>
      )}
      <label class="check">
        <input type="checkbox" checked={selection.detections} onChange={(e) => set({ detections: e.currentTarget.checked })} />
        With detections
      </label>
      <label class="check">
        <input type="checkbox" checked={selection.starred} onChange={(e) => set({ starred: e.currentTarget.checked })} />
        Starred
      </label>
      <label class="check">
        <input type="checkbox" checked={selection.commented} onChange={(e) => set({ commented: e.currentTarget.checked })} />
        Commented
      </label>
      <label class="check">
        <input type="checkbox" checked={selection.newestFirst} onChange={(e) => set({ newestFirst: e.currentTarget.checked })} />
        Newest first
      </label>
      {chips.length > 0 && (
        <ul class="tags" aria-label="Filters">
          {chips.map((chip) => (
            <li key={chip.label} class="chip">
              {visible(chip.label)}
              <button type="button" class="small" aria-label={`Remove filter ${chip.label}`} onClick={() => set(chip.clear)}>
                ×
              </button>
            </li>
          ))}
        </ul>
      )}
      {(selection.from !== null || selection.to !== null) && (
        <span class="status">
          {selection.from !== null ? formatMicros(selection.from) : "…"} – {selection.to !== null ? formatMicros(selection.to) : "…"}
        </span>
      )}
    </div>
  );
}

function ColumnChooser({ columns, onChange }: { columns: Column[]; onChange: (next: Column[]) => void }) {
  const [field, setField] = useState("");
  const shown = new Set(columns.map((c) => c.id));
  const extra = columns.filter((c) => c.id.startsWith("field:"));
  return (
    <div class="filters wrap">
      {STANDARD_COLUMNS.map((c) => (
        <label class="check" key={c.id}>
          <input
            type="checkbox"
            checked={shown.has(c.id)}
            onChange={(e) =>
              onChange(
                e.currentTarget.checked
                  ? STANDARD_COLUMNS.filter((s) => shown.has(s.id) || s.id === c.id).concat(extra)
                  : columns.filter((x) => x.id !== c.id),
              )
            }
          />
          {c.label}
        </label>
      ))}
      {extra.map((c) => (
        <span class="chip" key={c.id}>
          {visible(c.label)}
          <button type="button" class="small" aria-label={`Remove column ${c.label}`} onClick={() => onChange(columns.filter((x) => x.id !== c.id))}>
            ×
          </button>
        </span>
      ))}
      <form
        class="inline"
        aria-label="Add a field column"
        onSubmit={(e) => {
          e.preventDefault();
          const name = field.trim();
          if (name && !shown.has(`field:${name}`)) onChange([...columns, fieldColumn(name)]);
          setField("");
        }}
      >
        <label>
          Field column
          <input value={field} placeholder="e.g. TargetUserName" onInput={(e) => setField(e.currentTarget.value)} />
        </label>
        <button type="submit">Add column</button>
      </form>
    </div>
  );
}
