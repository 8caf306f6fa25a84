// A case's detections: by level, by rule, and as an ATT&CK matrix (tactics in kill-chain
// order, the techniques detected under each); every count opens its events in the
// timeline, every rule its details with the Sigma YAML.

import { useEffect, useState } from "preact/hooks";
import { client, errorText } from "./api.js";
import { visible } from "./text.js";
import { DetectService, RuleLevel, type CountDetectionsResponse } from "./gen/casescope/detect/v1/detect_pb.js";
import { timelineHref } from "./timeline/query.js";
import { Head } from "./ui.js";

/** ATT&CK enterprise tactics in kill-chain order (the detect service writes them so). */
export const TACTICS = [
  "reconnaissance",
  "resource-development",
  "initial-access",
  "execution",
  "persistence",
  "privilege-escalation",
  "defense-evasion",
  "credential-access",
  "discovery",
  "lateral-movement",
  "collection",
  "command-and-control",
  "exfiltration",
  "impact",
];

export function levelName(level: RuleLevel): string {
  return (RuleLevel[level] ?? "unknown").toLowerCase();
}

interface Matrix {
  counts: CountDetectionsResponse;
  /** Per tactic (in order), its techniques with counts. */
  columns: { tactic: string; count: bigint; techniques: { name: string; count: bigint }[] }[];
}

async function load(caseId: string): Promise<Matrix> {
  const detect = client(DetectService);
  const counts = await detect.countDetections({ caseId: { value: caseId } });
  const rank = (t: string) => {
    const at = TACTICS.indexOf(t);
    return at < 0 ? TACTICS.length : at;
  };
  const tactics = [...counts.byTactic].sort((a, b) => rank(a.name) - rank(b.name) || a.name.localeCompare(b.name));
  // One count per tactic gives the techniques detected under it (a detection counts
  // under each of its tactics and techniques).
  const columns = await Promise.all(
    tactics.map(async (t) => {
      const within = await detect.countDetections({ caseId: { value: caseId }, filter: { tactics: [t.name] } });
      return { tactic: t.name, count: t.count, techniques: within.byTechnique.map((x) => ({ name: x.name, count: x.count })) };
    }),
  );
  return { counts, columns };
}

export function Detections({ caseId }: { caseId: string }) {
  const [matrix, setMatrix] = useState<Matrix | string | null>(null);
  useEffect(() => {
    let live = true;
    load(caseId).then(
      (m) => live && setMatrix(m),
      (e) => live && setMatrix(errorText(e)),
    );
    return () => {
      live = false;
    };
  }, [caseId]);
  return (
    <section aria-labelledby="detections-screen-title">
      <p>
        <a href="#/cases">Cases</a> › <a href={`#/cases/${caseId}`}>Case overview</a>
      </p>
      <h1 id="detections-screen-title">Detections</h1>
      {matrix === null && (
        <p class="status" role="status">
          Loading detections…
        </p>
      )}
      {typeof matrix === "string" && (
        <p class="error" role="alert">
          {matrix}
        </p>
      )}
      {matrix && typeof matrix === "object" && <DetectionsBody caseId={caseId} matrix={matrix} />}
    </section>
  );
}

function DetectionsBody({ caseId, matrix }: { caseId: string; matrix: Matrix }) {
  const { counts, columns } = matrix;
  if (counts.total === 0n) {
    return <p class="status">No detection in this case (yet): rules fire as files are processed.</p>;
  }
  return (
    <>
      <p class="status">
        {counts.total.toLocaleString()} detections. <a href={timelineHref(caseId, { detections: true })}>Every detected event</a>
      </p>
      <h2>By level</h2>
      <ul class="tags">
        {counts.byLevel.map((l) => (
          <li key={l.level} class="chip">
            <a href={timelineHref(caseId, { levels: [levelName(l.level)] })}>
              {levelName(l.level)}: {l.count.toLocaleString()}
            </a>
          </li>
        ))}
      </ul>
      <h2 id="matrix-title">ATT&amp;CK matrix</h2>
      {columns.length === 0 ? (
        <p class="status">No detection carries an ATT&amp;CK tactic.</p>
      ) : (
        <div class="matrix" role="region" aria-labelledby="matrix-title" tabIndex={0}>
          {columns.map((c) => (
            <section key={c.tactic} class="tactic" aria-label={`Tactic ${c.tactic}`}>
              <h3>
                <a href={timelineHref(caseId, { tactics: [c.tactic] })}>{visible(c.tactic)}</a>
                <span class="count">{c.count.toLocaleString()}</span>
              </h3>
              <ul class="plain">
                {c.techniques.map((t) => (
                  <li key={t.name}>
                    <a
                      class="mono"
                      href={`https://attack.mitre.org/techniques/${encodeURIComponent(t.name.replace(".", "/"))}/`}
                      rel="noopener noreferrer external"
                      target="_blank"
                      title="ATT&CK technique page (mitre.org)"
                    >
                      {visible(t.name)}
                    </a>
                    <span class="count">{t.count.toLocaleString()}</span>
                  </li>
                ))}
                {c.techniques.length === 0 && <li class="status">no technique tagged</li>}
              </ul>
            </section>
          ))}
        </div>
      )}
      <h2>By rule</h2>
      <table class="grid">
        <Head columns={["Rule", "Level", ["Detections", "num"], "Events"]} />
        <tbody>
          {counts.byRule.map((r) => (
            <tr key={r.ruleId?.value}>
              <td>
                <a href={`#/rules/${encodeURIComponent(r.ruleId?.value ?? "")}?case=${caseId}`}>{visible(r.ruleTitle)}</a>
              </td>
              <td>
                <span class={`badge level-${levelName(r.level)}`}>{levelName(r.level)}</span>
              </td>
              <td class="num">{r.count.toLocaleString()}</td>
              <td>
                <a href={timelineHref(caseId, { rules: [r.ruleId?.value ?? ""] })} aria-label={`Open in the timeline: events of ${r.ruleTitle}`}>
                  Open in the timeline
                </a>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {counts.byRuleTruncated && <p class="status">Only the {counts.byRule.length} rules with the most detections are listed.</p>}
    </>
  );
}
