// CaseScope's web app: a hash-routed single page (the gateway serves index.html at `/`;
// every view is a fragment, so no server route is needed per screen).

import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { client, completeOidcLogin, logout, onSessionChange, resume, setCurrentUserId, signedIn } from "./api.js";
import { SignIn } from "./signin.js";
import { Cases } from "./cases.js";
import { CaseOverview } from "./overview.js";
import { Timeline } from "./timeline/timeline.js";
import { Detections } from "./detections.js";
import { RuleDetails, Rules } from "./rules.js";
import { Iocs } from "./iocs.js";
import { Reports } from "./reports.js";
import { CaseIntegrations } from "./integrations.js";
import { Admin, OwnTokens } from "./admin.js";
import { visible } from "./text.js";
import { AuthService, type Principal } from "./gen/casescope/gateway/v1/auth_pb.js";
import "./styles.css";

function useRoute(): string {
  const [route, setRoute] = useState(window.location.hash || "#/cases");
  useEffect(() => {
    const changed = () => setRoute(window.location.hash || "#/cases");
    window.addEventListener("hashchange", changed);
    return () => window.removeEventListener("hashchange", changed);
  }, []);
  return route;
}

function App() {
  const [session, setSession] = useState<"unknown" | "in" | "out">("unknown");
  const route = useRoute();
  const [me, setMe] = useState<Principal | null>(null);
  const [signInError, setSignInError] = useState<string | null>(null);
  useEffect(() => {
    const off = onSessionChange(() => setSession(signedIn() ? "in" : "out"));
    (async () => {
      // Back from the identity provider: finish that sign-in first.
      const oidc = await completeOidcLogin();
      if (oidc) setSignInError(oidc);
      const ok = signedIn() || (await resume());
      setSession(ok ? "in" : "out");
    })();
    return off;
  }, []);
  useEffect(() => {
    setMe(null);
    if (session !== "in") return;
    // Who is signed in: their name in the bar, the admin screens for admins (the
    // gateway checks every call whatever the app shows).
    client(AuthService)
      .whoAmI({})
      .then(
        (principal) => {
          setCurrentUserId(principal.userId?.value ?? "");
          setMe(principal);
        },
        () => setMe(null),
      );
  }, [session]);
  if (session === "unknown") {
    return <p class="status" role="status">Loading…</p>;
  }
  if (session === "out") {
    return <SignIn initialError={signInError} />;
  }
  return (
    <>
      <header class="bar">
        <a class="brand" href="#/cases">CaseScope</a>
        <nav aria-label="Main">
          <a href="#/cases" aria-current={route.startsWith("#/cases") ? "page" : undefined}>
            Cases
          </a>
          <a href="#/rules" aria-current={route.startsWith("#/rules") ? "page" : undefined}>
            Rules
          </a>
          <a href="#/tokens" aria-current={route.startsWith("#/tokens") ? "page" : undefined}>
            API tokens
          </a>
          {me?.isAdmin && (
            <a href="#/admin/users" aria-current={route.startsWith("#/admin") ? "page" : undefined}>
              Admin
            </a>
          )}
        </nav>
        {me && <span class="status">{visible(me.displayName || me.username)}</span>}
        <button type="button" class="link" onClick={() => void logout()}>
          Sign out
        </button>
      </header>
      <main id="main">
        <Route route={route} />
      </main>
    </>
  );
}

/** `#/cases` (the list), `#/cases/<id>` (a case's overview) or
 *  `#/cases/<id>/timeline?…` (its timeline, the selection in the query part). */
function Route({ route }: { route: string }) {
  const timeline = /^#\/cases\/([0-9a-fA-F-]{36})\/timeline(?:\?(.*))?$/.exec(route);
  if (timeline?.[1]) return <Timeline caseId={timeline[1]} search={timeline[2] ?? ""} />;
  const iocs = /^#\/cases\/([0-9a-fA-F-]{36})\/iocs$/.exec(route);
  if (iocs?.[1]) return <Iocs caseId={iocs[1]} />;
  const reports = /^#\/cases\/([0-9a-fA-F-]{36})\/reports$/.exec(route);
  if (reports?.[1]) return <Reports caseId={reports[1]} />;
  const integrations = /^#\/cases\/([0-9a-fA-F-]{36})\/integrations$/.exec(route);
  if (integrations?.[1]) return <CaseIntegrations caseId={integrations[1]} />;
  const detections = /^#\/cases\/([0-9a-fA-F-]{36})\/detections$/.exec(route);
  if (detections?.[1]) return <Detections caseId={detections[1]} />;
  const rule = /^#\/rules\/([^?/]+)(?:\?case=([0-9a-fA-F-]{36}))?$/.exec(route);
  if (rule?.[1]) return <RuleDetails id={decodeURIComponent(rule[1])} caseId={rule[2] ?? null} />;
  if (route === "#/rules") return <Rules />;
  if (route === "#/tokens") return <OwnTokens />;
  const admin = /^#\/admin(?:\/(users|tokens|audit|integrations))?$/.exec(route);
  if (admin) return <Admin section={admin[1] ?? "users"} />;
  const match = /^#\/cases\/([0-9a-fA-F-]{36})$/.exec(route);
  if (match?.[1]) return <CaseOverview id={match[1]} />;
  return <Cases />;
}

const root = document.getElementById("app");
if (root) render(<App />, root);
