// An event's comments as threads (answers under what they answer), oldest first, with
// who wrote them and when; a comment's body is shown exactly as written, as text.

import { useEffect, useState } from "preact/hooks";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { client, currentUserId, errorText } from "../api.js";
import { visible } from "../text.js";
import { CasesService, type Comment, type CommentRevision } from "../gen/casescope/cases/v1/cases_pb.js";
import { Alert, attempt, collect } from "../ui.js";

/** Comments of one event shown at most (the count says when there are more). */
const MAX_COMMENTS = 500;

function when(comment: Comment): string {
  return comment.createdAt ? new Date(timestampMs(comment.createdAt)).toISOString().slice(0, 16).replace("T", " ") : "";
}

export function Comments({
  caseId,
  eventId,
  onCount,
}: {
  caseId: string;
  eventId: string;
  onCount: (count: number) => void;
}) {
  const [comments, setComments] = useState<Comment[] | null>(null);
  const [more, setMore] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [reload, setReload] = useState(0);

  useEffect(() => {
    let live = true;
    collect<Comment>(async (cursor) => {
      const page = await client(CasesService).listComments({
        caseId: { value: caseId },
        eventId: { value: eventId },
        page: { pageSize: 200, cursor },
      });
      return { items: page.comments, next: page.page?.nextCursor ?? "" };
    }, MAX_COMMENTS).then(
      ([all, left]) => {
        if (!live) return;
        setComments(all);
        setMore(left);
        setError(null);
        onCount(all.filter((c) => !c.deleted).length);
      },
      (failure) => live && setError(errorText(failure)),
    );
    return () => {
      live = false;
    };
  }, [caseId, eventId, reload]);

  const children = new Map<string, Comment[]>();
  const roots: Comment[] = [];
  for (const c of comments ?? []) {
    const parent = c.parentId?.value;
    if (parent && (comments ?? []).some((p) => p.id?.value === parent)) {
      children.set(parent, [...(children.get(parent) ?? []), c]);
    } else {
      roots.push(c);
    }
  }
  const thread = (c: Comment, depth: number) => (
    <li key={c.id?.value}>
      <article class="comment" aria-label={`Comment by ${c.authorName}`}>
        <p class="meta">
          <strong>{visible(c.authorName)}</strong> · {when(c)}
          {c.revision > 1 && " · edited"}
        </p>
        {c.deleted ? <p class="status">(deleted)</p> : <p class="body">{visible(c.body)}</p>}
        {c.revision > 1 && <History caseId={caseId} comment={c} />}
        {!c.deleted && c.author?.value === currentUserId() && (
          <OwnActions caseId={caseId} comment={c} onChanged={() => setReload((n) => n + 1)} />
        )}
        {!c.deleted && depth < 6 && (
          <CommentForm
            caseId={caseId}
            eventId={eventId}
            parentId={c.id?.value}
            label={`Reply to ${c.authorName}`}
            onAdded={() => setReload((n) => n + 1)}
          />
        )}
      </article>
      {(children.get(c.id?.value ?? "") ?? []).length > 0 && (
        <ul class="thread">{(children.get(c.id?.value ?? "") ?? []).map((r) => thread(r, depth + 1))}</ul>
      )}
    </li>
  );
  return (
    <section aria-labelledby="drawer-comments">
      <h3 id="drawer-comments">Comments{comments ? ` (${comments.filter((c) => !c.deleted).length})` : ""}</h3>
      <Alert message={error} />
      {comments === null && !error && <p class="status">Loading…</p>}
      {comments?.length === 0 && <p class="status">No comment yet.</p>}
      {roots.length > 0 && <ul class="thread">{roots.map((c) => thread(c, 0))}</ul>}
      {more && <p class="status">Only the first {MAX_COMMENTS} comments are shown.</p>}
      <CommentForm caseId={caseId} eventId={eventId} label="Comment" onAdded={() => setReload((n) => n + 1)} />
    </section>
  );
}

function CommentForm({
  caseId,
  eventId,
  parentId,
  label,
  onAdded,
}: {
  caseId: string;
  eventId: string;
  parentId?: string | undefined;
  label: string;
  onAdded: () => void;
}) {
  const [open, setOpen] = useState(parentId === undefined);
  const [body, setBody] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  if (!open) {
    return (
      <button type="button" class="link small" onClick={() => setOpen(true)}>
        Reply
      </button>
    );
  }
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await client(CasesService).addComment({
        caseId: { value: caseId },
        eventId: { value: eventId },
        body,
        ...(parentId ? { parentId: { value: parentId } } : {}),
      });
      setBody("");
      if (parentId) setOpen(false);
      onAdded();
    } catch (failure) {
      setError(errorText(failure));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form onSubmit={submit} aria-label={parentId ? `Write a reply (${label})` : "Write a comment"} class="comment-form">
      <label>
        {label}
        <textarea value={body} rows={3} onInput={(e) => setBody(e.currentTarget.value)} />
      </label>
      <div class="row">
        <button type="submit" disabled={busy || !body.trim()}>
          {parentId ? "Reply" : "Add comment"}
        </button>
        {parentId && (
          <button type="button" class="link" onClick={() => setOpen(false)}>
            Cancel
          </button>
        )}
      </div>
      <Alert message={error} />
    </form>
  );
}

/** Edit (no lost update: the revision it was read at) or delete one's own comment. */
function OwnActions({ caseId, comment, onChanged }: { caseId: string; comment: Comment; onChanged: () => void }) {
  const [mode, setMode] = useState<"idle" | "edit" | "delete">("idle");
  const [body, setBody] = useState(comment.body);
  const [error, setError] = useState<string | null>(null);
  const done = () => {
    setMode("idle");
    onChanged();
  };
  if (mode === "edit") {
    return (
      <form
        class="comment-form"
        aria-label="Edit your comment"
        onSubmit={(e) => {
          e.preventDefault();
          void attempt(
            () =>
              client(CasesService).editComment({
                caseId: { value: caseId },
                id: comment.id,
                body,
                expectedRevision: comment.revision,
              }),
            setError,
            done,
          );
        }}
      >
        <label>
          Your comment
          <textarea value={body} rows={3} onInput={(e) => setBody(e.currentTarget.value)} />
        </label>
        <div class="row">
          <button type="submit" disabled={!body.trim()}>
            Save
          </button>
          <button type="button" class="link" onClick={() => setMode("idle")}>
            Cancel
          </button>
        </div>
        <Alert message={error} />
      </form>
    );
  }
  return (
    <div class="row">
      {mode === "delete" ? (
        <>
          <span>Delete this comment? Its place in the thread stays.</span>
          <button
            type="button"
            class="small"
            onClick={() =>
              void attempt(() => client(CasesService).deleteComment({ caseId: { value: caseId }, id: comment.id }), setError, done)
            }
          >
            Delete
          </button>
          <button type="button" class="link small" onClick={() => setMode("idle")}>
            Keep it
          </button>
        </>
      ) : (
        <>
          <button type="button" class="link small" onClick={() => setMode("edit")}>
            Edit
          </button>
          <button type="button" class="link small" onClick={() => setMode("delete")}>
            Delete
          </button>
        </>
      )}
      <Alert message={error} />
    </div>
  );
}

/** Every body an edited comment has had, on demand. */
function History({ caseId, comment }: { caseId: string; comment: Comment }) {
  const [revisions, setRevisions] = useState<CommentRevision[] | string | null>(null);
  if (revisions === null) {
    return (
      <button
        type="button"
        class="link small"
        onClick={() =>
          client(CasesService)
            .listCommentRevisions({ caseId: { value: caseId }, id: comment.id })
            .then(
              (a) => setRevisions(a.revisions),
              (e) => setRevisions(errorText(e)),
            )
        }
      >
        Show its {comment.revision} versions
      </button>
    );
  }
  if (typeof revisions === "string") return <Alert message={revisions} />;
  return (
    <ol class="revisions" aria-label="Versions of the comment">
      {revisions.map((r) => (
        <li key={r.revision}>
          <span class="status">
            {r.writtenAt ? new Date(timestampMs(r.writtenAt)).toISOString().slice(0, 16).replace("T", " ") : ""}
          </span>{" "}
          <span class="body">{visible(r.body)}</span>
        </li>
      ))}
    </ol>
  );
}
