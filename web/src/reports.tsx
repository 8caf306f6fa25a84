// A case's reports: create one (formats, title, the timeline's tags), follow its job
// (polled with backoff while one is queued or running), download an artefact (streamed,
// checked against its SHA-256 and size), delete.

import { useEffect, useState } from "preact/hooks";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { sha256 } from "@noble/hashes/sha2.js";
import { bytesToHex } from "@noble/hashes/utils.js";
import { client, errorText } from "./api.js";
import { visible } from "./text.js";
import { Alert, Head, attempt, usePaged } from "./ui.js";
import {
  AiSummaryStatus,
  ReportFormat,
  ReportService,
  ReportStatus,
  type Artefact,
  type Report,
} from "./gen/casescope/report/v1/report_pb.js";

const FORMATS: [ReportFormat, string][] = [
  [ReportFormat.HTML, "HTML"],
  [ReportFormat.MARKDOWN, "Markdown"],
  [ReportFormat.JSON, "JSON"],
  [ReportFormat.PDF, "PDF"],
];
/** Artefacts larger than this are left to the CLI (the browser holds a download whole). */
const BROWSER_MAX_BYTES = 256n * 1024n * 1024n;
const DOWNLOAD_TIMEOUT_MS = 15 * 60_000;

/** The AI summary's outcome, for a report made with one. */
function aiText(report: Report): string {
  switch (report.aiSummaryStatus) {
    case AiSummaryStatus.INCLUDED:
      return `AI summary by ${report.aiModel}`;
    case AiSummaryStatus.FAILED:
      return `AI summary not included: ${report.aiSummaryError}`;
    case AiSummaryStatus.PENDING:
      return "AI summary pending";
    default:
      return "";
  }
}

function formatName(format: ReportFormat): string {
  return FORMATS.find(([f]) => f === format)?.[1] ?? "?";
}

function statusName(status: ReportStatus): string {
  return ReportStatus[status]?.toLowerCase() ?? "?";
}

function when(ts: Parameters<typeof timestampMs>[0] | undefined): string {
  return ts ? new Date(timestampMs(ts)).toISOString().replace("T", " ").slice(0, 19) : "";
}

function size(bytes: bigint): string {
  const n = Number(bytes);
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

async function download(caseId: string, report: Report, artefact: Artefact): Promise<void> {
  if (artefact.sizeBytes > BROWSER_MAX_BYTES) {
    throw new Error(
      `this artefact has ${size(artefact.sizeBytes)}; download it with: casescope report download ${caseId} ${report.id?.value} --format ${formatName(artefact.format).toLowerCase()} --output FILE`,
    );
  }
  const parts: Uint8Array[] = [];
  let received = 0n;
  const hash = sha256.create();
  const stream = client(ReportService).downloadReport(
    { caseId: { value: caseId }, id: report.id, format: artefact.format, offset: 0n },
    { timeoutMs: DOWNLOAD_TIMEOUT_MS },
  );
  for await (const chunk of stream) {
    if (chunk.offset !== received) throw new Error(`the download skipped from byte ${received} to ${chunk.offset}`);
    parts.push(chunk.data);
    hash.update(chunk.data);
    received += BigInt(chunk.data.length);
  }
  const digest = bytesToHex(hash.digest());
  if (received !== artefact.sizeBytes || digest !== artefact.sha256) {
    throw new Error(`the download does not match the report (${received} bytes, SHA-256 ${digest})`);
  }
  const url = URL.createObjectURL(
    new Blob(
      parts.map((p) => p as Uint8Array<ArrayBuffer>),
      { type: artefact.contentType },
    ),
  );
  const link = document.createElement("a");
  link.href = url;
  link.download = artefact.fileName;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

function CreateReport({ caseId, created }: { caseId: string; created: () => void }) {
  const [formats, setFormats] = useState<ReportFormat[]>([ReportFormat.HTML]);
  const [title, setTitle] = useState("");
  const [tags, setTags] = useState("");
  const [ai, setAi] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  return (
    <form
      class="panel"
      aria-labelledby="create-report"
      onSubmit={(e) => {
        e.preventDefault();
        setBusy(true);
        void attempt(
          () =>
            client(ReportService).createReport({
              caseId: { value: caseId },
              formats,
              title,
              includeAiSummary: ai,
              timelineTags: tags
                .split(",")
                .map((t) => t.trim())
                .filter((t) => t !== ""),
            }),
          setError,
          created,
        ).finally(() => setBusy(false));
      }}
    >
      <h2 id="create-report">New report</h2>
      <fieldset>
        <legend>Formats</legend>
        {FORMATS.map(([format, name]) => (
          <label class="check" key={name}>
            <input
              type="checkbox"
              name="format"
              value={name}
              checked={formats.includes(format)}
              onChange={(e) =>
                setFormats((current) =>
                  (e.target as HTMLInputElement).checked ? [...current, format] : current.filter((f) => f !== format),
                )
              }
            />{" "}
            {name}
          </label>
        ))}
      </fieldset>
      <label>
        Title <input name="title" value={title} maxLength={200} placeholder="the case name" onInput={(e) => setTitle((e.target as HTMLInputElement).value)} />
      </label>
      <label>
        Timeline tags{" "}
        <input name="tags" value={tags} placeholder="every tag and starred events" onInput={(e) => setTags((e.target as HTMLInputElement).value)} />
      </label>
      <label class="check">
        <input type="checkbox" name="ai" checked={ai} onChange={(e) => setAi((e.target as HTMLInputElement).checked)} /> AI
        summary (by the deployment&apos;s language model; every sentence&apos;s citations are checked)
      </label>
      <button type="submit" disabled={busy || formats.length === 0}>
        Create report
      </button>
      <Alert message={error} />
    </form>
  );
}

export function Reports({ caseId }: { caseId: string }) {
  const list = usePaged(async (cursor) => {
    const answer = await client(ReportService).listReports({ caseId: { value: caseId }, page: { pageSize: 100, cursor } });
    return { items: answer.reports, next: answer.page?.nextCursor ?? "" };
  }, [caseId]);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState<string | null>(null);
  const [confirming, setConfirming] = useState<string | null>(null);
  const pending = (list.items ?? []).some((r) => r.status === ReportStatus.QUEUED || r.status === ReportStatus.RUNNING);
  // Follow unfinished jobs: poll with backoff (1 s doubling to 10 s) while any is pending.
  useEffect(() => {
    if (!pending) return;
    let delay = 1000;
    let timer = 0;
    const tick = () => {
      list.reload();
      delay = Math.min(delay * 2, 10_000);
      timer = window.setTimeout(tick, delay);
    };
    timer = window.setTimeout(tick, delay);
    return () => window.clearTimeout(timer);
  }, [pending, caseId]);
  return (
    <main class="reports">
      <p class="crumbs">
        <a href="#/cases">Cases</a> › <a href={`#/cases/${caseId}`}>Case</a> › Reports
      </p>
      <h1>Reports</h1>
      <CreateReport caseId={caseId} created={list.reload} />
      <section class="panel" aria-labelledby="report-list">
        <h2 id="report-list">Reports of the case</h2>
        <Alert message={list.error ?? error} />
        {list.items === null && !list.error && <p class="status">Loading…</p>}
        {list.items?.length === 0 && <p class="status">No report yet.</p>}
        {list.items && list.items.length > 0 && (
          <table id="report-table" class="grid">
            <Head columns={["Title", "Status", "Requested", "Artefacts", ""]} />
            <tbody>
              {list.items.map((report) => (
                <tr key={report.id?.value} data-status={statusName(report.status)}>
                  <td>{visible(report.title)}</td>
                  <td>
                    {statusName(report.status)}
                    {report.error && <div class="error">{visible(report.error)}</div>}
                    {report.includeAiSummary && <div class="ai">{visible(aiText(report))}</div>}
                  </td>
                  <td>{when(report.createdAt)}</td>
                  <td>
                    {report.status === ReportStatus.READY
                      ? report.artefacts.map((a) => (
                          <button
                            type="button"
                            key={a.format}
                            disabled={busy !== null}
                            title={`SHA-256 ${a.sha256}`}
                            onClick={() => {
                              setBusy(`${report.id?.value}:${a.format}`);
                              setError(null);
                              download(caseId, report, a)
                                .catch((e) => setError(errorText(e)))
                                .finally(() => setBusy(null));
                            }}
                          >
                            {formatName(a.format)} ({size(a.sizeBytes)})
                          </button>
                        ))
                      : report.formats.map(formatName).join(", ")}
                  </td>
                  <td>
                    {confirming === report.id?.value ? (
                      <>
                        <button
                          type="button"
                          class="danger"
                          onClick={() => {
                            setConfirming(null);
                            void attempt(
                              () => client(ReportService).deleteReport({ caseId: { value: caseId }, id: report.id }),
                              setError,
                              list.reload,
                            );
                          }}
                        >
                          Delete for good
                        </button>{" "}
                        <button type="button" onClick={() => setConfirming(null)}>
                          Keep
                        </button>
                      </>
                    ) : (
                      <button type="button" onClick={() => setConfirming(report.id?.value ?? null)}>
                        Delete
                      </button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
        {list.hasMore && (
          <button type="button" onClick={list.more}>
            More
          </button>
        )}
      </section>
    </main>
  );
}
