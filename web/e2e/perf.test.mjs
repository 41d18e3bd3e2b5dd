// An agent's Performance tab and the Agents page's CPU and memory columns in headless Chromium, against a real
// backend, nats-server and agent, which crates/kanade-backend/tests/dashboard_perf.rs starts and describes through
// the environment:
//   KANADE_URL        the backend, serving the embedded dashboard
//   KANADE_TOKEN      the shared API token
//   KANADE_PERF_PC    the agent sampling this machine, running a CPU burner and a disk writer
//   KANADE_BURNER     the burner's process name
//   KANADE_HOT_PC     a PC whose only heartbeat says its host's CPU is at 100%
//   KANADE_QUIET_PC   a PC whose only heartbeat says nothing of its host's CPU or memory
//   KANADE_REAL_DISK  1 when this machine has a real disk in /proc/diskstats (else no disk figure can be non-zero)
//   KANADE_ARTIFACTS  where screenshots go
//   KANADE_CHROMIUM   the browser (Debian's chromium; playwright-core does not download one)
// The steps run in order in one browser: each starts where the previous one left the page.

import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { accessible as checkAccessible, env as sharedEnv, expectText as waitForText, launchChromium } from "./support.mjs";

const env = (name) => sharedEnv(name, "dashboard_perf");
const URL = env("KANADE_URL");
const TOKEN = env("KANADE_TOKEN");
const PC = env("KANADE_PERF_PC");
const BURNER = env("KANADE_BURNER");
const HOT_PC = env("KANADE_HOT_PC");
const QUIET_PC = env("KANADE_QUIET_PC");
const REAL_DISK = env("KANADE_REAL_DISK") === "1";
const ARTIFACTS = env("KANADE_ARTIFACTS");
const WIDE = { width: 1280, height: 900 };
const NARROW = { width: 390, height: 844 };
/// How long one expectation may take: samples travel agent → NATS → backend → SSE → page every second.
const PATIENCE = 30_000;

let browser;
let context;
let page;
const problems = [];
/// While the test refuses the live stream on purpose, the browser's note of that 503 is expected.
let refusing = false;
/// Every Content-Security-Policy violation any page met, as the page reported it.
const violations = [];
/// Every request for the live stream, and how each ended ("open" while it streams).
const streams = [];

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  browser = await launchChromium();
  context = await browser.newContext({ viewport: WIDE });
  context.setDefaultTimeout(PATIENCE);
  // Every CSP violation of every page load, reported by the page itself (the init script and the binding go through
  // the DevTools protocol, which the CSP does not govern). Chromium also logs each as a console error.
  await context.exposeBinding("kanadeCspViolation", (_source, text) => violations.push(text));
  await context.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (e) => {
      void window.kanadeCspViolation(`${e.violatedDirective}: ${e.blockedURI || "inline"} (${e.sourceFile}:${e.lineNumber})`);
    });
  });
  page = await context.newPage();
  page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
  page.on("console", (msg) => {
    if (msg.type() !== "error") return;
    if (refusing && /status of 503/.test(msg.text()) && (msg.location()?.url ?? "").endsWith("/perf/live")) return;
    problems.push(`console error: ${msg.text()} (${msg.location()?.url ?? ""})`);
  });
  page.on("request", (request) => {
    if (request.url().endsWith("/perf/live")) streams.push({ request, end: "open" });
  });
  const ended = (how) => (request) => {
    const stream = streams.find((s) => s.request === request);
    if (stream) stream.end = how;
  };
  page.on("requestfailed", ended("failed"));
  page.on("requestfinished", ended("finished"));
});

after(async () => {
  await browser?.close();
});

async function shot(name) {
  await page.screenshot({ path: join(ARTIFACTS, `perf-${name}.png`), fullPage: true });
}

const accessible = (what) => checkAccessible(page, what);
const expectText = (locator, pattern) => waitForText(locator, pattern, PATIENCE);

/// Waits until `probe()` returns something truthy; fails saying what it last returned.
async function eventually(what, probe, patience = PATIENCE) {
  const deadline = Date.now() + patience;
  let last;
  while (Date.now() < deadline) {
    last = await probe().catch((err) => `error: ${err.message}`);
    if (last && !String(last).startsWith("error: ")) return last;
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.fail(`${what}: still ${JSON.stringify(last)}`);
}

/// The backend's count of PCs whose live performance it relays now (its `/metrics`).
async function watches() {
  const response = await fetch(`${URL}/metrics`, { headers: { Authorization: `Bearer ${TOKEN}` } });
  const text = await response.text();
  const match = /^(?:kanade_)?perf_watches(?:\{[^}]*\})? (\d+)/m.exec(text);
  assert.ok(match, `/metrics has perf_watches:\n${text.slice(0, 2000)}`);
  return Number(match[1]);
}

const cpuChart = () => page.getByTestId("perf-cpu").getByRole("img");
const latestAt = () => cpuChart().getAttribute("data-latest-at");

test("the Performance tab streams live charts whose latest point moves on", async () => {
  await page.goto(URL);
  await page.getByRole("button", { name: "Use an API token instead" }).click();
  await page.getByLabel("API token").fill(TOKEN);
  await page.getByLabel("Your name").fill("dora");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Fleet", level: 1 }).waitFor();
  await page.goto(`${URL}/agents/${PC}`);
  await page.getByRole("heading", { name: PC, level: 1 }).waitFor();
  await page.getByRole("tablist").getByRole("tab", { name: "Performance" }).click();
  await page.waitForURL(/tab=performance/);
  assert.ok(await page.getByRole("radio", { name: "Live" }).isChecked(), "Live is the range at first");

  await eventually("the stream is live", async () => (await page.getByTestId("perf-state").getAttribute("data-state")) === "live");
  await expectText(page.getByTestId("perf-state"), /^● Live, a sample every 1 s\.$/);
  const first = await eventually("a first sample", latestAt);
  const second = await eventually("a later sample", async () => {
    const at = await latestAt();
    return at && at !== first ? at : null;
  });
  assert.ok(Date.parse(second) > Date.parse(first), `${second} is after ${first}`);
  // The history came first: more than one point is drawn, and the chart says its figures in words.
  assert.ok(Number(await cpuChart().getAttribute("data-points")) >= 2);
  assert.match(await cpuChart().getAttribute("aria-label"), /^CPU busy, all cores, the last 2 minutes\. All cores: now \d+\.\d%, lowest \d+\.\d%, highest \d+\.\d%\./);
  await expectText(page.getByTestId("perf-cpu").locator("dl"), /All cores\s*\d+\.\d%/);
  await expectText(page.getByTestId("perf-memory").locator("dl"), /In use\s*[\d.]+ [KMGT]iB of [\d.]+ [KMGT]iB \(\d+\.\d%\)/);
  await expectText(page.getByTestId("perf-network").locator("dl"), /Received\s*[\d.]+ k?[MGT]?B\/s\s*Sent/);
  // The third sample moves it on again: the page follows the stream, not a snapshot.
  await eventually("a third sample", async () => {
    const at = await latestAt();
    return at && at !== second ? at : null;
  });
});

test("sorted by CPU, the burner tops the processes; the headers sort by keyboard too", async () => {
  const table = page.getByRole("table", { name: `Busiest processes on ${PC}` });
  await table.waitFor();
  const header = (name) => table.getByRole("columnheader", { name });
  // Memory first, then CPU: CPU sorts busiest first when chosen.
  await table.getByRole("button", { name: "Memory" }).click();
  assert.equal(await header("Memory").getAttribute("aria-sort"), "descending");
  assert.equal(await header("CPU").getAttribute("aria-sort"), null);
  await table.getByRole("button", { name: "CPU" }).click();
  assert.equal(await header("CPU").getAttribute("aria-sort"), "descending");
  await expectText(table.locator("tbody tr").first().locator("td").nth(1), new RegExp(`^${BURNER}$`));
  await expectText(table.locator("tbody tr").first().locator("td").nth(3), /^\d+\.\d%$/);

  // The same by keyboard: Name A to Z, then Enter again turns it round.
  await table.getByRole("button", { name: "Name" }).focus();
  await page.keyboard.press("Enter");
  assert.equal(await header("Name").getAttribute("aria-sort"), "ascending");
  await page.keyboard.press("Enter");
  assert.equal(await header("Name").getAttribute("aria-sort"), "descending");
  await table.getByRole("button", { name: "CPU" }).focus();
  await page.keyboard.press("Enter");
  assert.equal(await header("CPU").getAttribute("aria-sort"), "descending");
  await expectText(table.locator("tbody tr").first().locator("td").nth(1), new RegExp(`^${BURNER}$`));
  // This is Linux: read and write are disk figures, and no all-I/O note is shown.
  assert.equal(await page.getByTestId("io-note").count(), 0);
});

test("the disk figure is non-zero while the disk job writes", async () => {
  const write = page.getByTestId("perf-disk").locator("dd").nth(1);
  if (REAL_DISK) {
    await eventually("a non-zero disk write figure", async () => Number(await write.getAttribute("data-value")) > 0);
    await expectText(write, /^[\d.]+ [kMGT]?B\/s$/);
  } else {
    // No real disk to measure here (said by the Rust test too): the figure is still a rate, never NaN.
    await expectText(write, /^\d[\d.]* [kMGT]?B\/s$/);
  }
  await accessible("the live Performance tab");
  await shot("01-live");
});

test("drawing each core adds its lines and says the busiest core", async () => {
  await page.getByLabel("Draw each core on the CPU chart").check();
  await expectText(page.getByTestId("perf-cpu").locator("dl"), /Each core \(\d+\)\s*busiest \d+\.\d%/);
  assert.match(await cpuChart().getAttribute("aria-label"), /The busiest of \d+ cores is at \d+\.\d%\./);
  await page.getByLabel("Draw each core on the CPU chart").uncheck();
});

test("a refused or ended stream is retried by itself, saying why, and draws on", async () => {
  // The stream's first answers are made here: a refusal (the backend's 503 when it watches too many PCs), then a
  // stream that ends at once; each next request waits until the page has been seen saying it reconnects.
  const held = [];
  const release = async () => {
    await eventually("the page asks again", async () => held.length > 0);
    held.shift()();
  };
  let answered = 0;
  await page.route("**/perf/live", async (route) => {
    const n = answered++;
    if (n > 0) await new Promise((resolve) => held.push(resolve));
    if (n === 0) {
      await route.fulfill({
        status: 503,
        contentType: "application/json",
        body: JSON.stringify({ error: { code: "too_many_watches", message: "too many PCs are watched at once" } }),
      });
    } else if (n === 1) {
      // As a Windows agent would send it: its per-process read and write count all I/O.
      const proc = {
        pc_id: PC,
        at: new Date().toISOString(),
        span_ms: 1000,
        io: "all_io",
        total: 1,
        processes: [{ pid: 4242, name: "WINWORD.EXE", user: "CORP\\ann", cpu_percent: 12.5, rss_bytes: 1 << 20, read_bytes_per_sec: 2048, write_bytes_per_sec: 1024 }],
      };
      const body = `: open\n\nevent: state\ndata: {"state":"live","interval_ms":1000}\n\nevent: proc\ndata: ${JSON.stringify(proc)}\n\n`;
      await route.fulfill({ status: 200, contentType: "text/event-stream", body });
    } else {
      await route.continue();
    }
  });
  refusing = true;
  try {
    await retried(release);
  } finally {
    await page.unroute("**/perf/live");
    refusing = false;
  }
  assert.equal(answered, 3);
});

/// The steps of the test above, under its routes.
async function retried(release) {
  await page.getByRole("tablist").getByRole("tab", { name: "Overview" }).click();
  await page.getByRole("tablist").getByRole("tab", { name: "Performance" }).click();
  const state = page.getByTestId("perf-state");
  await expectText(state, /^◌ The stream dropped; reconnecting \(too many PCs are watched at once\)…$/);
  await release();
  await expectText(state, /^◌ The stream dropped; reconnecting \(the stream ended\)…$/);
  // What it sent stays shown meanwhile, with the note that its read and write are not only disk.
  const table = page.getByRole("table", { name: `Busiest processes on ${PC}` });
  await expectText(table.locator("tbody tr").first(), /^4242WINWORD\.EXECORP\\ann12\.5%1\.0 MiB2\.0 kB\/s1\.0 kB\/s$/);
  await expectText(page.getByTestId("io-note"), /count all of a process's I\/O \(files, network and devices\), not only disk/);
  await accessible("the processes table with the all-I/O note");
  await release();
  await eventually("the stream is live again", async () => (await state.getAttribute("data-state")) === "live");
  await page.getByTestId("io-note").waitFor({ state: "detached" });
  const before = await eventually("a sample", latestAt);
  await eventually("a later sample", async () => {
    const at = await latestAt();
    return at && Date.parse(at) > Date.parse(before) ? at : null;
  });
}

test("hiding the browser tab or leaving the Performance tab closes the stream, and the backend's watch lapses", async () => {
  await eventually("one PC is watched while its tab is open", async () => (await watches()) === 1);
  // A browser tab in the background watches nothing.
  const visibility = (state) =>
    page.evaluate((s) => {
      Object.defineProperty(document, "visibilityState", { value: s, configurable: true });
      document.dispatchEvent(new Event("visibilitychange"));
    }, state);
  await visibility("hidden");
  await eventually("the stream's request ended", async () => streams.length > 0 && streams.every((s) => s.end !== "open"));
  await eventually("no PC is watched while hidden", async () => (await watches()) === 0);
  await visibility("visible");
  await eventually("the stream is live again", async () => (await page.getByTestId("perf-state").getAttribute("data-state")) === "live");
  await eventually("one PC is watched again", async () => (await watches()) === 1);
  await page.getByRole("tablist").getByRole("tab", { name: "Overview" }).click();
  await page.waitForURL((u) => !u.search.includes("tab="));
  await eventually("the stream's request ended", async () => streams.length > 0 && streams.every((s) => s.end !== "open"));
  await eventually("no PC is watched", async () => (await watches()) === 0);
});

test("the 1 h history draws rollup points and shows what was busiest at a point", async () => {
  await page.getByRole("tablist").getByRole("tab", { name: "Performance" }).click();
  await eventually("the stream is live again", async () => (await page.getByTestId("perf-state").getAttribute("data-state")) === "live");
  const open = streams.filter((s) => s.end === "open").length;
  assert.equal(open, 1, "one stream again");

  await page.getByRole("radio", { name: "1 h" }).check();
  await page.waitForURL(/range=1h/);
  // Choosing a range closes the live stream.
  await eventually("the live stream closed", async () => streams.every((s) => s.end !== "open"));
  await eventually("a rollup point is drawn", async () => Number(await cpuChart().getAttribute("data-points")) >= 1);
  assert.match(await cpuChart().getAttribute("aria-label"), /^CPU busy, all cores, the last hour, \d+ points?\. Average: lowest/);
  await expectText(page.getByTestId("perf-cpu").locator("dl"), /Average\s*\d+\.\d%\s*Highest\s*\d+\.\d%/);

  // The points as a table: the one whose busiest process is the burner, chosen, shows its top processes.
  await page.getByText(/^Every point as a table/).click();
  const points = page.getByRole("table", { name: /Performance history, one row per point/ });
  const row = points.getByRole("row").filter({ hasText: BURNER }).last();
  await row.waitFor();
  await row.getByRole("button").click();
  assert.equal(await row.getByRole("button").getAttribute("aria-pressed"), "true");
  const when = await row.getByRole("button").textContent();
  await expectText(page.getByTestId("perf-point").getByRole("heading", { level: 3 }), new RegExp(`^At ${when}`));
  await page.getByTestId("perf-point-cpu").getByRole("cell", { name: BURNER, exact: true }).first().waitFor();
  await accessible("the 1 h history");
  await shot("02-history-1h");

  // A click on the chart chooses the point under it.
  const box = await cpuChart().boundingBox();
  await page.mouse.click(box.x + box.width - 30, box.y + box.height / 2);
  await expectText(page.getByTestId("perf-point").getByRole("heading", { level: 3 }), /^At \d{4}-\d{2}-\d{2} \d{2}:\d{2}/);

  await page.getByRole("radio", { name: "24 h" }).check();
  await page.waitForURL(/range=24h/);
  await eventually("the 24 h history has a point", async () => Number(await cpuChart().getAttribute("data-points")) >= 1);
  await shot("03-history-24h");
});

test("the Agents page shows CPU and memory and sorts by them on the server", async () => {
  await page.goto(`${URL}/agents`);
  await page.getByRole("heading", { name: "Agents", level: 1 }).waitFor();
  const table = page.getByRole("table", { name: /^Agents, by/ });
  // The heading is drawn before the table: wait for its header row before reading it.
  await table.getByRole("columnheader", { name: "State" }).waitFor();
  // The sorted column's arrow is for the eye (aria-hidden); its order is in aria-sort.
  const headers = (await table.getByRole("columnheader").allTextContents()).map((h) => h.replace(/[▲▼]/g, "").trim());
  assert.deepEqual(headers, ["PC", "Hostname", "OS", "Version", "Groups", "CPU", "Memory", "Last seen", "State"]);
  const asked = [];
  const listen = (request) => {
    if (request.url().includes("/api/agents?")) asked.push(new globalThis.URL(request.url()).searchParams.get("sort"));
  };
  page.on("request", listen);
  await table.getByRole("button", { name: "CPU" }).click();
  await page.waitForURL(/sort=cpu/);
  await eventually("the server was asked for the CPU order", async () => asked.includes("cpu"));
  await eventually("the CPU column says it is sorted", async () => (await table.getByRole("columnheader", { name: "CPU" }).getAttribute("aria-sort")) === "descending");
  const pcs = async () => (await table.locator("tbody tr td:first-child").allTextContents()).join(" ");
  await expectText(table.locator("tbody"), new RegExp(`${HOT_PC}[\\s\\S]*${PC}[\\s\\S]*${QUIET_PC}`));
  assert.equal(await pcs(), `${HOT_PC} ${PC} ${QUIET_PC}`);
  const cpuOf = (pc) => table.getByRole("row").filter({ has: page.getByRole("link", { name: pc, exact: true }) }).locator("td").nth(5);
  await expectText(cpuOf(HOT_PC), /^100\.0%$/);
  await expectText(cpuOf(PC), /^\d+\.\d%$/);
  await expectText(cpuOf(QUIET_PC), /^—$/);
  await accessible("the Agents page sorted by CPU");
  await shot("04-agents-by-cpu");

  await table.getByRole("button", { name: "Memory" }).click();
  await page.waitForURL(/sort=memory/);
  await eventually("the server was asked for the memory order", async () => asked.includes("memory"));
  await eventually("the memory column says it is sorted", async () => (await table.getByRole("columnheader", { name: "Memory" }).getAttribute("aria-sort")) === "descending");
  await expectText(table.locator("tbody tr").last().locator("td").first(), new RegExp(`^${QUIET_PC}$`));
  await table.getByRole("button", { name: "PC" }).click();
  await page.waitForURL((u) => !u.search.includes("sort="));
  // The URL changes before the table re-renders (the router applies it in a transition): wait for the header.
  await eventually("the PC column says it is sorted", async () => (await table.getByRole("columnheader", { name: "PC" }).getAttribute("aria-sort")) === "ascending");
  await expectText(table.locator("tbody tr").first().locator("td").first(), new RegExp(`^${HOT_PC}$`));
  page.off("request", listen);
});

test("the Performance tab fits a narrow window", async () => {
  await page.setViewportSize(NARROW);
  await page.goto(`${URL}/agents/${PC}?tab=performance`);
  await eventually("the stream is live", async () => (await page.getByTestId("perf-state").getAttribute("data-state")) === "live");
  await eventually("a sample is drawn", latestAt);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `the tab is ${overflow}px wider than a ${NARROW.width}px window`);
  await shot("05-narrow");
  await page.setViewportSize(WIDE);
});

test("the browser saw no errors and the CSP refused nothing", async () => {
  assert.deepEqual(violations, [], "no Content-Security-Policy violation");
  // The first page load asks for the session before signing in: that 401 is how it learns to show the sign-in.
  assert.deepEqual(problems.filter((p) => !/status of 401 .*\/api\/(session|refresh)/.test(p)), []);
});
