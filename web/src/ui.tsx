// What the screens share: the server's refusal shown as it said it, a filter form, a
// list paged with the server's cursor, every page of a list collected (bounded), and an
// action that reloads what it changed.

import type { ComponentChildren } from "preact";
import { useEffect, useState } from "preact/hooks";
import { errorText } from "./api.js";

/** An error message, announced to assistive technology; nothing when there is none. */
export function Alert({ message }: { message: string | null | undefined }) {
  return message ? (
    <p class="error" role="alert">
      {message}
    </p>
  ) : null;
}

/** A search form over a list: its fields, a Filter button. */
export function FilterForm({ label, onSubmit, children }: { label: string; onSubmit: () => void; children: ComponentChildren }) {
  return (
    <form
      class="inline"
      role="search"
      aria-label={label}
      onSubmit={(e) => {
        e.preventDefault();
        onSubmit();
      }}
    >
      {children}
      <button type="submit">Filter</button>
    </form>
  );
}

export interface Page<T> {
  items: T[];
  next: string;
  /** The list's total, when the server counts it. */
  total?: bigint;
}

/** A list read page by page: the first page again whenever `deps` change or `reload()`
 *  is called, the next one on `more()`. */
export function usePaged<T>(fetch: (cursor: string) => Promise<Page<T>>, deps: unknown[]) {
  const [items, setItems] = useState<T[] | null>(null);
  const [total, setTotal] = useState<bigint | null>(null);
  const [next, setNext] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [tick, setTick] = useState(0);
  const load = async (cursor: string, live: () => boolean) => {
    try {
      const page = await fetch(cursor);
      if (!live()) return;
      setItems((previous) => (cursor && previous ? previous.concat(page.items) : page.items));
      setTotal(page.total ?? null);
      setNext(page.next);
      setError(null);
    } catch (failure) {
      if (live()) setError(errorText(failure));
    }
  };
  useEffect(() => {
    let live = true;
    setItems(null);
    void load("", () => live);
    return () => {
      live = false;
    };
  }, [...deps, tick]);
  return {
    items,
    total,
    error,
    setError,
    hasMore: next !== "",
    more: () => void load(next, () => true),
    reload: () => setTick((n) => n + 1),
  };
}

/** Every page of a list, at most `max` items (the second value: more were left). */
export async function collect<T>(fetch: (cursor: string) => Promise<Page<T>>, max: number): Promise<[T[], boolean]> {
  const all: T[] = [];
  let cursor = "";
  do {
    const page = await fetch(cursor);
    all.push(...page.items);
    cursor = page.next;
  } while (cursor && all.length < max);
  return [all, cursor !== ""];
}

/** Runs a change: its refusal into `setError`, else `done()` (e.g. a reload). */
export async function attempt(
  action: () => Promise<unknown>,
  setError: (message: string | null) => void,
  done: () => void,
): Promise<void> {
  setError(null);
  try {
    await action();
    done();
  } catch (failure) {
    setError(errorText(failure));
  }
}

/** A table's header row: column names, `[name, "num"]` for a right-aligned one. */
export function Head({ columns }: { columns: (string | [string, "num"])[] }) {
  return (
    <thead>
      <tr>
        {columns.map((c) =>
          typeof c === "string" ? (
            <th scope="col" key={c}>
              {c}
            </th>
          ) : (
            <th scope="col" class="num" key={c[0]}>
              {c[0]}
            </th>
          ),
        )}
      </tr>
    </thead>
  );
}
