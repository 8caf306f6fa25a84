// A case's recent activity, on its overview: the newest comments (each opening its
// event), the newest evidence, and the signed-in user's latest searches.

import { useEffect, useState } from "preact/hooks";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { client, errorText } from "./api.js";
import { visible } from "./text.js";
import { CasesService, type Comment, type File, type SearchHistoryEntry } from "./gen/casescope/cases/v1/cases_pb.js";
import { describe, fromQuery, quote, timelineHref } from "./timeline/query.js";

const SHOWN = 5;

function when(ts: Parameters<typeof timestampMs>[0] | undefined): string {
  return ts ? new Date(timestampMs(ts)).toISOString().replace("T", " ").slice(0, 16) : "";
}

export function RecentActivity({ caseId, files }: { caseId: string; files: File[] }) {
  const [comments, setComments] = useState<Comment[] | string | null>(null);
  const [searches, setSearches] = useState<SearchHistoryEntry[] | string | null>(null);
  useEffect(() => {
    let live = true;
    const caseRef = { value: caseId };
    client(CasesService)
      .listComments({ caseId: caseRef, newestFirst: true, page: { pageSize: SHOWN } })
      .then(
        (a) => live && setComments(a.comments),
        (e) => live && setComments(errorText(e)),
      );
    client(CasesService)
      .listSearchHistory({ caseId: caseRef, page: { pageSize: SHOWN } })
      .then(
        (a) => live && setSearches(a.entries),
        (e) => live && setSearches(errorText(e)),
      );
    return () => {
      live = false;
    };
  }, [caseId]);
  const newest = [...files]
    .sort((a, b) => (b.uploadedAt ? timestampMs(b.uploadedAt) : 0) - (a.uploadedAt ? timestampMs(a.uploadedAt) : 0))
    .slice(0, SHOWN);
  return (
    <section class="panel activity" aria-labelledby="activity-title">
      <h2 id="activity-title">Recent activity</h2>
      <h3>Comments</h3>
      {comments === null && <p class="status">Loading…</p>}
      {typeof comments === "string" && <p class="error">{comments}</p>}
      {Array.isArray(comments) && comments.length === 0 && <p class="status">No comment yet.</p>}
      {Array.isArray(comments) && comments.length > 0 && (
        <ul class="plain">
          {comments.map((c) => (
            <li key={c.id?.value}>
              <a href={timelineHref(caseId, { q: `event_id:${quote(c.eventId?.value ?? "")}` })}>
                {when(c.createdAt)} · {visible(c.authorName)}
              </a>
              : {c.deleted ? "(deleted)" : visible(c.body.length > 140 ? `${c.body.slice(0, 140)}…` : c.body)}
            </li>
          ))}
        </ul>
      )}
      <h3>Evidence</h3>
      {newest.length === 0 ? (
        <p class="status">None yet.</p>
      ) : (
        <ul class="plain">
          {newest.map((f) => (
            <li key={f.id?.value}>
              {when(f.uploadedAt)} · {visible(f.name)}
            </li>
          ))}
        </ul>
      )}
      <h3>Your searches</h3>
      {typeof searches === "string" && <p class="error">{searches}</p>}
      {Array.isArray(searches) && searches.length === 0 && <p class="status">None yet.</p>}
      {Array.isArray(searches) && searches.length > 0 && (
        <ul class="plain">
          {searches.map((s, i) => (
            <li key={i}>
              <a href={timelineHref(caseId, fromQuery(s.query))}>{visible(describe(fromQuery(s.query)))}</a>
              <span class="status"> · {s.hitCount.toLocaleString()} hits</span>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}
