// Detections and rules in the browser: the case's detections by level, rule and as an
// ATT&CK matrix; a rule's details with its Sigma YAML, opening its events in the
// timeline; the rules screen listing the ruleset, a rule disabled and enabled again.

import { accessible, check, screen } from "./lib.mjs";

export async function detectionsFlow(page) {
  await page.getByRole("link", { name: "Detections", exact: true }).click();
  await page.getByRole("heading", { level: 1, name: "Detections" }).waitFor();
  const matrix = page.getByRole("region", { name: "ATT&CK matrix" });
  await matrix.waitFor();
  const tactics = await matrix.locator("section.tactic h3").allInnerTexts();
  check(tactics.length > 0, "the ATT&CK matrix has no tactic");
  const rules = page.locator("table.grid tbody tr");
  check((await rules.count()) > 0, "no rule is listed under By rule");
  await accessible(page, "detections");
  await screen(page, "detections");

  // A rule: its details and YAML, then its events in the timeline.
  const title = (await rules.first().locator("td").first().innerText()).trim();
  await rules.first().locator("td a").first().click();
  await page.getByRole("heading", { level: 1, name: title }).waitFor();
  const yaml = await page.locator("pre.raw").innerText();
  check(/^title:/m.test(yaml) && /^detection:/m.test(yaml), `the rule's YAML: ${yaml.slice(0, 200)}`);
  await accessible(page, "rule details");
  await screen(page, "rule");
  await page.getByRole("link", { name: "Events of this rule in the case" }).click();
  await page.getByRole("heading", { name: "Timeline" }).waitFor();
  await page.waitForFunction(() => /^\d[\d,]* events?/.test(document.querySelector("#timeline-count")?.textContent ?? ""));
  const marks = await page.locator(".vtable [role=row][data-index] [role=cell]:nth-child(2)").allInnerTexts();
  check(marks.length > 0 && marks.every((m) => /D\d+/.test(m)), `the rule's events: ${marks.join(",")}`);

  // The rules screen: the ruleset, one rule disabled then enabled again.
  await page.getByRole("link", { name: "Rules", exact: true }).click();
  await page.getByRole("heading", { level: 1, name: "Rules" }).waitFor();
  await page.getByText(/^Ruleset version \d+/).waitFor();
  await page.waitForFunction(() => /^\d[\d,]* rules?/.test(document.querySelector("section[aria-labelledby=rules-title] p[role=status]")?.textContent ?? ""));
  const toggle = page.locator("table.grid tbody tr").first().getByRole("checkbox");
  const before = await toggle.isChecked();
  await toggle.click();
  await page.waitForFunction((was) => document.querySelector("table.grid tbody tr input[type=checkbox]")?.checked === !was, before);
  await page.locator("table.grid tbody tr").first().getByRole("checkbox").click();
  await page.waitForFunction((was) => document.querySelector("table.grid tbody tr input[type=checkbox]")?.checked === was, before);
  await accessible(page, "rules");
  await screen(page, "rules");
}
