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

const base = process.env.CASESCOPE_URL ?? "http://127.0.0.1:7700";
const user = process.env.CASESCOPE_USER ?? "admin";
const password = process.env.CASESCOPE_PASSWORD;
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
if (!password) {
  console.error("CASESCOPE_PASSWORD is required");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
let page;
try {
  const context = await browser.newContext();
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
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("alert").waitFor();
  const refusal = await page.getByRole("alert").innerText();
  check(refusal.length > 0, "a refused sign-in shows no message");
  await accessible(page, "sign-in");
  await screen(page, "signin");
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Cases" }).waitFor();

  const evidenceCase = process.env.CASESCOPE_EVIDENCE_CASE;

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

  // A case with evidence (uploaded by the harness): its overview follows the file to
  // `ready` and shows exact counts.
  const evidenceEvents = process.env.CASESCOPE_EVIDENCE_EVENTS;
  if (evidenceCase) {
    await page.getByRole("link", { name: "evidence", exact: true }).click();
    await page.getByRole("heading", { name: "evidence", exact: true }).waitFor();
    // The harness uploaded two files: the synthetic EVTX file and a hostile JSONL one.
    await page.getByText("All 2 files are done.").waitFor({ timeout: 120_000 });
    const row = page.locator("tbody tr", { hasText: "Security.evtx" });
    const cells = await row.locator("td").allInnerTexts();
    check(cells[2]?.trim() === "ready", `the file is not ready: ${cells.join(" | ")}`);
    const expected = Number(evidenceEvents).toLocaleString("en-US");
    check(cells[3] === expected && cells[4] === expected, `counts: ${cells.join(" | ")}`);
    const hostileFile = process.env.CASESCOPE_HOSTILE_FILE;
    if (hostileFile) {
      await page.getByRole("cell", { name: shownAs(hostileFile), exact: true }).waitFor();
      check((await page.locator("main img").count()) === 0, "a hostile file name became an element");
    }
    await page.getByRole("heading", { name: "Detections" }).waitFor();
    await page.getByRole("heading", { name: "IOC matches" }).waitFor();

    // Evidence from the browser: hashed in a worker, sent in parts, followed to ready;
    // the file already in the case is shown as such.
    const uploads = (process.env.CASESCOPE_UPLOAD_FILES ?? "").split("\n").filter(Boolean);
    if (uploads.length > 0) {
      await page.getByLabel("Choose evidence files").setInputFiles(uploads);
      for (const [i] of uploads.entries()) {
        await page
          .locator(`table.uploads tbody tr:nth-child(${i + 1})[data-phase="done"], table.uploads tbody tr:nth-child(${i + 1})[data-phase="present"]`)
          .waitFor({ timeout: 120_000 });
      }
      const failed = await page.locator('table.uploads tr[data-phase="failed"]').allInnerTexts();
      check(failed.length === 0, `uploads failed: ${failed.join("; ")}`);
      const present = await page.locator('table.uploads tr[data-phase="present"]').count();
      const expectedPresent = Number(process.env.CASESCOPE_UPLOAD_PRESENT ?? "0");
      check(present === expectedPresent, `${present} uploads already present, not ${expectedPresent}`);
      const total = 2 + uploads.length - present;
      await page.getByText(`All ${total} files are done.`).waitFor({ timeout: 180_000 });
    }
    await accessible(page, "case overview");
    await screen(page, "overview");
    await timelineFlow(page, { caseId: evidenceCase });
    await detectionsFlow(page);
    await page.goto(`${base}/#/cases/${evidenceCase}`);
    await page.getByRole("heading", { name: "evidence", exact: true }).waitFor();
    await iocsFlow(page);
    await page.getByRole("link", { name: "Cases", exact: true }).first().click();
    await page.getByRole("heading", { name: "Cases" }).waitFor();
  }

  // A reload keeps the session (this tab's refresh token); signing out ends it.
  await page.reload();
  await page.getByRole("heading", { name: "Cases" }).waitFor();
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("button", { name: "Sign in" }).waitFor();
  await page.reload();
  await page.getByRole("button", { name: "Sign in" }).waitFor();

  // A viewer of the evidence case reads its timeline but cannot tag.
  const viewer = process.env.CASESCOPE_VIEWER_USER;
  if (viewer && evidenceCase) {
    await page.getByLabel("User name").fill(viewer);
    await page.getByLabel("Password").fill(process.env.CASESCOPE_VIEWER_PASSWORD ?? "");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("heading", { name: "Cases" }).waitFor();
    await viewerCannotAnnotate(page, { caseId: evidenceCase });
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByRole("button", { name: "Sign in" }).waitFor();
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
