// The detection rules: the ruleset (version, counts, digest), rules listed with filters
// (title, level, enabled, refused with the reason), enabled or disabled one at a time;
// a rule's details with its Sigma YAML, and its events in a case when opened from one.

import { useEffect, useState } from "preact/hooks";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { client, errorText } from "./api.js";
import { visible } from "./text.js";
import {
  DetectService,
  RuleLevel,
  RuleStatus,
  type Rule,
  type Ruleset,
} from "./gen/casescope/detect/v1/detect_pb.js";
import { levelName } from "./detections.js";
import { timelineHref } from "./timeline/query.js";
import { Alert, FilterForm, Head, attempt, usePaged } from "./ui.js";

const PAGE = 200;

function statusName(status: RuleStatus): string {
  return (RuleStatus[status] ?? "unknown").toLowerCase();
}

function ruleHref(rule: Rule): string {
  return `#/rules/${encodeURIComponent(rule.id?.value ?? "")}`;
}

export function Rules() {
  const [ruleset, setRuleset] = useState<Ruleset | string | null>(null);
  const [title, setTitle] = useState("");
  const [level, setLevel] = useState<RuleLevel | 0>(0);
  const [state, setState] = useState<"all" | "enabled" | "disabled" | "refused">("all");
  const [reload, setReload] = useState(0);
  const list = usePaged<Rule>(async (cursor) => {
    const page = await client(DetectService).listRules({
      titleContains: title.trim(),
      levels: level ? [level] : [],
      ...(state === "enabled" ? { enabled: true } : state === "disabled" ? { enabled: false } : {}),
      refusedOnly: state === "refused",
      page: { pageSize: PAGE, cursor },
    });
    return { items: page.rules, next: page.page?.nextCursor ?? "", total: page.total };
  }, [level, state, reload]);
  const rules = list.items;
  const total = list.total ?? 0n;
  const error = list.error;
  useEffect(() => {
    client(DetectService)
      .getRuleset({})
      .then(setRuleset, (e) => setRuleset(errorText(e)));
  }, [reload]);

  const toggle = (rule: Rule) =>
    attempt(
      () => client(DetectService).setRuleState({ selector: { ruleIds: rule.id ? [rule.id] : [] }, enabled: !rule.enabled }),
      list.setError,
      () => setReload((n) => n + 1),
    );

  return (
    <section aria-labelledby="rules-title">
      <h1 id="rules-title">Rules</h1>
      {typeof ruleset === "string" && <p class="error">{ruleset}</p>}
      {ruleset && typeof ruleset === "object" && (
        <p class="status">
          Ruleset version {ruleset.version.toString()}: {ruleset.totalRules} rules, {ruleset.loadedRules} loaded,{" "}
          {ruleset.enabledRules} enabled, {ruleset.refusedRules} refused, {ruleset.correlationRules} correlations
          {ruleset.updatedAt && ` · updated ${new Date(timestampMs(ruleset.updatedAt)).toISOString().slice(0, 16).replace("T", " ")}`}
          {ruleset.digest && (
            <>
              {" "}
              · digest <span class="mono">{ruleset.digest.slice(0, 16)}…</span>
            </>
          )}
        </p>
      )}
      <p class="status">
        Rules are imported with the CLI: <code>casescope rules import DIR|ZIP|FILE…</code>
      </p>
      <FilterForm label="Filter the rules" onSubmit={list.reload}>
        <label>
          Title contains
          <input type="search" value={title} onInput={(e) => setTitle(e.currentTarget.value)} />
        </label>
        <label>
          Level
          <select value={level} onChange={(e) => setLevel(Number(e.currentTarget.value) as RuleLevel)}>
            <option value={0}>any</option>
            {[RuleLevel.INFORMATIONAL, RuleLevel.LOW, RuleLevel.MEDIUM, RuleLevel.HIGH, RuleLevel.CRITICAL].map((l) => (
              <option key={l} value={l}>
                {levelName(l)}
              </option>
            ))}
          </select>
        </label>
        <label>
          State
          <select value={state} onChange={(e) => setState(e.currentTarget.value as typeof state)}>
            <option value="all">all</option>
            <option value="enabled">enabled</option>
            <option value="disabled">disabled</option>
            <option value="refused">refused</option>
          </select>
        </label>
      </FilterForm>
      <Alert message={error} />
      {rules === null && !error && (
        <p class="status" role="status">
          Loading rules…
        </p>
      )}
      {rules !== null && (
        <p class="status" role="status">
          {total.toLocaleString()} {total === 1n ? "rule" : "rules"}
          {rules.length < Number(total) && ` (${rules.length.toLocaleString()} listed)`}
        </p>
      )}
      {rules !== null && rules.length > 0 && (
        <table class="grid">
          <Head columns={["Rule", "Level", "Status", "Tactics", "State"]} />
          <tbody>
            {rules.map((r) => (
              <tr key={r.id?.value}>
                <td>
                  <a href={ruleHref(r)}>{visible(r.title || r.sourcePath)}</a>
                  {r.refusalReason && <p class="error small-text">refused: {visible(r.refusalReason)}</p>}
                </td>
                <td>
                  <span class={`badge level-${levelName(r.level)}`}>{levelName(r.level)}</span>
                </td>
                <td>{statusName(r.status)}</td>
                <td>{r.tactics.map(visible).join(", ")}</td>
                <td>
                  {r.refusalReason ? (
                    "refused"
                  ) : (
                    <label class="check">
                      <input type="checkbox" checked={r.enabled} onChange={() => void toggle(r)} />
                      {r.enabled ? "enabled" : "disabled"}
                    </label>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {list.hasMore && (
        <button type="button" onClick={list.more}>
          More rules
        </button>
      )}
    </section>
  );
}

export function RuleDetails({ id, caseId }: { id: string; caseId: string | null }) {
  const [rule, setRule] = useState<Rule | string | null>(null);
  useEffect(() => {
    let live = true;
    client(DetectService)
      .getRule({ id: { value: id } })
      .then(
        (r) => live && setRule(r),
        (e) => live && setRule(errorText(e)),
      );
    return () => {
      live = false;
    };
  }, [id]);
  if (rule === null) {
    return (
      <p class="status" role="status">
        Loading the rule…
      </p>
    );
  }
  if (typeof rule === "string") {
    return (
      <p class="error" role="alert">
        {rule}
      </p>
    );
  }
  const rows: [string, string][] = [
    ["Id", rule.id?.value ?? ""],
    ["Level", levelName(rule.level)],
    ["Status", statusName(rule.status)],
    ["State", rule.refusalReason ? `refused: ${rule.refusalReason}` : rule.enabled ? "enabled" : "disabled"],
    ["Author", rule.author],
    ["Log source", [rule.logsource?.product, rule.logsource?.category, rule.logsource?.service].filter(Boolean).join(" / ")],
    ["Tags", rule.tags.join(", ")],
    ["Techniques", rule.techniques.join(", ")],
    ["False positives", rule.falsePositives.join("; ")],
    ["Source", `${rule.sourcePath}${rule.sourceLabel ? ` (${rule.sourceLabel})` : ""}`],
    ["Date", [rule.ruleDate, rule.ruleModified && `modified ${rule.ruleModified}`].filter(Boolean).join(", ")],
    ["Content SHA-256", rule.contentSha256],
  ];
  return (
    <section aria-labelledby="rule-title">
      <p>
        {caseId ? (
          <>
            <a href={`#/cases/${caseId}/detections`}>Detections</a> ›{" "}
            <a href={timelineHref(caseId, { rules: [id] })}>Events of this rule in the case</a>
          </>
        ) : (
          <a href="#/rules">Rules</a>
        )}
      </p>
      <h1 id="rule-title">{visible(rule.title || "(untitled rule)")}</h1>
      {rule.description && <p class="prose">{visible(rule.description)}</p>}
      <dl class="facts">
        {rows
          .filter(([, value]) => value)
          .map(([name, value]) => (
            <div key={name}>
              <dt>{name}</dt>
              <dd>{visible(value)}</dd>
            </div>
          ))}
      </dl>
      {rule.references.length > 0 && (
        <>
          <h2>References</h2>
          <ul>
            {rule.references.map((r) => (
              <li key={r} class="mono">
                {/* Shown, not linked: a rule file is someone else's text. */}
                {visible(r)}
              </li>
            ))}
          </ul>
        </>
      )}
      <h2 id="yaml-title">Sigma YAML</h2>
      <pre class="raw" tabIndex={0} aria-labelledby="yaml-title">
        {visible(rule.yaml)}
      </pre>
    </section>
  );
}
