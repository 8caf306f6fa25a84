// The web app's performance in Debian's headless Chromium (`make bench-web`):
//
// - first load: the JavaScript the sign-in page loads, gzip-compressed (budget 300 KB);
// - a 1,000-row timeline page: from pressing Search to the rows on screen, median of the
//   runs, against the SearchTimeline call alone (the browser's resource timing of the
//   same request: the server-and-network floor, measured in the same run);
// - scrolling through every event of a 100,000-event case with the mouse wheel while the
//   table pages in the rest (99 more pages of 1,000), and back up through what is loaded:
//   frame intervals (median, p95) and the main-thread tasks of Chromium's trace longer
//   than 50 ms (budget: none).
//
//   node web/bench/timeline.mjs --binary target/release/casescope [--events 100000]

import { chromium } from "playwright-core";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir, cpus } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";

const args = process.argv.slice(2);
const arg = (name, fallback) => {
  const at = args.indexOf(`--${name}`);
  return at >= 0 ? args[at + 1] : fallback;
};
const binary = arg("binary");
const events = Number(arg("events", "100000"));
const runs = Number(arg("runs", "7"));
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
if (!binary) {
  console.error("--binary PATH (a release casescope with the web app) is required");
  process.exit(2);
}
const PASSWORD = "a benchmark password 123";
const LONG_TASK_US = 50_000;
const JS_BUDGET = 300 * 1024;

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN;
};
const percentile = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))] : NaN;
};

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on("error", reject);
  });
}

const work = mkdtempSync(join(tmpdir(), "casescope-bench-web-"));
const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const env = { ...process.env, CASESCOPE_SERVER: base, XDG_CONFIG_HOME: join(work, "config") };
delete env.CASESCOPE_TOKEN;
const cli = (cliArgs, input) =>
  execFileSync(binary, cliArgs, { env, input: input ?? "", maxBuffer: 64 << 20, stdio: ["pipe", "pipe", "pipe"] })
    .toString()
    .trim();

const server = spawn(binary, ["serve", "--listen", `127.0.0.1:${port}`, "--data-dir", join(work, "data")], {
  env: { ...process.env, CASESCOPE_ADMIN_PASSWORD: PASSWORD, CASESCOPE_LOG: "warn" },
  stdio: "ignore",
});
let browser;
try {
  console.log(`machine: ${cpus().length} cores, ${cpus()[0]?.model ?? ""}`);
  for (let i = 0; ; i++) {
    try {
      cli(["login", "--user", "admin", "--password-stdin"], `${PASSWORD}\n`);
      break;
    } catch (error) {
      if (i > 150) throw error;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  const caseId = cli(["case", "create", "bench-web"]);
  const evtx = join(work, "synthetic.evtx");
  cli(["synth", "evtx", "--events", String(events), "--seed", "11", "--out", evtx]);
  const started = Date.now();
  cli(["upload", caseId, evtx]);
  for (;;) {
    const files = JSON.parse(cli(["files", caseId, "--json"]));
    if (files.some((f) => f.status === "failed")) throw new Error(`a file failed: ${JSON.stringify(files)}`);
    if (files.length === 1 && files[0].status === "ready") break;
    await new Promise((r) => setTimeout(r, 1000));
  }
  console.log(`case: ${events.toLocaleString("en-US")} synthetic events ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);

  browser = await chromium.launch({ executablePath, headless: true, args: ["--no-sandbox", "--disable-dev-shm-usage"] });
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const problems = [];
  page.on("pageerror", (e) => problems.push(e.message));

  // First load: every script the sign-in page loads, gzip-compressed.
  const scripts = [];
  page.on("response", async (response) => {
    if (response.request().resourceType() === "script") {
      scripts.push(response.body().then((body) => ({ url: response.url(), gzip: gzipSync(body, { level: 9 }).length })));
    }
  });
  await page.goto(`${base}/`);
  await page.getByRole("button", { name: "Sign in", exact: true }).waitFor();
  const loaded = await Promise.all(scripts);
  const jsBytes = loaded.reduce((sum, s) => sum + s.gzip, 0);
  console.log(
    `first load: ${(jsBytes / 1024).toFixed(1)} KB of gzip-compressed JavaScript in ${loaded.length} file(s) (budget ${JS_BUDGET / 1024} KB: ${jsBytes <= JS_BUDGET ? "met" : "MISSED"})`,
  );

  await page.getByLabel("User name").fill("admin");
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
  await page.getByRole("heading", { name: "Cases" }).waitFor();

  // A 1,000-row page: Search pressed → rows on screen, against the call alone.
  await page.goto(`${base}/#/cases/${caseId}/timeline`);
  await page.locator('.vtable [role=row][data-index="0"]').waitFor({ timeout: 120_000 });
  const shown = [];
  const calls = [];
  for (let i = 0; i < runs; i++) {
    await page.evaluate(() => performance.clearResourceTimings());
    const t = await page.evaluate(
      () =>
        new Promise((resolve) => {
          const button = [...document.querySelectorAll("button")].find((b) => b.textContent === "Search");
          const start = performance.now();
          const seen = () => {
            const status = document.querySelector("#timeline-count")?.textContent ?? "";
            if (document.querySelector('.vtable [role=row][data-index="0"]') && /events/.test(status) && !/Searching/.test(status)) {
              // The frame after the rows are in the document: they are painted.
              requestAnimationFrame(() => resolve(performance.now() - start));
            } else {
              requestAnimationFrame(seen);
            }
          };
          button.click();
          requestAnimationFrame(seen);
        }),
    );
    const call = await page.evaluate(() => {
      const entry = performance
        .getEntriesByType("resource")
        .find((e) => e.name.endsWith("/casescope.cases.v1.CasesService/SearchTimeline"));
      return entry ? entry.responseEnd - entry.startTime : NaN;
    });
    shown.push(t);
    calls.push(call);
  }
  const rows = Number(await page.locator(".vtable").getAttribute("aria-rowcount")) - 1;
  console.log(
    `1,000-row page (${rows.toLocaleString("en-US")} rows loaded), ${runs} runs: Search → rows shown median ${median(shown).toFixed(1)} ms; ` +
      `SearchTimeline call alone (baseline) median ${median(calls).toFixed(1)} ms; ratio ${(median(shown) / median(calls)).toFixed(2)}`,
  );

  // Scrolling through every event, the table paging in the rest; then back up.
  const scroll = async (direction) => {
    await page.evaluate(() => {
      window.__frames = [];
      let last = performance.now();
      const tick = (now) => {
        window.__frames.push(now - last);
        last = now;
        if (window.__framesOn) requestAnimationFrame(tick);
      };
      window.__framesOn = true;
      requestAnimationFrame(tick);
    });
    await browser.startTracing(page, { categories: ["devtools.timeline", "disabled-by-default-devtools.timeline"] });
    const box = await page.locator(".vtable").boundingBox();
    await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    const started = Date.now();
    let steps = 0;
    for (;;) {
      await page.mouse.wheel(0, direction * 2800);
      steps++;
      const state = await page.evaluate(() => {
        const el = document.querySelector(".vtable");
        const count = Number(el.getAttribute("aria-rowcount")) - 1;
        return { top: el.scrollTop, bottom: el.scrollTop + el.clientHeight >= el.scrollHeight - 2, count };
      });
      if (direction > 0 && state.bottom && state.count >= events) break;
      if (direction < 0 && state.top <= 0) break;
      if (Date.now() - started > 600_000) throw new Error(`scrolling did not finish: ${JSON.stringify(state)}`);
    }
    const frames = await page.evaluate(() => {
      window.__framesOn = false;
      return window.__frames.slice(1);
    });
    const trace = JSON.parse((await browser.stopTracing()).toString());
    const list = Array.isArray(trace) ? trace : trace.traceEvents;
    const mains = new Set(
      list
        .filter((e) => e.ph === "M" && e.name === "thread_name" && e.args?.name === "CrRendererMain")
        .map((e) => `${e.pid}:${e.tid}`),
    );
    const tasks = list.filter((e) => e.name === "RunTask" && e.ph === "X" && mains.has(`${e.pid}:${e.tid}`));
    const longTasks = tasks.filter((e) => e.dur > LONG_TASK_US);
    const long = longTasks.map((e) => e.dur / 1000);
    // What a long task spent its time on: its heaviest inner events.
    const inside = longTasks.map((task) => {
      const within = list.filter(
        (e) => e.ph === "X" && e.pid === task.pid && e.tid === task.tid && e !== task && e.ts >= task.ts && e.ts + (e.dur ?? 0) <= task.ts + task.dur && (e.dur ?? 0) > 5000,
      );
      return within
        .sort((a, b) => b.dur - a.dur)
        .slice(0, 4)
        .map((e) => `${e.name} ${(e.dur / 1000).toFixed(0)} ms`)
        .join(", ");
    });
    return {
      steps,
      seconds: (Date.now() - started) / 1000,
      frames,
      tasks: tasks.length,
      long,
      inside,
      longest: Math.max(0, ...tasks.map((e) => e.dur / 1000)),
    };
  };
  const down = await scroll(1);
  const loadedRows = Number(await page.locator(".vtable").getAttribute("aria-rowcount")) - 1;
  const up = await scroll(-1);
  for (const [name, s] of [
    [`down through ${loadedRows.toLocaleString("en-US")} events, paging`, down],
    ["back up through the loaded rows (baseline: no paging)", up],
  ]) {
    console.log(
      `scroll ${name}: ${s.steps} wheel steps in ${s.seconds.toFixed(1)} s; frame interval median ${median(s.frames).toFixed(1)} ms, p95 ${percentile(s.frames, 0.95).toFixed(1)} ms; ` +
        `main-thread tasks ${s.tasks}, longest ${s.longest.toFixed(1)} ms, over 50 ms: ${s.long.length}${s.long.length ? ` (${s.long.map((d, i) => `${d.toFixed(0)} ms: ${s.inside[i] || "no inner event over 5 ms"}`).join("; ")})` : ""}`,
    );
  }
  console.log(
    `scroll frame median ratio (paging / baseline): ${(median(down.frames) / median(up.frames)).toFixed(2)}; ` +
      `long tasks over 50 ms: ${down.long.length + up.long.length} (budget 0: ${down.long.length + up.long.length === 0 ? "met" : "MISSED"})`,
  );
  if (loadedRows !== events) throw new Error(`the table loaded ${loadedRows} of ${events} events`);
  if (problems.length) throw new Error(`page errors: ${problems.join("; ")}`);
} finally {
  await browser?.close();
  server.kill("SIGTERM");
  await new Promise((r) => server.once("exit", r));
  rmSync(work, { recursive: true, force: true });
}
