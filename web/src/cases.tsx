import { useEffect, useState } from "preact/hooks";
import { client, errorText } from "./api.js";
import { visible } from "./text.js";
import { CasesService, CaseState, type Case } from "./gen/casescope/cases/v1/cases_pb.js";
import { Alert, Head, collect } from "./ui.js";

const PAGE = 200;
/** Cases listed at most (search narrows them). */
const MAX_CASES = 10_000;

function stateName(state: CaseState): string {
  switch (state) {
    case CaseState.OPEN:
      return "open";
    case CaseState.ARCHIVED:
      return "archived";
    case CaseState.RESTORING:
      return "restoring";
    default:
      return "unknown";
  }
}

/** The cases the user may see: search by name, archived ones on demand, create. */
export function Cases() {
  const [cases, setCases] = useState<Case[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [archived, setArchived] = useState(false);
  const [search, setSearch] = useState("");
  const [reload, setReload] = useState(0);

  useEffect(() => {
    let live = true;
    setError(null);
    collect<Case>(async (cursor) => {
      const page = await client(CasesService).listCases({ page: { pageSize: PAGE, cursor }, includeArchived: archived });
      return { items: page.cases, next: page.page?.nextCursor ?? "" };
    }, MAX_CASES).then(
      ([all]) => live && setCases(all),
      (failure) => live && setError(errorText(failure)),
    );
    return () => {
      live = false;
    };
  }, [archived, reload]);

  const needle = search.trim().toLowerCase();
  const shown = (cases ?? []).filter((c) => !needle || c.name.toLowerCase().includes(needle));
  return (
    <section aria-labelledby="cases-title">
      <h1 id="cases-title">Cases</h1>
      <CreateCase onCreated={() => setReload((n) => n + 1)} />
      <div class="filters">
        <label>
          Search
          <input type="search" value={search} onInput={(e) => setSearch(e.currentTarget.value)} />
        </label>
        <label class="check">
          <input
            type="checkbox"
            checked={archived}
            onChange={(e) => setArchived(e.currentTarget.checked)}
          />
          Include archived
        </label>
      </div>
      <Alert message={error} />
      {!error && cases === null && (
        <p class="status" role="status">
          Loading cases…
        </p>
      )}
      {cases !== null && shown.length === 0 && (
        <p class="status">{cases.length === 0 ? "No case yet: create one above." : "No case matches."}</p>
      )}
      {shown.length > 0 && (
        <table class="grid">
          <Head columns={["Name", "State", "Files", "Id"]} />
          <tbody>
            {shown.map((c) => (
              <tr key={c.id?.value}>
                <td>
                  <a href={`#/cases/${c.id?.value ?? ""}`}>{visible(c.name)}</a>
                </td>
                <td>{stateName(c.state)}</td>
                <td class="num">{c.fileCount.toString()}</td>
                <td class="mono">{c.id?.value}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

function CreateCase({ onCreated }: { onCreated: () => void }) {
  const [name, setName] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await client(CasesService).createCase({ name });
      setName("");
      onCreated();
    } catch (failure) {
      setError(errorText(failure));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="inline" onSubmit={submit} aria-label="Create a case">
      <label>
        New case
        <input name="case-name" required value={name} onInput={(e) => setName(e.currentTarget.value)} />
      </label>
      <button type="submit" disabled={busy}>
        Create
      </button>
      <Alert message={error} />
    </form>
  );
}
