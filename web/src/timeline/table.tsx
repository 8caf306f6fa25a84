// The timeline's rows, virtualised: only the rows in view (plus a margin) are in the
// document, whatever how many pages have been loaded; the next page is asked for when
// the view nears the end of what is loaded. Rows have one fixed height, so the scroll
// position alone says which rows are in view (no measuring while scrolling).
//
// Keyboard: the active row holds the focus (roving tabindex); ↑/↓, Page Up/Down,
// Home/End move it, Enter opens the event.

import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import { visible } from "../text.js";
import { fieldsOf, fieldText, type Row } from "./fields.js";
import { formatMicros } from "./query.js";

export const ROW_HEIGHT = 28;
/** Rows rendered above and below the view. */
const OVERSCAN = 12;
/** Ask for the next page when the view is this many rows from the end of what is loaded. */
const PREFETCH_ROWS = 300;

export interface Column {
  id: string;
  label: string;
  width: string;
}

export const STANDARD_COLUMNS: Column[] = [
  { id: "time", label: "Time (UTC)", width: "13.5rem" },
  { id: "marks", label: "Marks", width: "7rem" },
  { id: "code", label: "Event ID", width: "5.5rem" },
  { id: "computer", label: "Computer", width: "12rem" },
  { id: "channel", label: "Channel", width: "11rem" },
  { id: "provider", label: "Provider", width: "12rem" },
  { id: "summary", label: "Fields", width: "40rem" },
];

export function fieldColumn(name: string): Column {
  return { id: `field:${name}`, label: name, width: "12rem" };
}

/** The summary cell: the first fields as `name=value`, cut short. */
function summary(event: Row): string {
  const fields = fieldsOf(event);
  let text = "";
  for (const [name, value] of Object.entries(fields)) {
    text += `${text ? "  " : ""}${name}=${fieldText(value)}`;
    if (text.length > 300) break;
  }
  return text.slice(0, 300);
}

function cell(event: Row, column: Column) {
  switch (column.id) {
    case "time":
      return formatMicros(event.micros);
    case "marks":
      return (
        <>
          {event.starred && <span title="Starred">★ </span>}
          {event.detectionCount > 0 && (
            <span class="mark det" title={`${event.detectionCount} detections`}>
              D{event.detectionCount}{" "}
            </span>
          )}
          {event.iocMatchCount > 0 && (
            <span class="mark ioc" title={`${event.iocMatchCount} IOC matches`}>
              I{event.iocMatchCount}{" "}
            </span>
          )}
          {event.commentCount > 0 && (
            <span class="mark" title={`${event.commentCount} comments`}>
              C{event.commentCount}{" "}
            </span>
          )}
          {event.tags.length > 0 && (
            <span class="mark tag" title={event.tags.join(", ")}>
              #{event.tags.length}
            </span>
          )}
        </>
      );
    case "code":
      return event.code ? event.code.toString() : "";
    case "computer":
      return visible(event.computer);
    case "channel":
      return visible(event.channel);
    case "provider":
      return visible(event.provider);
    case "summary":
      return visible(summary(event));
    default: {
      const name = column.id.slice("field:".length);
      const value = fieldsOf(event)[name];
      return value === undefined ? "" : visible(fieldText(value));
    }
  }
}

export interface TableProps {
  rows: Row[];
  columns: Column[];
  /** More rows exist after the loaded ones. */
  more: boolean;
  loading: boolean;
  loadMore: () => void;
  onOpen: (index: number) => void;
  /** The row whose event is open (highlighted). */
  openIndex: number | null;
}

export function TimelineTable({ rows, columns, more, loading, loadMore, onOpen, openIndex }: TableProps) {
  const scroller = useRef<HTMLDivElement>(null);
  const [top, setTop] = useState(0);
  const [height, setHeight] = useState(600);
  const [active, setActive] = useState(0);
  const focusWanted = useRef(false);
  const frame = useRef<number | null>(null);

  useEffect(() => {
    const element = scroller.current;
    if (!element) return;
    const measure = () => setHeight(element.clientHeight || 600);
    measure();
    const observer = new ResizeObserver(measure);
    observer.observe(element);
    return () => observer.disconnect();
  }, []);

  // A new selection starts at the top.
  useEffect(() => {
    if (rows.length === 0) {
      setActive(0);
      if (scroller.current) scroller.current.scrollTop = 0;
      setTop(0);
    }
  }, [rows.length === 0]);

  const first = Math.max(0, Math.floor(top / ROW_HEIGHT) - OVERSCAN);
  const last = Math.min(rows.length, Math.ceil((top + height) / ROW_HEIGHT) + OVERSCAN);

  useEffect(() => {
    if (more && !loading && last + PREFETCH_ROWS >= rows.length) loadMore();
  }, [last, rows.length, more, loading]);

  useLayoutEffect(() => {
    if (!focusWanted.current) return;
    focusWanted.current = false;
    scroller.current?.querySelector<HTMLElement>(`[role=row][data-index="${active}"]`)?.focus({ preventScroll: true });
  }, [active, first]);

  const onScroll = () => {
    if (frame.current !== null) return;
    frame.current = requestAnimationFrame(() => {
      frame.current = null;
      if (scroller.current) setTop(scroller.current.scrollTop);
    });
  };

  const moveTo = (index: number) => {
    const element = scroller.current;
    if (!element || rows.length === 0) return;
    const next = Math.max(0, Math.min(rows.length - 1, index));
    const header = ROW_HEIGHT;
    const rowTop = next * ROW_HEIGHT;
    if (rowTop < element.scrollTop) element.scrollTop = rowTop;
    else if (rowTop + ROW_HEIGHT + header > element.scrollTop + element.clientHeight) {
      element.scrollTop = rowTop + ROW_HEIGHT + header - element.clientHeight;
    }
    setTop(element.scrollTop);
    focusWanted.current = true;
    setActive(next);
  };

  const onKeyDown = (event: KeyboardEvent) => {
    const page = Math.max(1, Math.floor(height / ROW_HEIGHT) - 1);
    const keys: Record<string, number> = {
      ArrowDown: active + 1,
      ArrowUp: active - 1,
      PageDown: active + page,
      PageUp: active - page,
      Home: 0,
      End: rows.length - 1,
    };
    const target = keys[event.key];
    if (target !== undefined) {
      event.preventDefault();
      moveTo(target);
    } else if (event.key === "Enter") {
      event.preventDefault();
      onOpen(active);
    }
  };

  const shown = rows.slice(first, last);
  // Every row is a grid of the same fixed column widths, placed by a transform in a body
  // as tall as all the rows: a frame lays out only the rows it adds (each one contained),
  // never the rest.
  const template = columns.map((c) => c.width).join(" ");
  const width = `${columns.reduce((sum, c) => sum + Number.parseFloat(c.width), 0)}rem`;
  return (
    <div class="vwrap">
      <div
        class="vtable"
        ref={scroller}
        onScroll={onScroll}
        onKeyDown={onKeyDown}
        role="table"
        aria-label="Events"
        aria-rowcount={rows.length + 1}
      >
        <div class="vhead" role="rowgroup" style={{ width }}>
          <div class="vrow head" role="row" aria-rowindex={1} style={{ gridTemplateColumns: template }}>
            {columns.map((c) => (
              <div role="columnheader" key={c.id}>
                {visible(c.label)}
              </div>
            ))}
          </div>
        </div>
        <div class="vbody" role="rowgroup" style={{ height: `${rows.length * ROW_HEIGHT}px`, width }}>
          {shown.map((event, offset) => {
            const index = first + offset;
            return (
              <div
                key={event.id || index}
                role="row"
                data-index={index}
                aria-rowindex={index + 2}
                tabIndex={index === active ? 0 : -1}
                class={openIndex === index ? "vrow open" : "vrow"}
                style={{ transform: `translateY(${index * ROW_HEIGHT}px)`, gridTemplateColumns: template }}
                onClick={() => {
                  setActive(index);
                  onOpen(index);
                }}
                onFocus={() => setActive(index)}
              >
                {columns.map((c) => (
                  <div role="cell" key={c.id}>
                    {cell(event, c)}
                  </div>
                ))}
              </div>
            );
          })}
        </div>
      </div>
      {loading && (
        <p class="status" role="status">
          Loading more events…
        </p>
      )}
    </div>
  );
}
