// Part of `kanade-bench lists`: the dashboard's lists in headless Chromium against a backend that knows many agents
// and one execution at all of them. Prints a JSON array: per page, the rows it shows, the time from navigation to
// its first rows (or, for Fleet, to its counts) and the JS heap in use then (CDP Performance.getMetrics, after a
// garbage collection). Environment: KANADE_URL, KANADE_TOKEN, KANADE_EXEC, KANADE_AGENTS, KANADE_CHROMIUM.

import { chromium } from "playwright-core";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set; run this through \`kanade-bench lists\``);
  return value;
};
const URL = env("KANADE_URL");
const EXEC = env("KANADE_EXEC");
const AGENTS = Number(env("KANADE_AGENTS"));

const browser = await chromium.launch({
  executablePath: env("KANADE_CHROMIUM"),
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
context.setDefaultTimeout(120_000);
const page = await context.newPage();
const cdp = await context.newCDPSession(page);
await cdp.send("Performance.enable");

async function heap() {
  await cdp.send("HeapProfiler.collectGarbage");
  const { metrics } = await cdp.send("Performance.getMetrics");
  return metrics.find((m) => m.name === "JSHeapUsedSize")?.value ?? 0;
}

const rows = () => page.locator("tbody tr").count();
const figures = [];

// Sign in once; the session is kept in the browser for the pages after.
await page.goto(URL);
await page.getByRole("button", { name: "Use an API token instead" }).click();
await page.getByLabel("API token").fill(env("KANADE_TOKEN"));
await page.getByLabel("Your name").fill("bench");
await page.getByRole("button", { name: "Sign in" }).click();
await page.getByRole("heading", { name: "Fleet", level: 1 }).waitFor();

async function measure(name, path, ready) {
  await page.goto("about:blank");
  const started = Date.now();
  await page.goto(URL + path);
  await ready();
  const ms = Date.now() - started;
  figures.push({ page: name, rows: await rows(), ms, heap_bytes: await heap() });
}

await measure("Agents, first page", "/agents", () => page.getByRole("link", { name: "sim-00001" }).waitFor());
for (let i = 0; i < 4; i++) {
  const before = await rows();
  await page.getByRole("button", { name: "Load more agents" }).click();
  await page.waitForFunction((n) => document.querySelectorAll("tbody tr").length > n, before);
}
figures.push({ page: "Agents, after 4 × Load more", rows: await rows(), ms: null, heap_bytes: await heap() });
await measure("Agents, searched on the server (`sim-0999`)", "/agents?q=sim-0999", () =>
  page.getByRole("link", { name: "sim-09990" }).waitFor(),
);
await measure("Execution, first page of targets", `/activity/${EXEC}`, () =>
  page.getByRole("link", { name: "sim-00001" }).first().waitFor(),
);
for (let i = 0; i < 4; i++) {
  const before = await rows();
  await page.getByRole("button", { name: "Load more targets" }).click();
  await page.waitForFunction((n) => document.querySelectorAll("tbody tr").length > n, before);
}
figures.push({ page: "Execution, after 4 × Load more", rows: await rows(), ms: null, heap_bytes: await heap() });
// Fleet reads every agent (10 requests of 1,000): what the Agents page did in one request before it paged.
await measure(`Fleet (reads all ${AGENTS} agents)`, "/", () =>
  page.getByTestId("online-count").filter({ hasText: new RegExp(`^${AGENTS}$`) }).waitFor(),
);

await browser.close();
process.stdout.write(JSON.stringify(figures) + "\n");
