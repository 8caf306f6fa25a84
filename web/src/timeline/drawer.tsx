// One event in full: every field (copy, filter for, filter out), its detections, the raw
// record, the events around it, and its annotations — star, tags and comments. Every
// value is evidence (attacker-controlled) and is only ever rendered as text.

import { useEffect, useRef, useState } from "preact/hooks";
import { client, errorText } from "../api.js";
import { visible } from "../text.js";
import {
  CasesService,
  type GetEventContextResponse,
  type TimelineEvent,
} from "../gen/casescope/cases/v1/cases_pb.js";
import { fieldsOf, fieldText, rowOf, type Row } from "./fields.js";
import { formatMicros } from "./query.js";
import { Comments } from "./comments.js";
import { copy } from "../clipboard.js";
import { Alert, Head } from "../ui.js";

/** Events shown before and after the open one. */
const CONTEXT_EVENTS = 5;

function CopyButton({ text, label }: { text: string; label: string }) {
  const [done, setDone] = useState<string | null>(null);
  return (
    <button
      type="button"
      class="small"
      aria-label={label}
      onClick={() =>
        copy(text).then(
          () => setDone("Copied"),
          (e) => setDone(`Not copied: ${errorText(e)}`),
        )
      }
    >
      {done ?? "Copy"}
    </button>
  );
}

export interface DrawerProps {
  caseId: string;
  event: Row;
  onClose: () => void;
  onFilter: (field: string, value: string, exclude: boolean) => void;
  /** The event's annotations changed: the row shows them too. */
  onChanged: (event: Row) => void;
  onOpen: (event: Row) => void;
  ruleHref: (ruleId: string) => string;
}

export function EventDrawer({ caseId, event, onClose, onFilter, onChanged, onOpen, ruleHref }: DrawerProps) {
  const heading = useRef<HTMLHeadingElement>(null);
  const eventId = event.id;
  const [context, setContext] = useState<GetEventContextResponse | string | null>(null);
  const [sameHost, setSameHost] = useState(false);

  useEffect(() => {
    heading.current?.focus();
  }, [eventId]);

  useEffect(() => {
    let live = true;
    setContext(null);
    client(CasesService)
      .getEventContext({
        caseId: { value: caseId },
        eventId: { value: eventId },
        events: CONTEXT_EVENTS,
        sameHost,
        includeRaw: true,
      })
      .then(
        (answer) => live && setContext(answer),
        (failure) => live && setContext(errorText(failure)),
      );
    return () => {
      live = false;
    };
  }, [caseId, eventId, sameHost]);

  const fields = Object.entries(fieldsOf(event));
  const raw = typeof context === "object" && context?.event ? context.event.rawJson : "";
  return (
    <aside
      class="drawer"
      aria-labelledby="drawer-title"
      onKeyDown={(e) => {
        if (e.key === "Escape") {
          e.preventDefault();
          onClose();
        }
      }}
    >
      <div class="drawer-head">
        <h2 id="drawer-title" tabIndex={-1} ref={heading}>
          Event {event.code ? event.code : ""} at {formatMicros(event.micros)}
        </h2>
        <button type="button" onClick={onClose}>
          Close
        </button>
      </div>
      <p class="status">
        {visible(event.computer)} · {visible(event.channel)} · {visible(event.provider)}
        {event.recordId !== null && ` · record ${event.recordId}`}
      </p>
      <Annotations caseId={caseId} event={event} onChanged={onChanged} />

      {event.detections.length > 0 && (
        <section aria-labelledby="drawer-detections">
          <h3 id="drawer-detections">Detections ({event.detectionCount})</h3>
          <ul class="plain">
            {event.detections.map((d) => (
              <li key={d.id?.value}>
                <span class={`badge level-${d.level}`}>{d.level}</span>{" "}
                <a href={ruleHref(d.ruleId?.value ?? "")}>{visible(d.ruleTitle)}</a>
                {d.tactics.length > 0 && <span class="status"> · {d.tactics.map(visible).join(", ")}</span>}
              </li>
            ))}
          </ul>
        </section>
      )}

      <section aria-labelledby="drawer-fields">
        <h3 id="drawer-fields">Fields ({fields.length})</h3>
        <table class="grid fields">
          <Head columns={["Field", "Value", "Actions"]} />
          <tbody>
            {fields.map(([name, value]) => {
              const text = fieldText(value);
              return (
                <tr key={name}>
                  <th scope="row" class="mono">
                    {visible(name)}
                  </th>
                  <td class="mono value">{visible(text)}</td>
                  <td class="actions">
                    <CopyButton text={text} label={`Copy ${name}`} />
                    <button type="button" class="small" aria-label={`Filter for ${name}`} onClick={() => onFilter(name, text, false)}>
                      +
                    </button>
                    <button type="button" class="small" aria-label={`Filter out ${name}`} onClick={() => onFilter(name, text, true)}>
                      −
                    </button>
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </section>

      <Comments caseId={caseId} eventId={eventId} onCount={(n) => n !== event.commentCount && onChanged({ ...event, commentCount: n })} />

      <section aria-labelledby="drawer-context">
        <h3 id="drawer-context">Around this event</h3>
        <label class="check">
          <input type="checkbox" checked={sameHost} onChange={(e) => setSameHost(e.currentTarget.checked)} />
          Same computer only
        </label>
        {context === null && <p class="status">Loading…</p>}
        {typeof context === "string" && (
          <p class="error" role="alert">
            {context}
          </p>
        )}
        {typeof context === "object" && context && (
          <ol class="context">
            {context.moreBefore && <li class="status">… earlier events</li>}
            {context.before.map((e) => (
              <ContextRow key={e.eventId?.value} event={e} onOpen={onOpen} />
            ))}
            <li class="current">
              {formatMicros(event.micros)} · {event.code} · this event
            </li>
            {context.after.map((e) => (
              <ContextRow key={e.eventId?.value} event={e} onOpen={onOpen} />
            ))}
            {context.moreAfter && <li class="status">… later events</li>}
          </ol>
        )}
      </section>

      <section aria-labelledby="drawer-raw">
        <h3 id="drawer-raw">Raw record</h3>
        {raw ? (
          <>
            <CopyButton text={raw} label="Copy the raw record" />
            <pre class="raw" tabIndex={0} aria-label="Raw record">
              {visible(raw)}
            </pre>
          </>
        ) : (
          <p class="status">{context === null ? "Loading…" : "No raw record is kept for this event."}</p>
        )}
      </section>
    </aside>
  );
}

function ContextRow({ event, onOpen }: { event: TimelineEvent; onOpen: (event: Row) => void }) {
  return (
    <li>
      <button type="button" class="link" onClick={() => onOpen(rowOf(event))}>
        {formatMicros(rowOf(event).micros)} · {event.eventCode} · {visible(event.computer)}
      </button>
    </li>
  );
}

function Annotations({
  caseId,
  event,
  onChanged,
}: {
  caseId: string;
  event: Row;
  onChanged: (event: Row) => void;
}) {
  const [tag, setTag] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const ids = [{ value: event.id }];
  const caseRef = { value: caseId };

  const run = async (action: () => Promise<Partial<Row>>) => {
    setBusy(true);
    setError(null);
    try {
      const change = await action();
      onChanged({ ...event, ...change });
    } catch (failure) {
      setError(errorText(failure));
    } finally {
      setBusy(false);
    }
  };
  const addTag = (e: Event) => {
    e.preventDefault();
    const name = tag.trim();
    if (!name) return;
    void run(async () => {
      await client(CasesService).tagEvents({ caseId: caseRef, eventIds: ids, tag: name });
      setTag("");
      // The server normalises tag names; the next search shows its spelling.
      const normal = name.split(/\s+/).filter(Boolean).join(" ").toLowerCase();
      return { tags: event.tags.includes(normal) ? event.tags : [...event.tags, normal] };
    });
  };
  return (
    <section aria-labelledby="drawer-notes" class="notes">
      <h3 id="drawer-notes">Annotations</h3>
      <div class="row">
        <button
          type="button"
          aria-pressed={event.starred}
          disabled={busy}
          onClick={() =>
            void run(async () => {
              await client(CasesService).starEvents({ caseId: caseRef, eventIds: ids, starred: !event.starred });
              return { starred: !event.starred };
            })
          }
        >
          {event.starred ? "★ Starred" : "☆ Star"}
        </button>
        <ul class="tags" aria-label="Tags">
          {event.tags.map((t) => (
            <li key={t} class="chip">
              {visible(t)}
              <button
                type="button"
                class="small"
                aria-label={`Remove tag ${t}`}
                disabled={busy}
                onClick={() =>
                  void run(async () => {
                    await client(CasesService).untagEvents({ caseId: caseRef, eventIds: ids, tag: t });
                    return { tags: event.tags.filter((x) => x !== t) };
                  })
                }
              >
                ×
              </button>
            </li>
          ))}
        </ul>
      </div>
      <form class="inline" onSubmit={addTag} aria-label="Tag this event">
        <label>
          Tag
          <input value={tag} maxLength={100} onInput={(e) => setTag(e.currentTarget.value)} />
        </label>
        <button type="submit" disabled={busy || !tag.trim()}>
          Add tag
        </button>
      </form>
      <Alert message={error} />
    </section>
  );
}
