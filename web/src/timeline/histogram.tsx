// Events over time for the same selection as the table. Drag across the bars (a brush)
// to zoom to that span; the time-range fields do the same from the keyboard.

import { useRef, useState } from "preact/hooks";
import type { TimelineHistogramResponse } from "../gen/casescope/cases/v1/cases_pb.js";
import { formatMicros } from "./query.js";

const WIDTH = 1000;
const HEIGHT = 90;

interface Bucket {
  start: bigint;
  count: number;
}

function micros(seconds: bigint, nanos: number): bigint {
  return seconds * 1_000_000n + BigInt(Math.trunc(nanos / 1000));
}

export function Histogram({
  histogram,
  onZoom,
}: {
  histogram: TimelineHistogramResponse;
  onZoom: (from: bigint, to: bigint) => void;
}) {
  const svg = useRef<SVGSVGElement>(null);
  const [brush, setBrush] = useState<{ from: number; to: number } | null>(null);
  const buckets: Bucket[] = histogram.buckets.map((b) => ({
    start: b.start ? micros(b.start.seconds, b.start.nanos) : 0n,
    count: Number(b.count),
  }));
  if (buckets.length === 0) return null;
  const interval = histogram.interval ? micros(histogram.interval.seconds, histogram.interval.nanos) : 0n;
  const max = Math.max(1, ...buckets.map((b) => b.count));
  const width = WIDTH / buckets.length;
  const first = buckets[0]!;
  const last = buckets[buckets.length - 1]!;

  const bucketAt = (clientX: number): number => {
    const box = svg.current?.getBoundingClientRect();
    if (!box || box.width === 0) return 0;
    const fraction = Math.min(0.9999, Math.max(0, (clientX - box.left) / box.width));
    return Math.floor(fraction * buckets.length);
  };
  const onDown = (event: PointerEvent) => {
    const at = bucketAt(event.clientX);
    svg.current?.setPointerCapture(event.pointerId);
    setBrush({ from: at, to: at });
  };
  const onMove = (event: PointerEvent) => {
    if (brush) setBrush({ ...brush, to: bucketAt(event.clientX) });
  };
  const onUp = () => {
    if (!brush) return;
    const lo = Math.min(brush.from, brush.to);
    const hi = Math.max(brush.from, brush.to);
    setBrush(null);
    const start = buckets[lo]?.start;
    const end = buckets[hi]?.start;
    if (start !== undefined && end !== undefined) onZoom(start, end + interval);
  };
  const lo = brush ? Math.min(brush.from, brush.to) : -1;
  const hi = brush ? Math.max(brush.from, brush.to) : -1;
  return (
    <figure class="histogram">
      <svg
        ref={svg}
        viewBox={`0 0 ${WIDTH} ${HEIGHT}`}
        preserveAspectRatio="none"
        role="img"
        aria-label={`Events over time: ${histogram.totalCount.toLocaleString()} events from ${formatMicros(first.start)} to ${formatMicros(last.start + interval)}, in ${buckets.length} intervals. Drag across the bars to zoom.`}
        onPointerDown={onDown}
        onPointerMove={onMove}
        onPointerUp={onUp}
        onPointerCancel={() => setBrush(null)}
      >
        {brush && <rect class="brush" x={lo * width} y={0} width={(hi - lo + 1) * width} height={HEIGHT} />}
        {buckets.map((b, i) =>
          b.count === 0 ? null : (
            <rect
              key={i}
              class="bar"
              x={i * width + width * 0.1}
              width={Math.max(width * 0.8, 0.5)}
              y={HEIGHT - (b.count / max) * (HEIGHT - 2)}
              height={(b.count / max) * (HEIGHT - 2)}
            >
              <title>{`${formatMicros(b.start)}: ${b.count.toLocaleString()}`}</title>
            </rect>
          ),
        )}
      </svg>
      <figcaption class="axis">
        <span>{formatMicros(first.start)}</span>
        <span>max {max.toLocaleString()} per bar</span>
        <span>{formatMicros(last.start + interval)}</span>
      </figcaption>
    </figure>
  );
}
