// A case at a glance: its files with live status and exact counts (read = indexed +
// rejected + duplicates, with the reasons of the rejects), detections by level and
// ATT&CK tactic, and IOC matches by type. Files are polled while any is still moving
// through its stages, backing off while nothing changes.

import { client, errorText } from "./api.js";
import { usePolled } from "./poll.js";
import { visible } from "./text.js";
import { Upload } from "./upload.js";
import { timelineHref } from "./timeline/query.js";
import { CaseSettings } from "./settings.js";
import { RecentActivity } from "./activity.js";
import { Head, collect } from "./ui.js";
import { CasesService, CaseState, type Case, type File } from "./gen/casescope/cases/v1/cases_pb.js";
import { FileStatus, Stage } from "./gen/casescope/common/v1/common_pb.js";
import { DetectService, RuleLevel, type CountDetectionsResponse } from "./gen/casescope/detect/v1/detect_pb.js";
import { IocService, IocType, type CountMatchesResponse } from "./gen/casescope/ioc/v1/ioc_pb.js";

const FILE_PAGE = 500;
/** Files shown at most (the case's total is shown too). */
const MAX_FILES = 5000;

const STATUS: Record<FileStatus, string> = {
  [FileStatus.UNSPECIFIED]: "unknown",
  [FileStatus.UPLOADED]: "uploaded",
  [FileStatus.PARSING]: "parsing",
  [FileStatus.INDEXED]: "indexed",
  [FileStatus.DETECTING]: "detecting",
  [FileStatus.HUNTING]: "hunting",
  [FileStatus.READY]: "ready",
  [FileStatus.FAILED]: "failed",
  [FileStatus.ARCHIVED]: "archived",
};

const STAGE: Record<Stage, string> = {
  [Stage.UNSPECIFIED]: "",
  [Stage.INGEST]: "ingest",
  [Stage.DETECT]: "detect",
  [Stage.IOC_HUNT]: "IOC hunt",
};

function settledFile(file: File): boolean {
  return [FileStatus.READY, FileStatus.FAILED, FileStatus.ARCHIVED].includes(file.status);
}

interface Overview {
  kase: Case;
  files: File[];
  more: boolean;
  detections: CountDetectionsResponse | string;
  matches: CountMatchesResponse | string;
}

async function optional<T>(call: Promise<T>): Promise<T | string> {
  try {
    return await call;
  } catch (failure) {
    return errorText(failure);
  }
}

async function load(id: string): Promise<Overview> {
  const caseId = { value: id };
  const kase = await client(CasesService).getCase({ id: caseId });
  const [files, more] = await collect<File>(async (cursor) => {
    const page = await client(CasesService).listFiles({ caseId, page: { pageSize: FILE_PAGE, cursor } });
    return { items: page.files, next: page.page?.nextCursor ?? "" };
  }, MAX_FILES);
  const [detections, matches] = await Promise.all([
    optional(client(DetectService).countDetections({ caseId })),
    optional(client(IocService).countMatches({ caseId })),
  ]);
  return { kase, files, more, detections, matches };
}

function levelName(level: RuleLevel): string {
  return (RuleLevel[level] ?? "unknown").toLowerCase();
}

function typeName(kind: IocType): string {
  return (IocType[kind] ?? "unknown").toLowerCase();
}

function n(value: bigint): string {
  return value.toLocaleString();
}

export function CaseOverview({ id }: { id: string }) {
  const { value, error, reload } = usePolled(
    () => load(id),
    // Settled: every file done, and an archive or restore of the case finished.
    (o) =>
      o.files.every(settledFile) &&
      o.kase.state !== CaseState.RESTORING &&
      !(o.kase.state === CaseState.ARCHIVED && o.files.some((f) => f.status !== FileStatus.ARCHIVED)),
    [id],
  );
  if (!value) {
    return error ? (
      <p class="error" role="alert">
        {error}
      </p>
    ) : (
      <p class="status" role="status">
        Loading the case…
      </p>
    );
  }
  const { kase, files, more, detections, matches } = value;
  const moving = files.filter((f) => !settledFile(f)).length;
  return (
    <section aria-labelledby="case-title">
      <p>
        <a href="#/cases">Cases</a>
      </p>
      <h1 id="case-title">{visible(kase.name)}</h1>
      <p>
        <a href={timelineHref(id, {})}>Open the timeline</a> · <a href={`#/cases/${id}/detections`}>Detections</a> ·{" "}
        <a href={`#/cases/${id}/iocs`}>IOCs</a> · <a href={`#/cases/${id}/reports`}>Reports</a> ·{" "}
        <a href={`#/cases/${id}/integrations`}>Integrations</a>
      </p>
      {error && (
        <p class="error" role="alert">
          {error} (showing the last answer)
        </p>
      )}
      <p class="status" role="status">
        {files.length === 0
          ? "No evidence yet."
          : moving > 0
            ? `${moving} of ${files.length} ${files.length === 1 ? "file" : "files"} still in progress.`
            : files.length === 1
              ? "The file is done."
              : `All ${files.length} files are done.`}
        {more && ` Only the first ${MAX_FILES} files are listed.`}
      </p>
      <div class="panels">
        <DetectionsPanel caseId={id} counts={detections} />
        <MatchesPanel counts={matches} />
        <RecentActivity caseId={id} files={files} />
      </div>
      <CaseSettings kase={kase} onChanged={reload} />
      {kase.state === CaseState.OPEN ? (
        <Upload caseId={id} onUploaded={reload} />
      ) : (
        <p class="status">
          The case is {kase.state === CaseState.ARCHIVED ? "archived" : "being restored"}: no evidence can be added.
        </p>
      )}
      <h2>Files</h2>
      {files.length > 0 && (
        <table class="grid">
          <Head columns={["File", "Format", "Status", ["Read", "num"], ["Indexed", "num"], ["Rejected", "num"], ["Duplicates", "num"]]} />
          <tbody>
            {files.map((f) => (
              <tr key={f.id?.value}>
                <td>
                  {visible(f.name)}
                  {f.rejectsByReason.length > 0 && (
                    <ul class="reasons" aria-label={`Rejected records of ${visible(f.name)}`}>
                      {f.rejectsByReason.map((r) => (
                        <li key={r.reason}>
                          {n(r.count)} × {visible(r.reason)}
                        </li>
                      ))}
                    </ul>
                  )}
                </td>
                <td>{f.format}</td>
                <td>
                  <span class={`badge ${STATUS[f.status]}`}>{STATUS[f.status]}</span>
                  {f.status === FileStatus.FAILED && (
                    <span class="error">
                      {" "}
                      {STAGE[f.failedStage]}: {visible(f.error)}
                    </span>
                  )}
                </td>
                <td class="num">{n(f.recordsRead)}</td>
                <td class="num">{n(f.eventsIndexed)}</td>
                <td class="num">{n(f.recordsRejected)}</td>
                <td class="num">{n(f.duplicatesSkipped)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

function DetectionsPanel({ caseId, counts }: { caseId: string; counts: CountDetectionsResponse | string }) {
  return (
    <section class="panel" aria-labelledby="detections-title">
      <h2 id="detections-title">Detections</h2>
      {typeof counts === "string" ? (
        <p class="error">{counts}</p>
      ) : (
        <>
          <p class="big">{n(counts.total)}</p>
          <dl class="counts">
            {counts.byLevel.map((l) => (
              <div key={l.level}>
                <dt>
                  <a href={timelineHref(caseId, { levels: [levelName(l.level)] })}>{levelName(l.level)}</a>
                </dt>
                <dd>{n(l.count)}</dd>
              </div>
            ))}
          </dl>
          {counts.byTactic.length > 0 && (
            <>
              <h3>By tactic</h3>
              <dl class="counts">
                {counts.byTactic.slice(0, 12).map((t) => (
                  <div key={t.name}>
                    <dt>
                      <a href={timelineHref(caseId, { tactics: [t.name] })}>{visible(t.name)}</a>
                    </dt>
                    <dd>{n(t.count)}</dd>
                  </div>
                ))}
              </dl>
            </>
          )}
        </>
      )}
    </section>
  );
}

function MatchesPanel({ counts }: { counts: CountMatchesResponse | string }) {
  return (
    <section class="panel" aria-labelledby="matches-title">
      <h2 id="matches-title">IOC matches</h2>
      {typeof counts === "string" ? (
        <p class="error">{counts}</p>
      ) : (
        <>
          <p class="big">{n(counts.total)}</p>
          <p class="status">in {n(counts.distinctEvents)} events</p>
          <dl class="counts">
            {counts.byType.map((t) => (
              <div key={t.iocType}>
                <dt>{typeName(t.iocType)}</dt>
                <dd>{n(t.count)}</dd>
              </div>
            ))}
          </dl>
        </>
      )}
    </section>
  );
}
