// A case's IOCs: listed with their match counts (filter by value and type), added one at
// a time, imported from a file (CSV, STIX 2.1, MISP event, one value per line) with the
// result of every refused record, enabled/disabled, deleted; the case hunted again; the
// matches by event time, each opening its event in the timeline.

import { useEffect, useState } from "preact/hooks";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { client, errorText } from "./api.js";
import { visible } from "./text.js";
import {
  IocImportFormat,
  IocService,
  IocType,
  Tlp,
  type ImportIocsResponse,
  type Ioc,
  type IocMatch,
} from "./gen/casescope/ioc/v1/ioc_pb.js";
import { timelineHref, quote } from "./timeline/query.js";
import { Alert, FilterForm, Head, attempt, usePaged } from "./ui.js";

const PAGE = 200;
/** The largest file one ImportIocsFile request takes (the CLI streams larger ones). */
const MAX_IMPORT_BYTES = 15 * 1024 * 1024;

export function typeName(kind: IocType): string {
  return (IocType[kind] ?? "unknown").toLowerCase().replace(/_/g, "-");
}

const TYPES = Object.values(IocType).filter((v): v is IocType => typeof v === "number" && v !== IocType.UNSPECIFIED);
const TLPS: [Tlp, string][] = [
  [Tlp.CLEAR, "clear"],
  [Tlp.GREEN, "green"],
  [Tlp.AMBER, "amber"],
  [Tlp.AMBER_STRICT, "amber+strict"],
  [Tlp.RED, "red"],
];
const FORMATS: [IocImportFormat, string][] = [
  [IocImportFormat.CSV, "CSV (ours, DFIR-IRIS or MISP)"],
  [IocImportFormat.STIX2_BUNDLE, "STIX 2.1 bundle"],
  [IocImportFormat.MISP_EVENT, "MISP event JSON"],
  [IocImportFormat.TEXT_LINES, "One value per line"],
];

function when(ts: Parameters<typeof timestampMs>[0] | undefined): string {
  return ts ? new Date(timestampMs(ts)).toISOString().replace("T", " ").slice(0, 19) : "";
}

export function Iocs({ caseId }: { caseId: string }) {
  const [contains, setContains] = useState("");
  const [kind, setKind] = useState<IocType>(IocType.UNSPECIFIED);
  const [hunt, setHunt] = useState<string | null>(null);
  // Bumped by every change, so the matches are read again too.
  const [changes, setChanges] = useState(0);
  const caseRef = { value: caseId };
  const list = usePaged<Ioc>(async (cursor) => {
    const page = await client(IocService).listIocs({
      caseId: caseRef,
      valueContains: contains.trim(),
      iocTypes: kind ? [kind] : [],
      page: { pageSize: PAGE, cursor },
    });
    return { items: page.iocs, next: page.page?.nextCursor ?? "", total: page.total };
  }, [caseId, kind, changes]);
  const iocs = list.items;
  const total = list.total ?? 0n;
  const changed = () => setChanges((n) => n + 1);
  const act = (action: () => Promise<unknown>) => attempt(action, list.setError, changed);

  return (
    <section aria-labelledby="iocs-title">
      <p>
        <a href="#/cases">Cases</a> › <a href={`#/cases/${caseId}`}>Case overview</a>
      </p>
      <h1 id="iocs-title">IOCs</h1>
      <div class="side">
        <AddIoc caseId={caseId} onAdded={changed} />
        <ImportIocs caseId={caseId} onImported={changed} />
      </div>
      <div class="row">
        <button
          type="button"
          onClick={() =>
            void act(async () => {
              const answer = await client(IocService).huntCase({ caseId: caseRef });
              setHunt(`Hunting ${answer.enabledIocs} IOCs over ${answer.filesScheduled} files.`);
            })
          }
        >
          Hunt the case again
        </button>
        {hunt && (
          <span class="status" role="status">
            {hunt}
          </span>
        )}
      </div>
      <FilterForm label="Filter the IOCs" onSubmit={list.reload}>
        <label>
          Value contains
          <input type="search" value={contains} onInput={(e) => setContains(e.currentTarget.value)} />
        </label>
        <label>
          Type
          <select value={kind} onChange={(e) => setKind(Number(e.currentTarget.value) as IocType)}>
            <option value={IocType.UNSPECIFIED}>any</option>
            {TYPES.map((t) => (
              <option key={t} value={t}>
                {typeName(t)}
              </option>
            ))}
          </select>
        </label>
      </FilterForm>
      <Alert message={list.error} />
      <p class="status" role="status" id="iocs-count">
        {iocs === null ? "Loading IOCs…" : `${total.toLocaleString()} ${total === 1n ? "IOC" : "IOCs"}`}
        {iocs !== null && iocs.length < Number(total) && ` (${iocs.length.toLocaleString()} listed)`}
      </p>
      {iocs !== null && iocs.length > 0 && (
        <table class="grid">
          <Head columns={["Type", "Value", "Description", "Source", "TLP", ["Matches", "num"], "State", "Actions"]} />
          <tbody>
            {iocs.map((ioc) => (
              <tr key={ioc.id?.value}>
                <td>{typeName(ioc.iocType)}</td>
                <td class="mono">{visible(ioc.value)}</td>
                <td>{visible(ioc.description)}</td>
                <td>{visible(ioc.source)}</td>
                <td>{TLPS.find(([t]) => t === ioc.tlp)?.[1] ?? ""}</td>
                <td class="num">{ioc.matchCount.toLocaleString()}</td>
                <td>
                  <label class="check">
                    <input
                      type="checkbox"
                      checked={ioc.enabled}
                      onChange={() =>
                        void act(() =>
                          client(IocService).updateIoc({
                            caseId: caseRef,
                            id: ioc.id,
                            enabled: !ioc.enabled,
                            updateMask: { paths: ["enabled"] },
                            expectedVersion: ioc.version,
                          }),
                        )
                      }
                    />
                    {ioc.enabled ? "hunted" : "disabled"}
                  </label>
                </td>
                <td>
                  <button
                    type="button"
                    class="small"
                    aria-label={`Delete IOC ${ioc.value}`}
                    onClick={() => void act(() => client(IocService).deleteIoc({ caseId: caseRef, id: ioc.id }))}
                  >
                    Delete
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {list.hasMore && (
        <button type="button" onClick={list.more}>
          More IOCs
        </button>
      )}
      <Matches caseId={caseId} reload={changes} />
    </section>
  );
}

function AddIoc({ caseId, onAdded }: { caseId: string; onAdded: () => void }) {
  const [kind, setKind] = useState<IocType>(IocType.IP);
  const [value, setValue] = useState("");
  const [description, setDescription] = useState("");
  const [tlp, setTlp] = useState<Tlp>(Tlp.AMBER);
  const [error, setError] = useState<string | null>(null);
  const [done, setDone] = useState<string | null>(null);
  const submit = async (e: Event) => {
    e.preventDefault();
    setError(null);
    setDone(null);
    try {
      const created = await client(IocService).createIoc({
        caseId: { value: caseId },
        iocType: kind,
        value,
        description,
        tlp,
        source: "analyst",
      });
      setDone(`Added ${typeName(created.iocType)} ${created.normalizedValue}.`);
      setValue("");
      setDescription("");
      onAdded();
    } catch (failure) {
      setError(errorText(failure));
    }
  };
  return (
    <form onSubmit={submit} aria-labelledby="add-ioc-title">
      <h2 id="add-ioc-title">Add an IOC</h2>
      <label>
        Type
        <select value={kind} onChange={(e) => setKind(Number(e.currentTarget.value) as IocType)}>
          {TYPES.map((t) => (
            <option key={t} value={t}>
              {typeName(t)}
            </option>
          ))}
        </select>
      </label>
      <label>
        Value
        <input value={value} required onInput={(e) => setValue(e.currentTarget.value)} />
      </label>
      <label>
        Description
        <input value={description} onInput={(e) => setDescription(e.currentTarget.value)} />
      </label>
      <label>
        TLP
        <select value={tlp} onChange={(e) => setTlp(Number(e.currentTarget.value) as Tlp)}>
          {TLPS.map(([t, name]) => (
            <option key={t} value={t}>
              {name}
            </option>
          ))}
        </select>
      </label>
      <button type="submit">Add IOC</button>
      <Alert message={error} />
      {done && (
        <p class="status" role="status">
          {visible(done)}
        </p>
      )}
    </form>
  );
}

function ImportIocs({ caseId, onImported }: { caseId: string; onImported: () => void }) {
  const [format, setFormat] = useState<IocImportFormat>(IocImportFormat.CSV);
  const [file, setFile] = useState<File | null>(null);
  const [dryRun, setDryRun] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [result, setResult] = useState<ImportIocsResponse | null>(null);
  const submit = async (e: Event) => {
    e.preventDefault();
    if (!file) return;
    setError(null);
    setResult(null);
    if (file.size > MAX_IMPORT_BYTES) {
      setError(
        `${file.name} is ${(file.size / 1048576).toFixed(1)} MiB; the browser imports at most 15 MiB (use casescope ioc import for larger files).`,
      );
      return;
    }
    setBusy(true);
    try {
      const data = new Uint8Array(await file.arrayBuffer());
      const answer = await client(IocService).importIocsFile({
        header: { caseId: { value: caseId }, format, fileName: file.name, sizeBytes: BigInt(data.length), dryRun },
        data,
      });
      setResult(answer);
      if (!dryRun) onImported();
    } catch (failure) {
      setError(errorText(failure));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form onSubmit={submit} aria-labelledby="import-ioc-title">
      <h2 id="import-ioc-title">Import IOCs</h2>
      <label>
        Format
        <select value={format} onChange={(e) => setFormat(Number(e.currentTarget.value) as IocImportFormat)}>
          {FORMATS.map(([f, name]) => (
            <option key={f} value={f}>
              {name}
            </option>
          ))}
        </select>
      </label>
      <label>
        File
        <input type="file" required onChange={(e) => setFile(e.currentTarget.files?.[0] ?? null)} />
      </label>
      <label class="check">
        <input type="checkbox" checked={dryRun} onChange={(e) => setDryRun(e.currentTarget.checked)} />
        Dry run (check only, import nothing)
      </label>
      <button type="submit" disabled={busy || !file}>
        {busy ? "Importing…" : "Import"}
      </button>
      <Alert message={error} />
      {result && (
        <div role="status" class="import-result">
          <p>
            {dryRun ? "Dry run: " : ""}
            {result.recordsRead.toLocaleString()} records read: {result.created.toLocaleString()}{" "}
            {dryRun ? "would be created" : "created"}, {result.duplicates.toLocaleString()} duplicates,{" "}
            {result.rejectedCount.toLocaleString()} refused
            {result.otherObjects > 0n && ` (${result.otherObjects.toLocaleString()} other objects skipped)`}.
          </p>
          {result.rejected.length > 0 && (
            <table class="grid">
              <caption>Refused records</caption>
              <Head columns={["Where", "Value", "Why"]} />
              <tbody>
                {result.rejected.map((r, i) => (
                  <tr key={i}>
                    <td class="mono">{visible(r.locator)}</td>
                    <td class="mono">{visible(r.value)}</td>
                    <td>{visible(r.reason)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          {result.rejected.length < Number(result.rejectedCount) && (
            <p class="status">Only the first {result.rejected.length} refusals are listed.</p>
          )}
        </div>
      )}
    </form>
  );
}

function Matches({ caseId, reload }: { caseId: string; reload: number }) {
  const [matches, setMatches] = useState<IocMatch[] | string | null>(null);
  const [total, setTotal] = useState(0n);
  useEffect(() => {
    let live = true;
    client(IocService)
      .listMatches({ caseId: { value: caseId }, page: { pageSize: PAGE } })
      .then(
        (answer) => {
          if (!live) return;
          setMatches(answer.matches);
          setTotal(answer.total);
        },
        (e) => live && setMatches(errorText(e)),
      );
    return () => {
      live = false;
    };
  }, [caseId, reload]);
  return (
    <section aria-labelledby="matches-list-title">
      <h2 id="matches-list-title">Matches</h2>
      {matches === null && <p class="status">Loading…</p>}
      {typeof matches === "string" && <p class="error">{matches}</p>}
      {Array.isArray(matches) && (
        <p class="status">
          {total.toLocaleString()} {total === 1n ? "match" : "matches"}
          {matches.length < Number(total) && ` (the first ${matches.length} by event time are listed)`}
        </p>
      )}
      {Array.isArray(matches) && matches.length > 0 && (
        <table class="grid">
          <Head columns={["Event time (UTC)", "IOC", "Field", "Matched value", "Event"]} />
          <tbody>
            {matches.map((m) => (
              <tr key={m.id?.value}>
                <td>{when(m.timestamp)}</td>
                <td class="mono">
                  {typeName(m.iocType)} {visible(m.iocValue)}
                </td>
                <td class="mono">{visible(m.field)}</td>
                <td class="mono">{visible(m.matchedValue)}</td>
                <td>
                  <a href={timelineHref(caseId, { q: `event_id:${quote(m.eventId?.value ?? "")}` })}>Open in the timeline</a>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
