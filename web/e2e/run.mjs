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
import { readFileSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

const require = createRequire(import.meta.url);
const base = process.env.CASESCOPE_URL ?? "http://127.0.0.1:7700";
const user = process.env.CASESCOPE_USER ?? "admin";
const password = process.env.CASESCOPE_PASSWORD;
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const shots = process.env.CASESCOPE_SCREENSHOTS;
if (!password) {
  console.error("CASESCOPE_PASSWORD is required");
  process.exit(2);
}
const axeSource = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

/** Strings an attacker can put in evidence or names: none may run, all show as text. */
const HOSTILE = [
  "<script>window.__pwned = 1</script>",
  '<img src=x onerror="window.__pwned = 1">',
  "javascript:window.__pwned=1",
  "\u202Egpj.exe\u200B\u200D\u2066 RTL",
];

const failures = [];
function check(condition, message) {
  if (!condition) throw new Error(message);
}

async function screen(page, name) {
  if (!shots) return;
  mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

/** axe-core over the page as it is: no serious or critical violation. */
async function accessible(page, name) {
  // Evaluated through the DevTools protocol, which the page's CSP does not govern
  // (the app itself allows no inline script).
  await page.evaluate(axeSource);
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const run = await window.axe.run(document, { resultTypes: ["violations"] });
    return run.violations
      .filter((v) => v.impact === "serious" || v.impact === "critical")
      .map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
  });
  check(result.length === 0, `${name}: accessibility violations: ${result.join("; ")}`);
}

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
try {
  const context = await browser.newContext();
  const page = await context.newPage();
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

  // Cases: create one whose name is hostile; it shows as text and nothing runs.
  for (const name of HOSTILE) {
    await page.getByLabel("New case").fill(name);
    await page.getByRole("button", { name: "Create" }).click();
    // Invisible direction and width characters are shown as ⟨U+XXXX⟩.
    const shown = name.replace(
      /[\u061C\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u2069\uFEFF]/g,
      (c) => `⟨U+${c.codePointAt(0).toString(16).toUpperCase().padStart(4, "0")}⟩`,
    );
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
  const evidenceCase = process.env.CASESCOPE_EVIDENCE_CASE;
  const evidenceEvents = process.env.CASESCOPE_EVIDENCE_EVENTS;
  if (evidenceCase) {
    await page.getByRole("link", { name: "evidence", exact: true }).click();
    await page.getByRole("heading", { name: "evidence", exact: true }).waitFor();
    await page.getByText("The file is done.").waitFor({ timeout: 120_000 });
    const row = page.locator("tbody tr").first();
    const cells = await row.locator("td").allInnerTexts();
    check(cells[2]?.trim() === "ready", `the file is not ready: ${cells.join(" | ")}`);
    const expected = Number(evidenceEvents).toLocaleString("en-US");
    check(cells[3] === expected && cells[4] === expected, `counts: ${cells.join(" | ")}`);
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
      const total = 1 + uploads.length - present;
      await page.getByText(`All ${total} files are done.`).waitFor({ timeout: 180_000 });
    }
    await accessible(page, "case overview");
    await screen(page, "overview");
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

  // Everything from the keyboard: sign in with Tab and Enter only.
  await page.keyboard.press("Tab");
  await page.keyboard.type(user);
  await page.keyboard.press("Tab");
  await page.keyboard.type(password);
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: "Cases" }).waitFor();

  check(failures.length === 0, failures.join("\n"));
  console.log(
    "web e2e: ok (sign-in, cases, hostile names, case overview, accessibility, keyboard, sign-out)",
  );
} catch (error) {
  console.error(`web e2e failed: ${error.message}`);
  for (const failure of failures) console.error(`  ${failure}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
