// The web app end to end in a real headless Chromium (Debian's, driven by playwright-core;
// no browser download), against a running CaseScope whose gateway serves the app.
//
//   CASESCOPE_URL=http://127.0.0.1:7700 CASESCOPE_USER=admin CASESCOPE_PASSWORD=… \
//     node e2e/run.mjs
//
// Environment: CHROMIUM (default /usr/bin/chromium), CASESCOPE_SCREENSHOTS (a directory
// to write one PNG per screen into). Exits non-zero with the failed check's message.
// Every page of the run listens for dialogs and page errors: any one fails the run.

import { chromium } from "playwright-core";
import { HOSTILE, accessible, check, failures, screen, shownAs } from "./lib.mjs";
import { timelineFlow, viewerCannotAnnotate } from "./timeline.mjs";
import { detectionsFlow } from "./detections.mjs";
import { iocsFlow } from "./iocs.mjs";
import { reportsFlow } from "./reports.mjs";
import { integrationsFlow } from "./integrations.mjs";
import { adminFlow } from "./admin.mjs";

const base = process.env.CASESCOPE_URL ?? "http://127.0.0.1:7700";
const user = process.env.CASESCOPE_USER ?? "admin";
const password = process.env.CASESCOPE_PASSWORD;
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
if (!password) {
  console.error("CASESCOPE_PASSWORD is required");
  process.exit(2);
}

/** From the sign-in page, through the provider's own login form and back. */
async function signInAtProvider(page, login, secret) {
  await page.getByRole("button", { name: "Sign in with single sign-on" }).click();
  await page.locator("input[name=login]").waitFor();
  await page.locator("input[name=login]").fill(login);
  await page.locator("input[name=password]").fill(secret ?? "");
  await page.locator("form button").click();
  await page.waitForURL((url) => url.origin === new URL(base).origin, { timeout: 30_000 });
}

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
let page;
try {
  // The clipboard, for the copy buttons (this origin is a secure context: loopback).
  const context = await browser.newContext({ permissions: ["clipboard-read", "clipboard-write"] });
  page = await context.newPage();
  page.on("dialog", async (dialog) => {
    failures.push(`a dialog fired: ${dialog.type()} ${dialog.message()}`);
    await dialog.dismiss();
  });
  page.on("pageerror", (error) => failures.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error" && /Content Security Policy/.test(message.text())) {
      failures.push(`CSP refused something the app does: ${message.text()}`);
    }
  });

  // The page and its headers.
  const response = await page.goto(base + "/");
  check(response && response.ok(), `GET / answered ${response && response.status()}`);
  const csp = response.headers()["content-security-policy"] ?? "";
  check(/script-src 'self'/.test(csp) && !/unsafe-inline/.test(csp), `weak CSP on /: ${csp}`);

  // Sign-in: a wrong password shows the server's refusal; the right one signs in.
  await page.getByLabel("User name").fill(user);
  await page.getByLabel("Password").fill("not the password");
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
  await page.getByRole("alert").waitFor();
  const refusal = await page.getByRole("alert").innerText();
  check(refusal.length > 0, "a refused sign-in shows no message");
  await accessible(page, "sign-in");
  await screen(page, "signin");
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
  await page.getByRole("heading", { name: "Cases" }).waitFor();

  // Cases: create one whose name is hostile; it shows as text and nothing runs.
  for (const name of HOSTILE) {
    await page.getByLabel("New case").fill(name);
    await page.getByRole("button", { name: "Create" }).click();
    // Invisible direction and width characters are shown as ⟨U+XXXX⟩.
    const shown = shownAs(name);
    await page.getByRole("cell", { name: shown, exact: true }).waitFor();
  }
  check(
    (await page.getByRole("cell", { name: /⟨U\+202E⟩gpj\.exe/ }).count()) === 1,
    "a right-to-left override is not shown as such",
  );
  const pwned = await page.evaluate(() => window.__pwned ?? null);
  check(pwned === null, "a hostile case name ran script");
  check((await page.locator("table img").count()) === 0, "a hostile case name became an element");
  await page.getByLabel("Search").fill("RTL");
  check(
    (await page.locator("tbody tr").count()) === 1,
    "searching the cases by name does not narrow the list",
  );
  await page.getByLabel("Search").fill("");
  await accessible(page, "cases");
  await screen(page, "cases");

  // A case for the evidence, created here. Its files are uploaded from the browser
  // (hashed in a worker, sent in parts) and followed to `ready` with exact counts; the
  // same file chosen again is shown as already in the case.
  const evidenceEvents = process.env.CASESCOPE_EVIDENCE_EVENTS;
  const uploads = (process.env.CASESCOPE_UPLOAD_FILES ?? "").split("\n").filter(Boolean);
  let evidenceCase = null;
  if (uploads.length > 0) {
    await page.getByLabel("New case").fill("evidence");
    await page.getByRole("button", { name: "Create" }).click();
    await page.getByRole("link", { name: "evidence", exact: true }).click();
    await page.getByRole("heading", { name: "evidence", exact: true }).waitFor();
    evidenceCase = /#\/cases\/([0-9a-f-]{36})/.exec(page.url())?.[1] ?? null;
    check(evidenceCase !== null, `no case id in ${page.url()}`);
    await page.getByText("No evidence yet.").waitFor();
    const uploadAll = async (files, offset) => {
      await page.getByLabel("Choose evidence files").setInputFiles(files);
      for (const [i] of files.entries()) {
        const row = `table.uploads tbody tr:nth-child(${offset + i + 1})`;
        await page.locator(`${row}[data-phase="done"], ${row}[data-phase="present"], ${row}[data-phase="failed"]`).waitFor({ timeout: 120_000 });
      }
      const failed = await page.locator('table.uploads tr[data-phase="failed"]').allInnerTexts();
      check(failed.length === 0, `uploads failed: ${failed.join("; ")}`);
    };
    await uploadAll(uploads, 0);
    check((await page.locator('table.uploads tr[data-phase="present"]').count()) === 0, "a new file was taken as already present");
    await page.getByText(`All ${uploads.length} files are done.`).waitFor({ timeout: 180_000 });
    await uploadAll([uploads[0]], uploads.length);
    await page.locator(`table.uploads tbody tr:nth-child(${uploads.length + 1})[data-phase="present"]`).waitFor();
    await page.getByText(`All ${uploads.length} files are done.`).waitFor();

    const row = page.locator("section[aria-labelledby=case-title] > table tbody tr", { hasText: "Security.evtx" });
    const cells = await row.locator("td").allInnerTexts();
    check(cells[2]?.trim() === "ready", `the file is not ready: ${cells.join(" | ")}`);
    const expected = Number(evidenceEvents).toLocaleString("en-US");
    check(cells[3] === expected && cells[4] === expected, `counts: ${cells.join(" | ")}`);
    const hostileFile = process.env.CASESCOPE_HOSTILE_FILE;
    if (hostileFile) {
      await page
        .locator("section[aria-labelledby=case-title] > table")
        .getByRole("cell", { name: shownAs(hostileFile), exact: true })
        .waitFor();
      check((await page.locator("main img").count()) === 0, "a hostile file name became an element");
    }
    await page.getByRole("heading", { name: "Detections" }).waitFor();
    await page.getByRole("heading", { name: "IOC matches" }).waitFor();

    // The viewer of the harness gets a role on the case, from its members.
    const viewer = process.env.CASESCOPE_VIEWER_USER;
    if (viewer) {
      await page.getByText("Members and archive").click();
      const grant = page.getByRole("form", { name: "Give a user a role on this case" });
      await grant.getByLabel("User name").fill(viewer);
      await grant.locator("select").selectOption({ label: "viewer" });
      await grant.getByRole("button", { name: "Grant" }).click();
      await page.getByRole("button", { name: `Remove ${viewer} (viewer)` }).waitFor();
    }
    await accessible(page, "case overview");
    await screen(page, "overview");
    await timelineFlow(page, { caseId: evidenceCase });
    await detectionsFlow(page);
    await page.goto(`${base}/#/cases/${evidenceCase}`);
    await page.getByRole("heading", { name: "evidence", exact: true }).waitFor();
    await iocsFlow(page);
    await reportsFlow(page, { base, caseId: evidenceCase });
    if (process.env.CASESCOPE_IRIS_URL) {
      await integrationsFlow(page, {
        base,
        caseId: evidenceCase,
        irisUrl: process.env.CASESCOPE_IRIS_URL,
        irisKey: process.env.CASESCOPE_IRIS_KEY ?? "",
      });
    }
    await page.getByRole("link", { name: "Cases", exact: true }).first().click();
    await page.getByRole("heading", { name: "Cases" }).waitFor();
  }

  await adminFlow(page, base);

  // A reload keeps the session (this tab's refresh token); signing out ends it.
  await page.reload();
  await page.getByRole("heading", { name: "Cases" }).waitFor();
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("button", { name: "Sign in", exact: true }).waitFor();
  await page.reload();
  await page.getByRole("button", { name: "Sign in", exact: true }).waitFor();

  // A viewer of the evidence case reads its timeline but cannot tag.
  const viewer = process.env.CASESCOPE_VIEWER_USER;
  if (viewer && evidenceCase) {
    await page.getByLabel("User name").fill(viewer);
    await page.getByLabel("Password").fill(process.env.CASESCOPE_VIEWER_PASSWORD ?? "");
    await page.getByRole("button", { name: "Sign in", exact: true }).click();
    await page.getByRole("heading", { name: "Cases" }).waitFor();
    await viewerCannotAnnotate(page, { caseId: evidenceCase });
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByRole("button", { name: "Sign in", exact: true }).waitFor();
  }

  // Single sign-on through the OpenID Connect provider: a user in a mapped group signs
  // in (back on the callback page, the app finishes it); one in no mapped group is
  // refused with the server's words.
  const ssoUser = process.env.CASESCOPE_OIDC_USER;
  if (ssoUser) {
    await signInAtProvider(page, ssoUser, process.env.CASESCOPE_OIDC_PASSWORD);
    await page.getByRole("heading", { name: "Cases" }).waitFor();
    check(new URL(page.url()).pathname === "/" && !page.url().includes("code="), `after SSO the address is ${page.url()}`);
    await page.getByText(process.env.CASESCOPE_OIDC_NAME ?? ssoUser, { exact: true }).waitFor();
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByRole("button", { name: "Sign in", exact: true }).waitFor();
    await signInAtProvider(page, process.env.CASESCOPE_OIDC_REFUSED_USER, process.env.CASESCOPE_OIDC_REFUSED_PASSWORD);
    const refused = await page.getByRole("alert").innerText();
    check(
      /none of your groups grants a CaseScope role/.test(refused) && (await page.getByRole("heading", { name: "Cases", exact: true }).count()) === 0,
      `a refused SSO user: ${refused}`,
    );
  }

  // Everything from the keyboard: sign in with Tab and Enter only.
  await page.keyboard.press("Tab");
  await page.keyboard.type(user);
  await page.keyboard.press("Tab");
  await page.keyboard.type(password);
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: "Cases" }).waitFor();

  check(failures.length === 0, failures.join("\n"));
  console.log(
    "web e2e: ok (sign-in, cases, hostile names, case overview, upload, timeline, annotations, viewer refused, accessibility, keyboard, sign-out)",
  );
} catch (error) {
  console.error(`web e2e failed: ${error.message}`);
  const where = process.env.CASESCOPE_E2E_FAILURE_SHOT;
  if (where && page) await page.screenshot({ path: where, fullPage: true }).catch(() => {});
  for (const failure of failures) console.error(`  ${failure}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
