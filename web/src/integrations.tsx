// Integrations in the browser. A case's page: push it to DFIR-IRIS, enrich its IOCs from
// OpenCTI, import OpenCTI's indicators, and follow each delivery (polled with backoff
// while one is unfinished; a failed one retried). The administrators' page: add an
// integration (its secret typed once, never shown again), test it, delete it.

import type { ComponentChildren } from "preact";
import { useEffect, useState } from "preact/hooks";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { client, errorText } from "./api.js";
import { visible } from "./text.js";
import { Alert, Head, attempt, collect, usePaged } from "./ui.js";
import {
  DeliveryKind,
  DeliveryStatus,
  ExportTopic,
  IntegrationKind,
  IntegrationsService,
  type Delivery,
  type Integration,
  type TestIntegrationResponse,
} from "./gen/casescope/integrations/v1/integrations_pb.js";

function when(ts: Parameters<typeof timestampMs>[0] | undefined): string {
  return ts ? new Date(timestampMs(ts)).toISOString().replace("T", " ").slice(0, 19) : "";
}

function word(name: string | undefined): string {
  return (name ?? "?").toLowerCase().replace(/_/g, " ");
}

const KIND_NAMES: [IntegrationKind, string][] = [
  [IntegrationKind.DFIR_IRIS, "DFIR-IRIS"],
  [IntegrationKind.OPENCTI, "OpenCTI"],
  [IntegrationKind.WEBHOOK, "Webhook"],
];

function kindName(kind: IntegrationKind): string {
  return KIND_NAMES.find(([k]) => k === kind)?.[1] ?? "?";
}

const TOPICS: [ExportTopic, string][] = [
  [ExportTopic.DETECTIONS, "Detections"],
  [ExportTopic.IOC_MATCHES, "IOC matches"],
  [ExportTopic.FILE_STATUS, "File status"],
  [ExportTopic.REPORTS, "Reports"],
  [ExportTopic.CASES, "Cases"],
];

const UNFINISHED = [DeliveryStatus.QUEUED, DeliveryStatus.IN_PROGRESS, DeliveryStatus.RETRY_SCHEDULED];

/** Every integration (names, kinds and URLs: never a secret). */
async function integrations(): Promise<Integration[]> {
  const [all] = await collect<Integration>(async (cursor) => {
    const page = await client(IntegrationsService).listIntegrations({ page: { pageSize: 200, cursor } });
    return { items: page.integrations, next: page.page?.nextCursor ?? "" };
  }, 1_000);
  return all;
}

function useIntegrations(reload: number): [Integration[] | null, string | null] {
  const [list, setList] = useState<Integration[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    let live = true;
    integrations().then(
      (all) => live && (setList(all), setError(null)),
      (failure) => live && setError(errorText(failure)),
    );
    return () => {
      live = false;
    };
  }, [reload]);
  return [list, error];
}

/** One action on the case: the integrations of its kind to choose from, its options. */
function Action({
  title,
  kind,
  choices,
  busy,
  run,
  children,
}: {
  title: string;
  kind: IntegrationKind;
  choices: Integration[];
  busy: boolean;
  run: (integration: Integration) => void;
  children?: ComponentChildren;
}) {
  const mine = choices.filter((i) => i.kind === kind && i.enabled);
  const [chosen, setChosen] = useState("");
  const target = mine.find((i) => i.id?.value === chosen) ?? mine[0];
  const id = title.toLowerCase().replace(/[^a-z]+/g, "-");
  return (
    <form
      class="panel"
      aria-labelledby={id}
      onSubmit={(e) => {
        e.preventDefault();
        if (target) run(target);
      }}
    >
      <h2 id={id}>{title}</h2>
      {mine.length === 0 ? (
        <p class="status">No {kindName(kind)} integration is configured (an administrator adds one under Admin › Integrations).</p>
      ) : (
        <>
          {mine.length > 1 && (
            <label>
              {kindName(kind)}{" "}
              <select value={target?.id?.value} onChange={(e) => setChosen((e.target as HTMLSelectElement).value)}>
                {mine.map((i) => (
                  <option key={i.id?.value} value={i.id?.value}>
                    {visible(i.name)}
                  </option>
                ))}
              </select>
            </label>
          )}
          {children}
          <button type="submit" disabled={busy}>
            {title}
            {mine.length === 1 ? ` (${visible(mine[0]?.name ?? "")})` : ""}
          </button>
        </>
      )}
    </form>
  );
}

/** `#/cases/<id>/integrations`. */
export function CaseIntegrations({ caseId }: { caseId: string }) {
  const [choices, listError] = useIntegrations(0);
  const deliveries = usePaged(async (cursor) => {
    const page = await client(IntegrationsService).listDeliveries({ caseId: { value: caseId }, page: { pageSize: 100, cursor } });
    return { items: page.deliveries, next: page.page?.nextCursor ?? "" };
  }, [caseId]);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [iocs, setIocs] = useState(true);
  const [timeline, setTimeline] = useState(true);
  const [force, setForce] = useState(false);
  const [confidence, setConfidence] = useState("50");
  const [labels, setLabels] = useState("");
  const pending = (deliveries.items ?? []).some((d) => UNFINISHED.includes(d.status));
  useEffect(() => {
    if (!pending) return;
    let delay = 1000;
    let timer = 0;
    const tick = () => {
      deliveries.reload();
      delay = Math.min(delay * 2, 10_000);
      timer = window.setTimeout(tick, delay);
    };
    timer = window.setTimeout(tick, delay);
    return () => window.clearTimeout(timer);
  }, [pending, caseId]);
  const act = (action: () => Promise<unknown>) => {
    setBusy(true);
    void attempt(action, setError, deliveries.reload).finally(() => setBusy(false));
  };
  const caseRef = { value: caseId };
  return (
    <main class="integrations">
      <p class="crumbs">
        <a href="#/cases">Cases</a> › <a href={`#/cases/${caseId}`}>Case</a> › Integrations
      </p>
      <h1>Integrations</h1>
      <Alert message={listError ?? error} />
      {choices === null && !listError && <p class="status">Loading…</p>}
      {choices && (
        <div class="actions">
          <Action
            title="Push to DFIR-IRIS"
            kind={IntegrationKind.DFIR_IRIS}
            choices={choices}
            busy={busy}
            run={(target) =>
              act(() =>
                client(IntegrationsService).pushCaseToIris({
                  caseId: caseRef,
                  integrationId: target.id,
                  includeIocs: iocs,
                  includeTaggedTimeline: timeline,
                }),
              )
            }
          >
            <label class="check">
              <input type="checkbox" checked={iocs} onChange={(e) => setIocs((e.target as HTMLInputElement).checked)} /> IOCs
            </label>
            <label class="check">
              <input type="checkbox" checked={timeline} onChange={(e) => setTimeline((e.target as HTMLInputElement).checked)} />{" "}
              Tagged and starred events, with their comments
            </label>
            <p class="hint">Pushing again updates what changed in IRIS; nothing is duplicated.</p>
          </Action>
          <Action
            title="Enrich IOCs from OpenCTI"
            kind={IntegrationKind.OPENCTI}
            choices={choices}
            busy={busy}
            run={(target) => act(() => client(IntegrationsService).enrichIocs({ caseId: caseRef, integrationId: target.id, force }))}
          >
            <label class="check">
              <input type="checkbox" checked={force} onChange={(e) => setForce((e.target as HTMLInputElement).checked)} /> Also
              IOCs enriched before
            </label>
          </Action>
          <Action
            title="Import OpenCTI indicators"
            kind={IntegrationKind.OPENCTI}
            choices={choices}
            busy={busy}
            run={(target) =>
              act(() =>
                client(IntegrationsService).importOpenCtiIndicators({
                  caseId: caseRef,
                  integrationId: target.id,
                  minConfidence: Math.max(0, Math.min(100, Number(confidence) || 0)),
                  labels: labels
                    .split(",")
                    .map((l) => l.trim())
                    .filter((l) => l !== ""),
                }),
              )
            }
          >
            <label>
              Minimum confidence{" "}
              <input type="number" min={0} max={100} value={confidence} onInput={(e) => setConfidence((e.target as HTMLInputElement).value)} />
            </label>
            <label>
              Labels <input value={labels} placeholder="any label" onInput={(e) => setLabels((e.target as HTMLInputElement).value)} />
            </label>
          </Action>
        </div>
      )}
      <Deliveries caseId={caseId} list={deliveries} setError={setError} />
    </main>
  );
}

function Deliveries({
  caseId,
  list,
  setError,
}: {
  caseId: string;
  list: ReturnType<typeof usePaged<Delivery>>;
  setError: (message: string | null) => void;
}) {
  return (
    <section class="panel" aria-labelledby="delivery-list">
      <h2 id="delivery-list">Deliveries</h2>
      <Alert message={list.error} />
      {list.items === null && !list.error && <p class="status">Loading…</p>}
      {list.items?.length === 0 && <p class="status">No delivery yet.</p>}
      {list.items && list.items.length > 0 && (
        <table id="delivery-table" class="grid">
          <Head columns={["What", "Target", "Status", ["Items", "num"], "Started", ""]} />
          <tbody>
            {list.items.map((d) => (
              <tr key={d.id?.value} data-status={word(DeliveryStatus[d.status])}>
                <td>{word(DeliveryKind[d.kind])}</td>
                <td>
                  {visible(d.target)}
                  {d.remoteReference && <div class="hint">remote {visible(d.remoteReference)}</div>}
                </td>
                <td>
                  {word(DeliveryStatus[d.status])} (attempt {d.attempts} of {d.maxAttempts})
                  {d.lastError && <div class={d.status === DeliveryStatus.SUCCEEDED ? "hint" : "error"}>{visible(d.lastError)}</div>}
                </td>
                <td class="num">
                  {d.itemsSucceeded.toString()} of {d.itemsTotal.toString()}
                  {d.itemsFailed > 0n && ` (${d.itemsFailed} refused)`}
                </td>
                <td>{when(d.createdAt)}</td>
                <td>
                  {d.status === DeliveryStatus.FAILED && (
                    <button
                      type="button"
                      onClick={() =>
                        void attempt(
                          () => client(IntegrationsService).retryDelivery({ id: d.id, caseId: { value: caseId } }),
                          setError,
                          list.reload,
                        )
                      }
                    >
                      Retry
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
  );
}

/** Admin › Integrations: add, test, delete. */
export function AdminIntegrations() {
  const [reload, setReload] = useState(0);
  const [list, listError] = useIntegrations(reload);
  const [error, setError] = useState<string | null>(null);
  const [tests, setTests] = useState<Record<string, TestIntegrationResponse>>({});
  const [confirming, setConfirming] = useState<string | null>(null);
  const [kind, setKind] = useState(IntegrationKind.DFIR_IRIS);
  const [name, setName] = useState("");
  const [url, setUrl] = useState("");
  const [secret, setSecret] = useState("");
  const [topics, setTopics] = useState<ExportTopic[]>([ExportTopic.DETECTIONS]);
  const done = () => setReload((n) => n + 1);
  return (
    <>
      <form
        class="panel"
        aria-labelledby="new-integration"
        onSubmit={(e) => {
          e.preventDefault();
          void attempt(
            () =>
              client(IntegrationsService).createIntegration({
                kind,
                name,
                baseUrl: url,
                secret: secret ? { source: { case: "value", value: secret } } : undefined,
                settings:
                  kind === IntegrationKind.WEBHOOK
                    ? { kindSettings: { case: "webhook", value: { topics, caseIds: [], signatureHeader: "" } } }
                    : undefined,
              }),
            setError,
            () => {
              // The secret is not kept in the page once it is sent.
              setSecret("");
              setName("");
              setUrl("");
              done();
            },
          );
        }}
      >
        <h2 id="new-integration">New integration</h2>
        <label>
          Kind{" "}
          <select value={String(kind)} onChange={(e) => setKind(Number((e.target as HTMLSelectElement).value) as IntegrationKind)}>
            {KIND_NAMES.map(([k, label]) => (
              <option key={k} value={String(k)}>
                {label}
              </option>
            ))}
          </select>
        </label>
        <label>
          Name <input required maxLength={100} value={name} onInput={(e) => setName((e.target as HTMLInputElement).value)} />
        </label>
        <label>
          URL <input required type="url" placeholder="https://iris.example.org" value={url} onInput={(e) => setUrl((e.target as HTMLInputElement).value)} />
        </label>
        <label>
          API key, token or signing key{" "}
          <input type="password" autoComplete="off" value={secret} onInput={(e) => setSecret((e.target as HTMLInputElement).value)} />
        </label>
        {kind === IntegrationKind.WEBHOOK && (
          <fieldset>
            <legend>Facts sent</legend>
            {TOPICS.map(([topic, label]) => (
              <label class="check" key={label}>
                <input
                  type="checkbox"
                  checked={topics.includes(topic)}
                  onChange={(e) =>
                    setTopics((current) =>
                      (e.target as HTMLInputElement).checked ? [...current, topic] : current.filter((t) => t !== topic),
                    )
                  }
                />{" "}
                {label}
              </label>
            ))}
          </fieldset>
        )}
        <button type="submit">Add integration</button>
        <Alert message={error} />
      </form>
      <section class="panel" aria-labelledby="integration-list">
        <h2 id="integration-list">Integrations</h2>
        <Alert message={listError} />
        {list?.length === 0 && <p class="status">No integration yet.</p>}
        {list && list.length > 0 && (
          <table id="integration-table" class="grid">
            <Head columns={["Name", "Kind", "URL", "Secret", "Health", ""]} />
            <tbody>
              {list.map((i) => {
                const id = i.id?.value ?? "";
                const test = tests[id];
                return (
                  <tr key={id}>
                    <td>{visible(i.name)}</td>
                    <td>{kindName(i.kind)}</td>
                    <td>{visible(i.baseUrl)}</td>
                    <td>{i.secretSet ? "set" : "none"}</td>
                    <td>
                      {test ? (
                        <span class={test.ok ? "ok" : "error"} data-test={test.ok ? "ok" : "failed"}>
                          {test.ok ? "reachable" : "failed"}
                          {test.remoteVersion && `, version ${visible(test.remoteVersion)}`}
                          {test.message && `: ${visible(test.message)}`}
                        </span>
                      ) : (
                        i.health?.lastError && <span class="error">{visible(i.health.lastError)}</span>
                      )}
                    </td>
                    <td>
                      <button
                        type="button"
                        onClick={() =>
                          void attempt(
                            async () => {
                              const answer = await client(IntegrationsService).testIntegration({ id: i.id });
                              setTests((current) => ({ ...current, [id]: answer }));
                            },
                            setError,
                            () => undefined,
                          )
                        }
                      >
                        Test
                      </button>{" "}
                      {confirming === id ? (
                        <>
                          <button
                            type="button"
                            class="danger"
                            onClick={() => {
                              setConfirming(null);
                              void attempt(() => client(IntegrationsService).deleteIntegration({ id: i.id }), setError, done);
                            }}
                          >
                            Delete for good
                          </button>{" "}
                          <button type="button" onClick={() => setConfirming(null)}>
                            Keep
                          </button>
                        </>
                      ) : (
                        <button type="button" onClick={() => setConfirming(id)}>
                          Delete
                        </button>
                      )}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        )}
      </section>
    </>
  );
}
