// IOCs in the browser: a hostile value added and shown as text, a CSV imported with its
// refused line named, the hunt finding the imported address in the hostile evidence,
// the match opening its event in the timeline, an IOC disabled and one deleted.

import { accessible, check, screen } from "./lib.mjs";

const HOSTILE_VALUE = '<img src=x onerror="window.__pwned = 1">';
const CSV = "type,value,description\nip,203.0.113.66,c2 address\nsha256,not-a-hash,broken\ndomain,evil.example,phishing\n";

export async function iocsFlow(page) {
  const table = page.locator("section[aria-labelledby=iocs-title] > table");
  await page.getByRole("link", { name: "IOCs", exact: true }).click();
  await page.getByRole("heading", { level: 1, name: "IOCs" }).waitFor();
  await page.waitForFunction(() => /^\d+ IOCs?/.test(document.querySelector("#iocs-count")?.textContent ?? ""));

  // One added by hand, with a value that would run script as HTML.
  await page.locator("form[aria-labelledby=add-ioc-title] select").first().selectOption({ label: "other" });
  await page.getByLabel("Value", { exact: true }).fill(HOSTILE_VALUE);
  await page.getByLabel("Description", { exact: true }).fill("hostile");
  await page.getByRole("button", { name: "Add IOC" }).click();
  await table.getByRole("cell", { name: HOSTILE_VALUE, exact: true }).waitFor();
  check((await page.locator("main img").count()) === 0, "a hostile IOC value became an element");
  check((await page.evaluate(() => window.__pwned ?? null)) === null, "a hostile IOC value ran script");

  // A CSV: two created, the broken line refused and named.
  await page.getByLabel("File", { exact: true }).setInputFiles({ name: "feed.csv", mimeType: "text/csv", buffer: Buffer.from(CSV) });
  await page.getByRole("button", { name: "Import", exact: true }).click();
  const result = page.locator(".import-result");
  await result.waitFor();
  const summary = await result.locator("p").first().innerText();
  check(/3 records read: 2 created, 0 duplicates, 1 refused/.test(summary), `the import: ${summary}`);
  const refused = await result.locator("tbody tr").first().locator("td").allInnerTexts();
  check(refused[0] === "line:3" && refused[1] === "not-a-hash", `the refused line: ${refused.join(" | ")}`);
  await table.getByRole("cell", { name: "203.0.113.66", exact: true }).waitFor();

  // The hunt runs by itself after the change; the match shows once it has.
  let found = false;
  for (let i = 0; i < 60 && !found; i++) {
    found = (await page.locator("section[aria-labelledby=matches-list-title] td", { hasText: "203.0.113.66" }).count()) > 0;
    if (!found) {
      await page.waitForTimeout(1000);
      await page.reload();
      await page.getByRole("heading", { level: 1, name: "IOCs" }).waitFor();
      await page.locator("section[aria-labelledby=matches-list-title] p.status").waitFor();
    }
  }
  check(found, "the imported address was not found in the evidence");
  await accessible(page, "IOCs");
  await screen(page, "iocs");

  // Disabled, and the hostile one deleted.
  await table.locator("tbody tr", { hasText: "evil.example" }).getByRole("checkbox").uncheck();
  await table.locator("tbody tr", { hasText: "evil.example" }).getByText("disabled").waitFor();
  await page.getByRole("button", { name: `Delete IOC ${HOSTILE_VALUE}` }).click();
  await table.getByRole("cell", { name: HOSTILE_VALUE, exact: true }).waitFor({ state: "detached" });

  // The match opens its event.
  await page.locator("section[aria-labelledby=matches-list-title]").getByRole("link", { name: "Open in the timeline" }).first().click();
  await page.getByRole("heading", { name: "Timeline" }).waitFor();
  await page.waitForFunction(() => /^1 event\b/.test(document.querySelector("#timeline-count")?.textContent ?? ""));
  const cells = await page.locator('.vtable [role=row][data-index="0"]').innerText();
  check(cells.includes("203.0.113.66"), `the matched event: ${cells}`);
  await page.getByRole("link", { name: "Case overview" }).click();
  await page.getByRole("heading", { name: "Detections" }).waitFor();
}
