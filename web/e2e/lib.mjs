// What every step of the browser run shares: the hostile strings, checks, screenshots
// and the accessibility scan.

import { readFileSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

const require = createRequire(import.meta.url);
const shots = process.env.CASESCOPE_SCREENSHOTS;
const axeSource = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

/** Strings an attacker can put in evidence or names: none may run, all show as text. */
export const HOSTILE = [
  "<script>window.__pwned = 1</script>",
  '<img src=x onerror="window.__pwned = 1">',
  "javascript:window.__pwned=1",
  "\u202Egpj.exe\u200B\u200D\u2066 RTL",
];

/** What went wrong outside a check (dialogs, page errors, CSP refusals). */
export const failures = [];
export function check(condition, message) {
  if (!condition) throw new Error(message);
}

export async function screen(page, name) {
  if (!shots) return;
  mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

/** axe-core over the page as it is: no serious or critical violation. */
export async function accessible(page, name) {
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

/** How the app shows `text`: invisible direction and width characters as ⟨U+XXXX⟩. */
export function shownAs(text) {
  return text.replace(
    /[\u061C\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u2069\uFEFF]/g,
    (c) => `⟨U+${c.codePointAt(0).toString(16).toUpperCase().padStart(4, "0")}⟩`,
  );
}
