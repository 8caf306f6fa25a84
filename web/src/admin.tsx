// Administration: users (create, global role, disable/enable), API tokens (the signed-in
// user's own: create — the value shown once — and revoke), the audit log (filtered,
// paged) with a verification of its hash chain, and integrations (integrations.tsx).

import { useEffect, useState } from "preact/hooks";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { client, errorText } from "./api.js";
import { visible } from "./text.js";
import {
  AdminService,
  AuditOutcome,
  type ApiToken,
  type AuditEntry,
  type User,
  type VerifyAuditLogResponse,
} from "./gen/casescope/gateway/v1/auth_pb.js";
import { copy } from "./clipboard.js";
import { Alert, FilterForm, Head, attempt, collect, usePaged } from "./ui.js";
import { AdminIntegrations } from "./integrations.js";

const PAGE = 200;
const ROLES = ["admin", "analyst", "auditor", "viewer"];

function when(ts: Parameters<typeof timestampMs>[0] | undefined): string {
  return ts ? new Date(timestampMs(ts)).toISOString().replace("T", " ").slice(0, 19) : "";
}

function outcomeName(outcome: AuditOutcome): string {
  return (AuditOutcome[outcome] ?? "unknown").toLowerCase().replace(/_/g, " ");
}

/** The signed-in user's own API tokens (every user may have some). */
export function OwnTokens() {
  return (
    <section aria-labelledby="tokens-title">
      <h1 id="tokens-title">API tokens</h1>
      <Tokens />
    </section>
  );
}

export function Admin({ section }: { section: string }) {
  const tabs: [string, string][] = [
    ["users", "Users"],
    ["tokens", "API tokens"],
    ["audit", "Audit log"],
    ["integrations", "Integrations"],
  ];
  return (
    <section aria-labelledby="admin-title">
      <h1 id="admin-title">Administration</h1>
      <nav aria-label="Administration" class="tabs">
        {tabs.map(([id, label]) => (
          <a key={id} href={`#/admin/${id}`} aria-current={section === id ? "page" : undefined}>
            {label}
          </a>
        ))}
      </nav>
      {section === "tokens" ? (
        <Tokens />
      ) : section === "audit" ? (
        <Audit />
      ) : section === "integrations" ? (
        <AdminIntegrations />
      ) : (
        <Users />
      )}
    </section>
  );
}

function Users() {
  const [users, setUsers] = useState<User[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [disabled, setDisabled] = useState(false);
  const [reload, setReload] = useState(0);
  useEffect(() => {
    let live = true;
    collect<User>(async (cursor) => {
      const page = await client(AdminService).listUsers({ page: { pageSize: PAGE, cursor }, includeDisabled: disabled });
      return { items: page.users, next: page.page?.nextCursor ?? "" };
    }, 10_000).then(
      ([all]) => {
        if (!live) return;
        setUsers(all);
        setError(null);
      },
      (failure) => live && setError(errorText(failure)),
    );
    return () => {
      live = false;
    };
  }, [disabled, reload]);
  const update = (user: User, change: { role?: string; disabled?: boolean }) =>
    attempt(
      () =>
        client(AdminService).updateUser({
          id: user.id,
          ...change,
          updateMask: { paths: Object.keys(change) },
          expectedVersion: user.version,
        }),
      setError,
      () => setReload((n) => n + 1),
    );
  return (
    <>
      <CreateUser onCreated={() => setReload((n) => n + 1)} />
      <label class="check">
        <input type="checkbox" checked={disabled} onChange={(e) => setDisabled(e.currentTarget.checked)} />
        Include disabled users
      </label>
      <Alert message={error} />
      {users === null && !error && <p class="status">Loading users…</p>}
      {users && (
        <table class="grid" aria-label="Users">
          <Head columns={["User", "Name", "Role", "Last sign-in", "State"]} />
          <tbody>
            {users.map((u) => (
              <tr key={u.id?.value}>
                <td class="mono">{visible(u.username)}</td>
                <td>{visible(u.displayName)}</td>
                <td>
                  <select
                    aria-label={`Role of ${u.username}`}
                    value={u.role}
                    onChange={(e) => void update(u, { role: e.currentTarget.value })}
                  >
                    {ROLES.map((r) => (
                      <option key={r} value={r}>
                        {r}
                      </option>
                    ))}
                  </select>
                </td>
                <td>{when(u.lastLoginAt)}</td>
                <td>
                  <button type="button" class="small" onClick={() => void update(u, { disabled: !u.disabled })}>
                    {u.disabled ? `Enable ${u.username}` : `Disable ${u.username}`}
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </>
  );
}

function CreateUser({ onCreated }: { onCreated: () => void }) {
  const [username, setUsername] = useState("");
  const [displayName, setDisplayName] = useState("");
  const [role, setRole] = useState("analyst");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | null>(null);
  const submit = async (e: Event) => {
    e.preventDefault();
    setError(null);
    try {
      await client(AdminService).createUser({ username, displayName, role, password, isAdmin: role === "admin" });
      setUsername("");
      setDisplayName("");
      setPassword("");
      onCreated();
    } catch (failure) {
      setError(errorText(failure));
    }
  };
  return (
    <form class="inline" onSubmit={submit} aria-label="Create a user">
      <label>
        User name
        <input value={username} required autocomplete="off" onInput={(e) => setUsername(e.currentTarget.value)} />
      </label>
      <label>
        Display name
        <input value={displayName} onInput={(e) => setDisplayName(e.currentTarget.value)} />
      </label>
      <label>
        Global role
        <select value={role} onChange={(e) => setRole(e.currentTarget.value)}>
          {ROLES.map((r) => (
            <option key={r} value={r}>
              {r}
            </option>
          ))}
        </select>
      </label>
      <label>
        Password
        <input type="password" value={password} required autocomplete="new-password" onInput={(e) => setPassword(e.currentTarget.value)} />
      </label>
      <button type="submit">Create user</button>
      <Alert message={error} />
    </form>
  );
}

function Tokens() {
  const [tokens, setTokens] = useState<ApiToken[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [reload, setReload] = useState(0);
  const [name, setName] = useState("");
  const [days, setDays] = useState(30);
  const [readOnly, setReadOnly] = useState(true);
  const [created, setCreated] = useState<{ name: string; value: string } | null>(null);
  useEffect(() => {
    client(AdminService)
      .listApiTokens({ page: { pageSize: PAGE }, includeInactive: true })
      .then(
        (a) => {
          setTokens(a.tokens);
          setError(null);
        },
        (e) => setError(errorText(e)),
      );
  }, [reload]);
  const create = async (e: Event) => {
    e.preventDefault();
    setError(null);
    try {
      const answer = await client(AdminService).createApiToken({
        name,
        readOnly,
        expiresAt: timestampFromMs(Date.now() + days * 86_400_000),
      });
      setCreated({ name: answer.token?.name ?? name, value: answer.tokenValue });
      setName("");
      setReload((n) => n + 1);
    } catch (failure) {
      setError(errorText(failure));
    }
  };
  const revoke = (token: ApiToken) =>
    attempt(() => client(AdminService).revokeApiToken({ id: token.id }), setError, () => setReload((n) => n + 1));
  return (
    <>
      <form class="inline" onSubmit={create} aria-label="Create an API token">
        <label>
          Token name
          <input value={name} required maxLength={100} onInput={(e) => setName(e.currentTarget.value)} />
        </label>
        <label>
          Valid for (days)
          <input type="number" min={1} max={365} value={days} onInput={(e) => setDays(Number(e.currentTarget.value))} />
        </label>
        <label class="check">
          <input type="checkbox" checked={readOnly} onChange={(e) => setReadOnly(e.currentTarget.checked)} />
          Read-only
        </label>
        <button type="submit">Create token</button>
      </form>
      {created && (
        <div class="notice" role="status">
          <p>
            Token “{visible(created.name)}” — copy it now, it is not shown again:
          </p>
          <p class="mono token-value">{created.value}</p>
          <button type="button" class="small" onClick={() => void copy(created.value)}>
            Copy the token
          </button>
        </div>
      )}
      <Alert message={error} />
      {tokens && tokens.length === 0 && <p class="status">No API token yet.</p>}
      {tokens && tokens.length > 0 && (
        <table class="grid" aria-label="API tokens">
          <Head columns={["Name", "Starts with", "Access", "Expires", "Last used", "State"]} />
          <tbody>
            {tokens.map((t) => (
              <tr key={t.id?.value}>
                <td>{visible(t.name)}</td>
                <td class="mono">{t.valuePrefix}…</td>
                <td>{t.readOnly ? "read-only" : "read-write"}</td>
                <td>{when(t.expiresAt)}</td>
                <td>{when(t.lastUsedAt)}</td>
                <td>
                  {t.revokedAt ? (
                    `revoked ${when(t.revokedAt)}`
                  ) : (
                    <button type="button" class="small" onClick={() => void revoke(t)}>
                      Revoke {t.name}
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </>
  );
}

function Audit() {
  const [outcome, setOutcome] = useState<AuditOutcome>(AuditOutcome.UNSPECIFIED);
  const [method, setMethod] = useState("");
  const [verified, setVerified] = useState<VerifyAuditLogResponse | null>(null);
  const [verifying, setVerifying] = useState(false);
  const list = usePaged<AuditEntry>(async (cursor) => {
    const page = await client(AdminService).listAuditLog({
      page: { pageSize: PAGE, cursor },
      outcomes: outcome ? [outcome] : [],
      method: method.trim(),
    });
    return { items: page.entries, next: page.page?.nextCursor ?? "" };
  }, [outcome]);
  const entries = list.items;
  const error = list.error;
  const setError = list.setError;
  const verify = async () => {
    setVerifying(true);
    try {
      setVerified(await client(AdminService).verifyAuditLog({}));
    } catch (failure) {
      setError(errorText(failure));
    } finally {
      setVerifying(false);
    }
  };
  return (
    <>
      <div class="row">
        <button type="button" onClick={() => void verify()} disabled={verifying}>
          {verifying ? "Verifying…" : "Verify the hash chain"}
        </button>
        {verified && (
          <span role="status" class={verified.intact ? "ok" : "error"}>
            {verified.intact
              ? `Intact: ${verified.recordsVerified.toLocaleString()} records verified.`
              : `Broken at record ${verified.firstBrokenSequence.toString()} (${verified.recordsVerified.toLocaleString()} verified before it).`}
          </span>
        )}
      </div>
      <FilterForm label="Filter the audit log" onSubmit={list.reload}>
        <label>
          Outcome
          <select value={outcome} onChange={(e) => setOutcome(Number(e.currentTarget.value) as AuditOutcome)}>
            <option value={AuditOutcome.UNSPECIFIED}>any</option>
            {[AuditOutcome.SUCCEEDED, AuditOutcome.UNAUTHENTICATED, AuditOutcome.DENIED, AuditOutcome.FAILED, AuditOutcome.RATE_LIMITED].map((o) => (
              <option key={o} value={o}>
                {outcomeName(o)}
              </option>
            ))}
          </select>
        </label>
        <label>
          Method (full name)
          <input value={method} placeholder="/casescope.cases.v1.CasesService/DeleteCase" onInput={(e) => setMethod(e.currentTarget.value)} />
        </label>
      </FilterForm>
      <Alert message={error} />
      {entries === null && !error && <p class="status">Loading the audit log…</p>}
      {entries && (
        <table class="grid" aria-label="Audit log">
          <Head columns={[["#", "num"], "Time (UTC)", "Who", "Call", "Case", "Outcome", "From"]} />
          <tbody>
            {entries.map((a) => (
              <tr key={a.sequence.toString()}>
                <td class="num">{a.sequence.toString()}</td>
                <td>{when(a.time)}</td>
                <td>{visible(a.actorUsername)}</td>
                <td class="mono">{visible(a.method.replace(/^\/casescope\./, ""))}</td>
                <td class="mono">{a.caseId?.value ?? ""}</td>
                <td>
                  {outcomeName(a.outcome)}
                  {a.statusCode !== 0 && ` (${a.statusCode})`}
                </td>
                <td class="mono">{visible(a.clientAddress)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {list.hasMore && (
        <button type="button" onClick={list.more}>
          Older entries
        </button>
      )}
    </>
  );
}
