// A case's members and lifecycle, on its overview: who holds which role on the case
// (granted, changed and removed by admins and the case's case admins), and archiving /
// restoring the case (with the reason a restore was refused).

import { useEffect, useState } from "preact/hooks";
import { client, errorText } from "./api.js";
import { visible } from "./text.js";
import { Alert, Head, attempt, collect } from "./ui.js";
import { CasesService, CaseState, type Case } from "./gen/casescope/cases/v1/cases_pb.js";
import { AdminService, CaseRole, type CaseRoleGrant } from "./gen/casescope/gateway/v1/auth_pb.js";

const CASE_ROLES: [CaseRole, string][] = [
  [CaseRole.VIEWER, "viewer"],
  [CaseRole.ANALYST, "analyst"],
  [CaseRole.CASE_ADMIN, "case admin"],
];

function roleName(role: CaseRole): string {
  return CASE_ROLES.find(([r]) => r === role)?.[1] ?? "none";
}

export function CaseSettings({ kase, onChanged }: { kase: Case; onChanged: () => void }) {
  return (
    <details class="more">
      <summary>Members and archive</summary>
      <Members caseId={kase.id?.value ?? ""} />
      <Lifecycle kase={kase} onChanged={onChanged} />
    </details>
  );
}

function Members({ caseId }: { caseId: string }) {
  const [grants, setGrants] = useState<CaseRoleGrant[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [reload, setReload] = useState(0);
  const [username, setUsername] = useState("");
  const [role, setRole] = useState<CaseRole>(CaseRole.ANALYST);
  useEffect(() => {
    let live = true;
    collect<CaseRoleGrant>(async (cursor) => {
      const page = await client(AdminService).listCaseRoles({ caseId: { value: caseId }, page: { pageSize: 200, cursor } });
      return { items: page.grants, next: page.page?.nextCursor ?? "" };
    }, 5000).then(
      ([all]) => live && setGrants(all),
      (failure) => live && setError(errorText(failure)),
    );
    return () => {
      live = false;
    };
  }, [caseId, reload]);
  const run = (action: () => Promise<unknown>) => attempt(action, setError, () => setReload((n) => n + 1));
  return (
    <section aria-labelledby="members-title">
      <h2 id="members-title">Members</h2>
      <form
        class="inline"
        aria-label="Give a user a role on this case"
        onSubmit={(e) => {
          e.preventDefault();
          void run(async () => {
            await client(AdminService).setCaseRole({ username: username.trim(), caseId: { value: caseId }, role });
            setUsername("");
          });
        }}
      >
        <label>
          User name
          <input value={username} required onInput={(e) => setUsername(e.currentTarget.value)} />
        </label>
        <label>
          Case role
          <select value={role} onChange={(e) => setRole(Number(e.currentTarget.value) as CaseRole)}>
            {CASE_ROLES.map(([r, name]) => (
              <option key={r} value={r}>
                {name}
              </option>
            ))}
          </select>
        </label>
        <button type="submit">Grant</button>
      </form>
      <Alert message={error} />
      {grants?.length === 0 && <p class="status">Nobody holds a role on this case (administrators see every case).</p>}
      {grants && grants.length > 0 && (
        <table class="grid" aria-label="Members of the case">
          <Head columns={["User", "Role", "Actions"]} />
          <tbody>
            {grants.map((g) => (
              <tr key={g.userId?.value}>
                <td class="mono">{visible(g.username)}</td>
                <td>
                  <select
                    aria-label={`Case role of ${g.username}`}
                    value={g.role}
                    onChange={(e) =>
                      void run(() =>
                        client(AdminService).setCaseRole({
                          userId: g.userId,
                          caseId: { value: caseId },
                          role: Number(e.currentTarget.value) as CaseRole,
                        }),
                      )
                    }
                  >
                    {CASE_ROLES.map(([r, name]) => (
                      <option key={r} value={r}>
                        {name}
                      </option>
                    ))}
                  </select>
                </td>
                <td>
                  <button
                    type="button"
                    class="small"
                    onClick={() => void run(() => client(AdminService).removeCaseRole({ userId: g.userId, caseId: { value: caseId } }))}
                  >
                    Remove {g.username} ({roleName(g.role)})
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

function Lifecycle({ kase, onChanged }: { kase: Case; onChanged: () => void }) {
  const [error, setError] = useState<string | null>(null);
  const [confirming, setConfirming] = useState(false);
  const id = kase.id;
  const run = (action: () => Promise<unknown>) =>
    attempt(action, setError, () => {
      setConfirming(false);
      onChanged();
    });
  return (
    <section aria-labelledby="lifecycle-title">
      <h2 id="lifecycle-title">Archive</h2>
      {kase.restoreError && (
        <p class="error">The last restore was refused: {visible(kase.restoreError)}</p>
      )}
      {kase.state === CaseState.OPEN && !confirming && (
        <button type="button" onClick={() => setConfirming(true)}>
          Archive this case…
        </button>
      )}
      {kase.state === CaseState.OPEN && confirming && (
        <div class="notice" role="alertdialog" aria-labelledby="archive-question">
          <p id="archive-question">
            Archive “{visible(kase.name)}”? Its evidence is packed with SHA-256 sums, its events and detections
            leave the search stores, and it is read-only until restored.
          </p>
          <div class="row">
            <button type="button" onClick={() => void run(() => client(CasesService).archiveCase({ id }))}>
              Archive
            </button>
            <button type="button" class="link" onClick={() => setConfirming(false)}>
              Cancel
            </button>
          </div>
        </div>
      )}
      {kase.state === CaseState.ARCHIVED && (
        <button type="button" onClick={() => void run(() => client(CasesService).restoreCase({ id }))}>
          Restore this case
        </button>
      )}
      {kase.state === CaseState.RESTORING && <p class="status">Restoring: the evidence is verified and ingested again.</p>}
      <Alert message={error} />
    </section>
  );
}
