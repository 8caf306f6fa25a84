// Integrations in the browser, against a local server that answers as DFIR-IRIS's REST
// API documents (the Rust test starts it; IRIS cannot run here): an administrator adds
// an IRIS integration (its key typed once and never shown again), tests it (reachable,
// its version), pushes the evidence case, follows the delivery to "succeeded" and
// pushes again (the second push updates, the Rust test counts IRIS's copies); a hostile
// integration name shows as text; a failing one is shown with its reason and deleted.

import { HOSTILE, accessible, check, screen, shownAs } from "./lib.mjs";

export async function integrationsFlow(page, { base, caseId, irisUrl, irisKey }) {
  await page.goto(`${base}/#/admin/integrations`);
  await page.getByRole("heading", { level: 2, name: "New integration" }).waitFor();
  const form = page.getByRole("form", { name: "New integration" });
  await form.getByLabel("Kind").selectOption({ label: "DFIR-IRIS" });
  await form.getByLabel("Name").fill("iris");
  await form.getByLabel("URL").fill(irisUrl);
  await form.getByLabel(/API key/).fill(irisKey);
  await form.getByRole("button", { name: "Add integration" }).click();
  const row = page.locator("#integration-table tbody tr", { hasText: irisUrl });
  await row.waitFor();
  check((await row.locator("td").nth(3).innerText()).trim() === "set", "the secret shows as set");
  check(!(await page.content()).includes(irisKey), "the key is not in the page once sent");
  check((await form.getByLabel(/API key/).inputValue()) === "", "the key field is emptied");
  await row.getByRole("button", { name: "Test" }).click();
  await row.locator("[data-test=ok]").waitFor();
  check((await row.innerText()).includes("version v2.4.20"), `the test shows IRIS's version: ${await row.innerText()}`);

  // A second one with a hostile name, unreachable: its test says why; deleted.
  const hostile = HOSTILE[1];
  await form.getByLabel("Kind").selectOption({ label: "Webhook" });
  await form.getByLabel("Name").fill(hostile);
  await form.getByLabel("URL").fill("http://127.0.0.1:9/hook");
  await form.getByRole("button", { name: "Add integration" }).click();
  const bad = page.locator("#integration-table tbody tr", { hasText: "127.0.0.1:9" });
  await bad.waitFor();
  check((await bad.locator("td").first().innerText()).trim() === shownAs(hostile), "a hostile name shows as text");
  check((await page.evaluate(() => window.__pwned ?? null)) === null, "a hostile name ran script");
  await bad.getByRole("button", { name: "Test" }).click();
  await bad.locator("[data-test=failed]").waitFor();
  await accessible(page, "admin integrations");
  await screen(page, "admin-integrations");
  await bad.getByRole("button", { name: "Delete", exact: true }).click();
  await bad.getByRole("button", { name: "Delete for good" }).click();
  await bad.waitFor({ state: "detached" });

  // The case: pushed, followed to "succeeded", pushed again.
  await page.goto(`${base}/#/cases/${caseId}`);
  await page.getByRole("link", { name: "Integrations", exact: true }).click();
  await page.getByRole("heading", { level: 1, name: "Integrations" }).waitFor();
  for (const round of [1, 2]) {
    await page.getByRole("button", { name: /^Push to DFIR-IRIS/ }).click();
    await page.waitForFunction(
      (n) => {
        const rows = document.querySelectorAll("#delivery-table tbody tr");
        return rows.length === n && rows[0]?.getAttribute("data-status") === "succeeded";
      },
      round,
      { timeout: 120_000 },
    );
  }
  const first = page.locator("#delivery-table tbody tr").first();
  check((await first.innerText()).includes("iris push"), `the delivery says what it was: ${await first.innerText()}`);
  await accessible(page, "case integrations");
  await screen(page, "case-integrations");
}
