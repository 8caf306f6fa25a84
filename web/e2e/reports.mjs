// Reports in the browser: a report of the case created (HTML and JSON, a hostile title),
// followed until ready, its HTML downloaded (checked by the app against its SHA-256)
// and read back, then deleted after the in-page confirmation; an AI summary refused (no
// LLM in this deployment) with the setting named.

import { readFileSync } from "node:fs";
import { HOSTILE, accessible, check, screen, shownAs } from "./lib.mjs";

export async function reportsFlow(page, { base, caseId }) {
  await page.goto(`${base}/#/cases/${caseId}/reports`);
  await page.getByRole("heading", { level: 1, name: "Reports" }).waitFor();
  const form = page.getByRole("form", { name: "New report" });
  await form.getByLabel("JSON").check();
  const title = HOSTILE[0];
  await form.getByLabel("Title").fill(title);
  await form.getByRole("button", { name: "Create report" }).click();
  const row = page.locator("#report-table tbody tr").first();
  await page.waitForFunction(() => document.querySelector("#report-table tbody tr")?.getAttribute("data-status") === "ready", null, {
    timeout: 120_000,
  });
  const shown = (await row.locator("td").first().innerText()).trim();
  check(shown === shownAs(title), `the report's title shows as text: ${shown}`);
  await accessible(page, "reports");
  await screen(page, "reports");

  const [download] = await Promise.all([page.waitForEvent("download"), row.getByRole("button", { name: /^HTML/ }).click()]);
  check(download.suggestedFilename() === "case-report.html", `download name ${download.suggestedFilename()}`);
  const html = readFileSync(await download.path(), "utf8");
  check(html.startsWith("<!DOCTYPE html>"), "the HTML report starts as HTML");
  check(!/<script/i.test(html), "no script in the HTML report");
  check(html.includes("Evidence and chain of custody"), "the HTML report has the evidence section");

  await row.getByRole("button", { name: "Delete", exact: true }).click();
  await row.getByRole("button", { name: "Delete for good" }).click();
  await page.getByText("No report yet.").waitFor();

  // This deployment has no LLM: asking for an AI summary is refused, naming the setting.
  await form.getByLabel(/AI summary/).check();
  await form.getByRole("button", { name: "Create report" }).click();
  await form.getByText(/CASESCOPE_LLM_URL/).waitFor();
  check((await page.locator("#report-table tbody tr").count()) === 0, "no report was queued");
  await form.getByLabel(/AI summary/).uncheck();
}
