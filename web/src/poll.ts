import { useEffect, useRef, useState } from "preact/hooks";
import { errorText } from "./api.js";

/** Polling that backs off: `first` ms after a change, ×1.5 while nothing changes, at most
 *  `max`; stops while `settled(value)` holds (until `reload` changes). */
export function usePolled<T>(
  load: () => Promise<T>,
  settled: (value: T) => boolean,
  deps: unknown[],
  first = 1000,
  max = 15_000,
): { value: T | null; error: string | null; reload: () => void } {
  const [value, setValue] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [tick, setTick] = useState(0);
  const delay = useRef(first);
  useEffect(() => {
    let live = true;
    let timer: number | undefined;
    let last = "";
    delay.current = first;
    const step = async () => {
      try {
        const next = await load();
        if (!live) return;
        setError(null);
        setValue(next);
        const key = JSON.stringify(next, (_, v) => (typeof v === "bigint" ? v.toString() : v));
        delay.current = key === last ? Math.min(max, delay.current * 1.5) : first;
        last = key;
        if (settled(next)) return;
      } catch (failure) {
        if (!live) return;
        setError(errorText(failure));
        delay.current = Math.min(max, delay.current * 2);
      }
      timer = window.setTimeout(step, delay.current);
    };
    void step();
    return () => {
      live = false;
      if (timer !== undefined) window.clearTimeout(timer);
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, tick]);
  return { value, error, reload: () => setTick((n) => n + 1) };
}
