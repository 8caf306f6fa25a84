// Beside the timeline: saved searches (private or shared with the case), the user's
// search history, and the export of the whole selection (streamed from the server; no
// row cap).

import { useEffect, useRef, useState } from "preact/hooks";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { client, errorText } from "../api.js";
import { visible } from "../text.js";
import {
  CasesService,
  ExportFormat,
  type SavedSearch,
  type SearchHistoryEntry,
} from "../gen/casescope/cases/v1/cases_pb.js";
import { describe, fromQuery, timelineHref, toQuery, type Selection } from "./query.js";
import { Alert } from "../ui.js";

const HISTORY_SHOWN = 20;
const SAVED_SHOWN = 200;
/** An export may take this long (the server streams it; this is the browser's limit). */
const EXPORT_TIMEOUT_MS = 6 * 60 * 60 * 1000;

function when(ts: { seconds: bigint; nanos: number } | undefined): string {
  return ts ? new Date(timestampMs(ts as never)).toISOString().slice(0, 16).replace("T", " ") : "";
}

export function SearchesPanel({ caseId, selection, searched }: { caseId: string; selection: Selection; searched: number }) {
  const [saved, setSaved] = useState<SavedSearch[] | string | null>(null);
  const [history, setHistory] = useState<SearchHistoryEntry[] | string | null>(null);
  const [reload, setReload] = useState(0);
  const caseRef = { value: caseId };

  useEffect(() => {
    let live = true;
    client(CasesService)
      .listSavedSearches({ caseId: caseRef, page: { pageSize: SAVED_SHOWN } })
      .then(
        (a) => live && setSaved(a.searches),
        (e) => live && setSaved(errorText(e)),
      );
    return () => {
      live = false;
    };
  }, [caseId, reload]);
  useEffect(() => {
    let live = true;
    client(CasesService)
      .listSearchHistory({ caseId: caseRef, page: { pageSize: HISTORY_SHOWN } })
      .then(
        (a) => live && setHistory(a.entries),
        (e) => live && setHistory(errorText(e)),
      );
    return () => {
      live = false;
    };
  }, [caseId, searched]);

  return (
    <div class="side">
      <SaveForm caseId={caseId} selection={selection} onSaved={() => setReload((n) => n + 1)} />
      <section aria-labelledby="saved-title">
        <h2 id="saved-title">Saved searches</h2>
        {saved === null && <p class="status">Loading…</p>}
        {typeof saved === "string" && <p class="error">{saved}</p>}
        {Array.isArray(saved) && saved.length === 0 && <p class="status">None yet.</p>}
        {Array.isArray(saved) && saved.length > 0 && (
          <ul class="plain searches">
            {saved.map((s) => (
              <li key={s.id?.value}>
                <a href={timelineHref(caseId, fromQuery(s.query))} title={describe(fromQuery(s.query))}>
                  {visible(s.name)}
                </a>
                <span class="status">
                  {" "}
                  · {s.shared ? "shared" : "private"} · {visible(s.ownerName)}
                </span>{" "}
                <DeleteSaved caseId={caseId} search={s} onDeleted={() => setReload((n) => n + 1)} />
              </li>
            ))}
          </ul>
        )}
      </section>
      <section aria-labelledby="history-title">
        <h2 id="history-title">History</h2>
        {history === null && <p class="status">Loading…</p>}
        {typeof history === "string" && <p class="error">{history}</p>}
        {Array.isArray(history) && history.length === 0 && <p class="status">No search yet.</p>}
        {Array.isArray(history) && history.length > 0 && (
          <ol class="plain searches">
            {history.map((h, i) => (
              <li key={i}>
                <a href={timelineHref(caseId, fromQuery(h.query))}>{visible(describe(fromQuery(h.query)))}</a>
                <span class="status">
                  {" "}
                  · {h.hitCount.toLocaleString()} hits · {when(h.searchedAt)}
                  {h.repeats > 1 && ` · ×${h.repeats}`}
                </span>
              </li>
            ))}
          </ol>
        )}
      </section>
      <Export caseId={caseId} selection={selection} />
    </div>
  );
}

function SaveForm({ caseId, selection, onSaved }: { caseId: string; selection: Selection; onSaved: () => void }) {
  const [name, setName] = useState("");
  const [shared, setShared] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [done, setDone] = useState<string | null>(null);
  const submit = async (e: Event) => {
    e.preventDefault();
    setError(null);
    setDone(null);
    try {
      const saved = await client(CasesService).saveSearch({
        caseId: { value: caseId },
        name,
        query: toQuery(selection),
        shared,
      });
      setDone(`Saved as “${saved.name}”.`);
      setName("");
      onSaved();
    } catch (failure) {
      setError(errorText(failure));
    }
  };
  return (
    <form onSubmit={submit} aria-label="Save this search">
      <label>
        Save this search as
        <input value={name} maxLength={200} required onInput={(e) => setName(e.currentTarget.value)} />
      </label>
      <label class="check">
        <input type="checkbox" checked={shared} onChange={(e) => setShared(e.currentTarget.checked)} />
        Shared with the case
      </label>
      <button type="submit">Save</button>
      <Alert message={error} />
      {done && (
        <p class="status" role="status">
          {visible(done)}
        </p>
      )}
    </form>
  );
}

function DeleteSaved({ caseId, search, onDeleted }: { caseId: string; search: SavedSearch; onDeleted: () => void }) {
  const [error, setError] = useState<string | null>(null);
  return (
    <>
      <button
        type="button"
        class="link small"
        aria-label={`Delete saved search ${search.name}`}
        onClick={async () => {
          try {
            await client(CasesService).deleteSavedSearch({ caseId: { value: caseId }, id: search.id });
            onDeleted();
          } catch (failure) {
            setError(errorText(failure));
          }
        }}
      >
        Delete
      </button>
      {error && <span class="error"> {error}</span>}
    </>
  );
}

const FORMATS: { format: ExportFormat; label: string; ext: string; type: string }[] = [
  { format: ExportFormat.CSV, label: "CSV", ext: "csv", type: "text/csv" },
  { format: ExportFormat.JSONL, label: "JSON lines", ext: "jsonl", type: "application/x-ndjson" },
  { format: ExportFormat.TIMESKETCH, label: "Timesketch JSONL", ext: "timesketch.jsonl", type: "application/x-ndjson" },
];

/** The whole selection, streamed into a file the browser saves (parts kept as Blobs,
 *  which the browser may keep on disk; nothing is built as one string). */
function Export({ caseId, selection }: { caseId: string; selection: Selection }) {
  const [format, setFormat] = useState(0);
  const [progress, setProgress] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const running = useRef<AbortController | null>(null);
  const start = async () => {
    const chosen = FORMATS[format] ?? FORMATS[0]!;
    const abort = new AbortController();
    running.current = abort;
    setError(null);
    setProgress("Starting…");
    const parts: Blob[] = [];
    let total = 0n;
    try {
      const stream = client(CasesService).exportTimeline(
        { caseId: { value: caseId }, query: toQuery(selection), format: chosen.format },
        { signal: abort.signal, timeoutMs: EXPORT_TIMEOUT_MS },
      );
      for await (const chunk of stream) {
        if (chunk.total > 0n) total = chunk.total;
        parts.push(new Blob([chunk.data as Uint8Array<ArrayBuffer>]));
        setProgress(`${chunk.rows.toLocaleString()}${total > 0n ? ` of ${total.toLocaleString()}` : ""} rows…`);
      }
      const url = URL.createObjectURL(new Blob(parts, { type: chosen.type }));
      const link = document.createElement("a");
      link.href = url;
      link.download = `casescope-${caseId}-timeline.${chosen.ext}`;
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
      setProgress(`Exported ${parts.length === 0 ? "no rows" : "the selection"}${total > 0n ? ` (${total.toLocaleString()} rows)` : ""}.`);
    } catch (failure) {
      setProgress(null);
      setError(abort.signal.aborted ? "Export cancelled." : errorText(failure));
    } finally {
      running.current = null;
    }
  };
  return (
    <section aria-labelledby="export-title">
      <h2 id="export-title">Export</h2>
      <div class="row">
        <label>
          Format
          <select value={format} onChange={(e) => setFormat(Number(e.currentTarget.value))}>
            {FORMATS.map((f, i) => (
              <option key={f.ext} value={i}>
                {f.label}
              </option>
            ))}
          </select>
        </label>
        {running.current ? (
          <button type="button" onClick={() => running.current?.abort()}>
            Cancel export
          </button>
        ) : (
          <button type="button" onClick={() => void start()}>
            Export this selection
          </button>
        )}
      </div>
      {progress && (
        <p class="status" role="status">
          {progress}
        </p>
      )}
      <Alert message={error} />
    </section>
  );
}
