// The timeline in the browser: every event of the case paged through with the keyboard
// (the virtualised table asks for each next page), the hostile event shown as text, a
// syntax error pointed at, `EventID:4624` searched, an event opened, tagged, starred
// and commented, found again with `tag:`, saved, exported; a detection level from the
// overview opens its events, and a rule from the drawer opens its own.

import { readFileSync } from "node:fs";
import { accessible, check, screen, shownAs } from "./lib.mjs";

const SCRIPT_TEXT = "<script>window.__pwned = 1</script>";

/** The count the status line gives ("1,234 events", "No event matches."). */
async function count(page) {
  const status = page.locator("#timeline-count");
  // The count shown is of the selection in the address (not the one before it).
  await page.waitForFunction(() => {
    const element = document.querySelector("#timeline-count");
    const search = window.location.hash.split("?")[1] ?? "";
    return element?.getAttribute("data-search") === search;
  });
  const text = await status.innerText();
  const match = /^(?:At least )?([\d,]+) events?/.exec(text);
  return { total: match ? Number(match[1].replaceAll(",", "")) : 0, text };
}

async function search(page, query) {
  const box = page.getByRole("searchbox", { name: "Query" });
  await box.fill(query);
  await box.press("Enter");
  await page.waitForFunction(
    (q) => decodeURIComponent(window.location.hash.replaceAll("+", " ")).includes(q) || q === "",
    query,
  );
}

/** The texts of one column over the rendered rows. */
async function column(page, label) {
  const headers = await page.locator(".vtable [role=columnheader]").allInnerTexts();
  const at = headers.findIndex((h) => h.trim() === label);
  check(at >= 0, `no ${label} column: ${headers.join(" | ")}`);
  return page.locator(`.vtable [role=row][data-index] [role=cell]:nth-child(${at + 1})`).allInnerTexts();
}

export async function timelineFlow(page, { caseId }) {
  // The case's events, as the overview counts them.
  const indexed = await page.locator("section[aria-labelledby=case-title] > table tbody tr td:nth-child(5)").allInnerTexts();
  const expected = indexed.reduce((sum, text) => sum + Number(text.replaceAll(",", "")), 0);
  check(expected > 0, "the overview counts no event");

  await page.getByRole("link", { name: "Open the timeline" }).click();
  await page.getByRole("heading", { name: "Timeline" }).waitFor();
  const all = await count(page);
  check(all.total === expected, `the timeline counts ${all.text}, the overview ${expected} events`);

  // The oldest event is the hostile one: its values show as text, nothing runs.
  const summary = await page.locator('.vtable [role=row][data-index="0"]').innerText();
  check(summary.includes(SCRIPT_TEXT), `the hostile event's fields are not shown as text: ${summary}`);
  check((await page.locator(".vtable img, .drawer img").count()) === 0, "an event field became an element");

  // Every event, paged with the cursor as the keyboard walks to the end.
  await page.locator('.vtable [role=row][data-index="0"]').focus();
  for (let i = 0; i < 60; i++) {
    await page.keyboard.press("End");
    const rows = Number(await page.locator(".vtable").getAttribute("aria-rowcount")) - 1;
    if (rows === expected) break;
    await page.waitForTimeout(250);
  }
  const loaded = Number(await page.locator(".vtable").getAttribute("aria-rowcount")) - 1;
  check(loaded === expected, `paged through ${loaded} of ${expected} events`);
  const last = await page.evaluate(() => document.activeElement?.getAttribute("data-index"));
  check(Number(last) === expected - 1, `End focused row ${last}, not the last (${expected - 1})`);
  check(!(await count(page)).text.includes("loaded"), "all events are loaded but the status says otherwise");

  // The hostile event in the drawer, opened from the keyboard.
  await page.keyboard.press("Home");
  await page.keyboard.press("Enter");
  await page.locator("#drawer-title").waitFor();
  await page.getByRole("cell", { name: SCRIPT_TEXT, exact: true }).waitFor();
  await page.getByRole("cell", { name: shownAs("\u202Egpj.exe\u200B\u200D\u2066 RTL"), exact: true }).waitFor();
  check((await page.evaluate(() => window.__pwned ?? null)) === null, "a hostile event ran script");
  check((await page.locator('a[href^="javascript:" i]').count()) === 0, "a javascript: value became a link");
  // The long right-to-left value is there whole, as text, and stays inside the drawer.
  const longValue = page.locator(".drawer table.fields tr", { hasText: "Note" }).locator("td.value");
  check((await longValue.innerText()).length > 6000, "the long right-to-left value is cut");
  const widths = await page.evaluate(() => {
    const drawer = document.querySelector(".drawer");
    return drawer ? [drawer.scrollWidth, drawer.clientWidth] : [0, 0];
  });
  check(widths[0] <= widths[1] + 1, `the long value overflows the drawer: ${widths.join(" > ")}`);
  check((await page.locator(".drawer img").count()) === 0, "a hostile field became an element");
  await page.keyboard.press("Escape");
  await page.locator("#drawer-title").waitFor({ state: "detached" });

  // The histogram brushed over its first tenth (the hostile event of 2001, alone
  // there) zooms to it; the whole range again.
  const bars = page.locator(".histogram svg");
  const box = await bars.boundingBox();
  await page.mouse.move(box.x + 1, box.y + box.height / 2);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width * 0.1, box.y + box.height / 2, { steps: 5 });
  await page.mouse.up();
  await page.waitForFunction(() => /[?&]from=.*&to=/.test(window.location.hash));
  const zoomed = await count(page);
  check(zoomed.total === 1, `the brushed span holds ${zoomed.text}`);
  await page.getByRole("button", { name: "Whole time range" }).click();
  await page.waitForFunction(() => !/[?&]from=/.test(window.location.hash));
  check((await count(page)).total === expected, "the whole time range again lost events");

  // A column of a field.
  await page.getByText("Columns", { exact: true }).click();
  await page.getByRole("textbox", { name: "Field column" }).fill("TargetUserName");
  await page.getByRole("button", { name: "Add column" }).click();
  await page.locator(".vtable [role=columnheader]", { hasText: "TargetUserName" }).waitFor();
  await page.getByText("Columns", { exact: true }).click();

  // A syntax error points at its character.
  await search(page, "EventID:(4624");
  await page.locator("#query-error mark").waitFor();
  check(
    (await page.getByRole("searchbox", { name: "Query" }).getAttribute("aria-invalid")) === "true",
    "the query box is not marked invalid",
  );

  // EventID:4624: only logons.
  await search(page, "EventID:4624");
  const logons = await count(page);
  check(logons.total > 0 && logons.total < expected, `EventID:4624 selects ${logons.text}`);
  const codes = await column(page, "Event ID");
  check(codes.length > 0 && codes.every((c) => c.trim() === "4624"), `not only 4624: ${codes.join(",")}`);

  // Open one: copy a value, see the events around it, filter for one of its values.
  await page.locator('.vtable [role=row][data-index="0"]').click();
  await page.getByRole("heading", { name: /^Event 4624 at / }).waitFor();
  const drawer = page.locator(".drawer");
  await drawer.getByRole("button", { name: "Copy EventID" }).click();
  await drawer.getByRole("button", { name: "Copy EventID" }).getByText("Copied").waitFor();
  const copied = await page.evaluate(() => navigator.clipboard.readText());
  check(copied === "4624", `copied ${copied}`);
  await drawer.locator("ol.context li button").first().waitFor();
  await drawer.getByRole("button", { name: "Filter for Channel" }).click();
  await page.waitForFunction(() => decodeURIComponent(window.location.hash).includes('Channel:"Security"'));
  const security = await count(page);
  check(security.total > 0 && security.total <= logons.total, `filtering for the channel: ${security.text}`);
  const channels = await column(page, "Channel");
  check(channels.every((c) => c.trim() === "Security"), `not only Security: ${channels.join(",")}`);

  // Tag, star and comment it.
  await page.locator('.vtable [role=row][data-index="0"]').click();
  await page.getByRole("heading", { name: /^Event 4624 at / }).waitFor();
  await drawer.getByLabel("Tag", { exact: true }).fill("  Lateral   Movement ");
  await drawer.getByRole("button", { name: "Add tag" }).click();
  await drawer.getByRole("list", { name: "Tags" }).getByText("lateral movement").waitFor();
  await drawer.getByRole("button", { name: "☆ Star" }).click();
  await drawer.getByRole("button", { name: "★ Starred" }).waitFor();
  const note = "Logon from the WMI host <b>not bold</b>";
  await drawer.getByRole("textbox", { name: "Comment", exact: true }).fill(note);
  await drawer.getByRole("button", { name: "Add comment" }).click();
  await drawer.locator(".comment .body", { hasText: note }).waitFor();
  await drawer.getByRole("button", { name: "Reply" }).click();
  await drawer.getByRole("textbox", { name: /^Reply to / }).fill("agreed");
  await drawer.getByRole("button", { name: "Reply", exact: true }).last().click();
  await drawer.locator("ul.thread ul.thread .comment .body", { hasText: "agreed" }).waitFor();
  // One's own comment edited (its versions kept) and another deleted (its place kept).
  const reply = drawer.locator("ul.thread ul.thread article.comment").first();
  await reply.getByRole("button", { name: "Edit" }).click();
  await drawer.getByRole("textbox", { name: "Your comment" }).fill("agreed (confirmed)");
  await drawer.getByRole("button", { name: "Save" }).click();
  await drawer.locator(".comment .body", { hasText: "agreed (confirmed)" }).waitFor();
  await drawer.getByRole("button", { name: "Show its 2 versions" }).click();
  const versionList = drawer.getByRole("list", { name: "Versions of the comment" });
  await versionList.locator("li").nth(1).waitFor();
  const versions = await versionList.locator("li").allInnerTexts();
  check(versions.length === 2 && versions[0].endsWith("agreed") && versions[1].endsWith("agreed (confirmed)"), `versions: ${versions.join(" | ")}`);
  await drawer.getByRole("textbox", { name: "Comment", exact: true }).fill("temporary");
  await drawer.getByRole("button", { name: "Add comment" }).click();
  const temporary = drawer.locator("article.comment", { hasText: "temporary" });
  await temporary.getByRole("button", { name: "Delete" }).click();
  await temporary.getByRole("button", { name: "Delete" }).click();
  await drawer.locator(".comment .status", { hasText: "(deleted)" }).waitFor();
  const marks = await page.locator('.vtable [role=row][data-index="0"] [role=cell]:nth-child(2)').innerText();
  check(marks.includes("★") && marks.includes("C2") && marks.includes("#1"), `the row's marks: ${marks}`);

  // Found again by its tag (and by star, with a filter).
  await search(page, 'tag:"lateral movement"');
  const tagged = await count(page);
  check(tagged.total === 1, `tag:"lateral movement" selects ${tagged.text}`);
  await page.getByRole("checkbox", { name: "Starred" }).check();
  await page.waitForFunction(() => window.location.hash.includes("starred=1"));
  const starred = await count(page);
  check(starred.total === 1, `tag and starred select ${starred.text}`);
  await page.locator('.vtable [role=row][data-index="0"]').click();
  await page.locator(".drawer .comment").first().waitFor();
  await accessible(page, "timeline with an event open");
  await screen(page, "timeline");

  // Saved and in the history; exported.
  await page.getByText("Saved searches, history and export").click();
  await page.getByLabel("Save this search as").fill("lateral movement, starred");
  await page.getByRole("button", { name: "Save", exact: true }).click();
  await page.getByRole("link", { name: "lateral movement, starred" }).waitFor();
  await page.locator("#history-title + ol a", { hasText: 'tag:"lateral movement"' }).first().waitFor();
  const [download] = await Promise.all([
    page.waitForEvent("download"),
    page.getByRole("button", { name: "Export this selection" }).click(),
  ]);
  const csv = readFileSync(await download.path(), "utf8").trim().split("\n");
  check(csv.length === 2 && csv[0].startsWith("datetime,"), `the export: ${csv.slice(0, 3).join(" / ")}`);
  check(csv[1].includes("lateral movement") && csv[1].includes("true"), `the exported row: ${csv[1]}`);

  // A detection level on the overview opens its events; a rule in the drawer opens its own.
  await page.getByRole("link", { name: "Case overview" }).click();
  await page.getByRole("heading", { name: "Detections" }).waitFor();
  await page.locator("section[aria-labelledby=detections-title] dt a").first().click();
  await page.getByRole("heading", { name: "Timeline" }).waitFor();
  const detected = await count(page);
  check(detected.total > 0, `a detection level opens ${detected.text}`);
  await page.locator('.vtable [role=row][data-index="0"]').click();
  const rule = page.locator("section[aria-labelledby=drawer-detections] a").first();
  await rule.click();
  await page.getByRole("list", { name: "Filters" }).getByText(/^rule: /).waitFor();
  const byRule = await count(page);
  check(byRule.total > 0, `the rule opens ${byRule.text}`);
  const ruleMarks = await column(page, "Marks");
  check(ruleMarks.every((m) => /D\d+/.test(m)), `an event of the rule shows no detection: ${ruleMarks.join(",")}`);
  await page.getByRole("link", { name: "Case overview" }).click();
  await page.getByRole("heading", { name: "Detections" }).waitFor();

  // The overview's recent activity: the newest comment first, the searches above.
  const activity = page.locator("section[aria-labelledby=activity-title]");
  await activity.locator("li", { hasText: ": agreed (confirmed)" }).waitFor();
  const comments = await activity.locator("ul").first().locator("li").allInnerTexts();
  check(
    comments[0]?.endsWith(": (deleted)") && comments[1]?.endsWith(": agreed (confirmed)"),
    `the newest comments are not first: ${comments.join(" | ")}`,
  );
  await activity.getByRole("link", { name: /tag:"lateral movement"/ }).first().waitFor();
}

/** A viewer of the case sees the tagged event but the server refuses their tag. */
export async function viewerCannotAnnotate(page, { caseId }) {
  await page.goto(`${new URL(page.url()).origin}/#/cases/${caseId}/timeline?q=${encodeURIComponent('tag:"lateral movement"')}`);
  await page.getByRole("heading", { name: "Timeline" }).waitFor();
  check((await count(page)).total === 1, "the viewer does not see the tagged event");
  await page.locator('.vtable [role=row][data-index="0"]').click();
  const drawer = page.locator(".drawer");
  await drawer.getByLabel("Tag", { exact: true }).fill("mine");
  await drawer.getByRole("button", { name: "Add tag" }).click();
  const refusal = await drawer.getByRole("alert").innerText();
  check(refusal.includes("your role does not allow TagEvents"), `the viewer's tag: ${refusal}`);
  check((await drawer.getByRole("list", { name: "Tags" }).getByText("mine").count()) === 0, "the refused tag shows");
}
