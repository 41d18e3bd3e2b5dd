// The dashboard's inventory pages in headless Chromium against a real backend, nats-server and agents, which
// crates/kanade-backend/tests/dashboard_inventory.rs starts and describes through the environment:
//   KANADE_URL        the backend, serving the embedded dashboard
//   KANADE_TOKEN      the shared API token
//   KANADE_REAL_PC    the agent reporting this machine's inventory (libc6 among its packages)
//   KANADE_PLAIN_PC   an agent without inventory that ran the facts job
//   KANADE_HAND_PC    a PC whose reports were published by hand: an older libc6, Windows 11 build 22631.4602,
//                     8 GiB, and a software item named KANADE_MARKUP
//   KANADE_MARKUP     that name: markup that would run script if it were ever parsed as HTML
//   KANADE_LIBC6      this machine's libc6 version
//   KANADE_OS_NAME    this machine's OS name as its agent reported it
//   KANADE_ARTIFACTS  where screenshots go
//   KANADE_CHROMIUM   the browser (Debian's chromium; playwright-core does not download one)
// The steps run in order in one browser: each starts where the previous one left the page.

import assert from "node:assert/strict";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { accessible as checkAccessible, env as sharedEnv, expectText as waitForText, launchChromium } from "./support.mjs";

const env = (name) => sharedEnv(name, "dashboard_inventory");
const URL = env("KANADE_URL");
const TOKEN = env("KANADE_TOKEN");
const REAL_PC = env("KANADE_REAL_PC");
const PLAIN_PC = env("KANADE_PLAIN_PC");
const HAND_PC = env("KANADE_HAND_PC");
const MARKUP = env("KANADE_MARKUP");
const LIBC6 = env("KANADE_LIBC6");
const OS_NAME = env("KANADE_OS_NAME");
const ARTIFACTS = env("KANADE_ARTIFACTS");
const WIDE = { width: 1280, height: 800 };
const NARROW = { width: 390, height: 844 };
/// How long one expectation may take: reports travel agent → NATS → projector → SSE → page.
const PATIENCE = 30_000;
/// A name longer than the server takes: its refusal must reach the page in the server's words.
const TOO_LONG = "x".repeat(300);

let browser;
let context;
let page;
const problems = [];
/// Every `alert`/`confirm`/`prompt` the page opened: none is expected, and markup that ran would open one.
const dialogs = [];

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  browser = await launchChromium();
  context = await browser.newContext({ viewport: WIDE, acceptDownloads: true });
  context.setDefaultTimeout(PATIENCE);
  page = await context.newPage();
  page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
  page.on("console", (msg) => {
    if (msg.type() !== "error") return;
    // Two refusals are on purpose: the hand-published PC has no agent (its Overview asks and gets 404), and the
    // over-long name is refused with a 400.
    const where = msg.location()?.url ?? "";
    if (where.includes(`/api/agents/${HAND_PC}`) && !where.includes("/inventory")) return;
    if (where.includes(`name=${TOO_LONG}`)) return;
    problems.push(`console error: ${msg.text()} (${where})`);
  });
  page.on("dialog", (dialog) => {
    dialogs.push(`${dialog.type()}: ${dialog.message()}`);
    void dialog.dismiss();
  });
});

after(async () => {
  await browser?.close();
});

async function shot(name) {
  await page.screenshot({ path: join(ARTIFACTS, `inventory-${name}.png`), fullPage: true });
}

/// Runs axe-core on the current page; fails on serious or critical violations.
const accessible = (what) => checkAccessible(page, what);

test("signing in and opening Inventory lists the fleet's software titles", async () => {
  await page.goto(URL);
  await page.getByRole("button", { name: "Use an API token instead" }).click();
  await page.getByLabel("API token").fill(TOKEN);
  await page.getByLabel("Your name").fill("carol");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Fleet", level: 1 }).waitFor();
  await page.getByRole("link", { name: "Inventory", exact: true }).click();
  await page.getByRole("heading", { name: "Inventory", level: 1 }).waitFor();
  await page.getByRole("navigation", { name: "Inventory" }).getByRole("link", { name: "Software" }).waitFor();

  // The search waits until typing pauses, then asks the server.
  const asked = [];
  const listen = (request) => {
    if (request.url().includes("/api/inventory/titles?")) asked.push(new globalThis.URL(request.url()).searchParams.get("search"));
  };
  page.on("request", listen);
  await page.getByLabel("Search titles").pressSequentially("libc6", { delay: 30 });
  const row = page.getByRole("row").filter({ has: page.getByRole("link", { name: /^PCs with libc6$/ }) });
  await row.waitFor();
  page.off("request", listen);
  assert.ok(asked.includes("libc6"), `the server was asked for libc6: ${asked}`);
  assert.ok(!asked.includes("l") && !asked.includes("li"), `not once per key: ${asked}`);
  // Both PCs' versions, with their installs.
  await row.getByText(LIBC6, { exact: true }).waitFor();
  await row.getByText("2.31-13+deb11u5", { exact: true }).waitFor();
  await expectText(row.locator("td").nth(1), /^2$/);
  await accessible("software titles");
  await shot("01-titles");
});

test("a version range is checked as the server checks it, and a title opens its PCs in the range", async () => {
  const range = page.getByLabel("Version range");
  await range.fill(">=");
  await page.getByRole("alert").filter({ hasText: "clause `>=` has an operator but no version" }).waitFor();
  await range.fill(`>= ${LIBC6}`);
  await page.getByRole("alert").waitFor({ state: "detached" });
  await page.getByRole("link", { name: `PCs with libc6 >=${LIBC6}` }).click();
  await page.getByRole("heading", { name: "PCs with libc6", level: 1 }).waitFor();
  assert.equal(await page.getByLabel("Version range").inputValue(), `>=${LIBC6}`);
  const table = page.getByRole("table", { name: /PCs with libc6/ });
  await table.getByRole("link", { name: REAL_PC }).waitFor();
  assert.equal(await table.getByRole("link", { name: HAND_PC }).count(), 0, `${HAND_PC}'s libc6 is older`);
  await accessible("a title's PCs");
  await shot("02-title-pcs");

  // The other side of the range: only the older one.
  await page.getByLabel("Version range").fill(`<${LIBC6}`);
  await table.getByRole("link", { name: HAND_PC }).waitFor();
  await table.getByRole("link", { name: REAL_PC }).waitFor({ state: "detached" });
  assert.match(page.url(), /version=%3C/);
});

test("a list downloads as CSV with the token, under a name that says what it holds", async () => {
  const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Download CSV" }).click()]);
  assert.match(download.suggestedFilename(), /^software-libc6-lt[0-9a-z._]+-\d{4}-\d{2}-\d{2}\.csv$/);
  const text = readFileSync(await download.path(), "utf8");
  const lines = text.trim().split("\n");
  assert.equal(lines[0], "pc_id,source,id,name,version,publisher,install_date,location,arch,scope,since");
  assert.equal(lines.length, 2, `one PC in the range: ${text}`);
  assert.ok(lines[1].startsWith(`${HAND_PC},dpkg,libc6:amd64,libc6,2.31-13+deb11u5,`), lines[1]);
});

test("what the server refuses is shown in its words", async () => {
  await page.goto(`${URL}/inventory/software?name=${TOO_LONG}`);
  await page.getByRole("alert").filter({ hasText: /Cannot load the PCs: name `x+…?` is longer than 256 characters.*\(invalid_query\)/ }).waitFor();
  await shot("03-server-refusal");
});

test("a query's PCs are handed to the Run dialog as its targets", async () => {
  await page.goto(`${URL}/inventory/software?name=libc6&version=${encodeURIComponent(`>=${LIBC6}`)}`);
  await page.getByRole("table", { name: /PCs with libc6/ }).getByRole("link", { name: REAL_PC }).waitFor();
  await page.getByRole("button", { name: "Run a job on these PCs…" }).click();
  await page.getByRole("heading", { name: "Jobs", level: 1 }).waitFor();
  await expectText(page.getByTestId("handoff"), new RegExp(`1 PC from PCs with libc6 >=.* is ready as targets`));
  // Chosen after the hand-off, a job's Run dialog opens on those PCs instead of the job's own targets.
  await page.getByRole("link", { name: /^hello/ }).click();
  await page.getByTestId("handoff").waitFor();
  await shot("04a-handoff-notice");
  await page.getByRole("button", { name: "Run…" }).click();
  const dialog = page.getByRole("dialog", { name: "Run hello" });
  assert.ok(await dialog.getByLabel("PCs, at once").isChecked(), "the PCs choice is made");
  assert.equal(await dialog.getByLabel("PC ids (comma-separated)").inputValue(), REAL_PC);
  await dialog.getByTestId("preview-count").filter({ hasText: "1 agent will be hit (1 online now" }).waitFor();
  await accessible("the Run dialog with handed PCs");
  await shot("04-handoff");
  await dialog.getByRole("button", { name: "Cancel" }).click();
  await dialog.waitFor({ state: "detached" });
  // Dropped, the dialog is the job's own again.
  await page.getByRole("button", { name: "Drop them" }).click();
  await page.getByTestId("handoff").waitFor({ state: "detached" });
});

test("hardware summaries count each value, and each value lists the PCs with it", async () => {
  await page.getByRole("link", { name: "Inventory", exact: true }).click();
  await page.getByRole("navigation", { name: "Inventory" }).getByRole("link", { name: "Hardware" }).click();
  const builds = page.getByRole("list", { name: "OS builds" });
  await builds.getByRole("link", { name: "22631.4602" }).waitFor();
  const everyPc = page.getByRole("table", { name: "Hardware, by PC" });
  await everyPc.getByRole("link", { name: REAL_PC }).waitFor();
  await everyPc.getByRole("link", { name: HAND_PC }).waitFor();
  // Markup in a model is text.
  await page.getByRole("list", { name: "Models" }).getByRole("link", { name: "<b>Latitude</b> 7440" }).waitFor();
  await accessible("hardware");
  await shot("05-hardware");

  await builds.getByRole("link", { name: "22631.4602" }).click();
  await page.getByRole("heading", { name: "PCs with OS build 22631.4602" }).waitFor();
  await everyPc.getByRole("link", { name: HAND_PC }).waitFor();
  await everyPc.getByRole("link", { name: REAL_PC }).waitFor({ state: "detached" });
  await expectText(everyPc.getByRole("row").filter({ hasText: HAND_PC }), /8\.0 GiB/);

  // Memory is counted in bytes and reads as a size; its link is the PCs with exactly that much.
  await page.getByRole("link", { name: "Show every PC" }).click();
  await everyPc.getByRole("link", { name: REAL_PC }).waitFor();
  await page.getByRole("list", { name: "Memory" }).getByRole("link", { name: "8.0 GiB" }).click();
  await page.getByRole("heading", { name: "PCs with memory 8.0 GiB" }).waitFor();
  await everyPc.getByRole("link", { name: HAND_PC }).waitFor();
  await everyPc.getByRole("link", { name: REAL_PC }).waitFor({ state: "detached" });
  await shot("06-hardware-filtered");
});

test("a job's facts table shows its display columns, a warning on the PC whose run gave none, and its counts", async () => {
  await page.getByRole("navigation", { name: "Inventory" }).getByRole("link", { name: "Job facts" }).click();
  await page.getByLabel("Job", { exact: true }).selectOption("client-facts");
  await page.waitForURL(/\/inventory\/facts\/client-facts$/);
  const table = page.getByRole("table", { name: "Facts of client-facts, by PC" });
  await table.getByRole("link", { name: REAL_PC }).waitFor();
  const headers = await table.getByRole("columnheader").allTextContents();
  assert.deepEqual(headers, ["PC", "Version", "Path", "Reported", "Problem"]);
  const plain = table.getByRole("row").filter({ has: page.getByRole("link", { name: PLAIN_PC }) });
  await expectText(plain, /0\.43\.0.*\/opt\/kanade\/client/);
  const real = table.getByRole("row").filter({ has: page.getByRole("link", { name: REAL_PC }) });
  await real.getByRole("note").filter({ hasText: /The last run gave no facts \(.*not JSON.*\); these are from the run before\./ }).waitFor();
  await expectText(real, /0\.43\.0/);
  await page.getByRole("list", { name: "Client version" }).getByText(/0\.43\.0\s*2 PCs/).waitFor();
  const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Download CSV" }).click()]);
  assert.equal(readFileSync(await download.path(), "utf8").split("\n")[0], "pc_id,row,Version,Path,error");
  await accessible("job facts");
  await shot("07-facts");
});

test("an agent's Hardware, Software and History tabs show what it reported", async () => {
  await page.goto(`${URL}/agents/${REAL_PC}`);
  await page.getByRole("heading", { name: REAL_PC, level: 1 }).waitFor();
  const tabs = page.getByRole("tablist");
  await tabs.getByRole("tab", { name: "Hardware" }).click();
  await page.waitForURL(/tab=hardware/);
  const facts = page.getByTestId("hardware-facts");
  await expectText(facts, new RegExp(OS_NAME.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")));
  await expectText(page.getByTestId("memory-total"), /\d+\.\d (MiB|GiB|TiB)/);
  const reports = page.getByRole("table", { name: "Inventory reports" });
  for (const kind of ["Hardware", "Software", "Status"]) await reports.getByRole("rowheader", { name: kind }).waitFor();
  await page.getByRole("table", { name: "Volumes" }).getByRole("cell", { name: "/", exact: true }).first().waitFor();
  await accessible("agent hardware tab");
  await shot("08-agent-hardware");

  // Arrow keys move between the tabs.
  await tabs.getByRole("tab", { name: "Hardware" }).focus();
  await page.keyboard.press("ArrowRight");
  await page.waitForURL(/tab=software/);
  assert.equal(await page.evaluate(() => document.activeElement?.textContent), "Software");
  await page.getByLabel("Search").fill("libc6");
  const software = page.getByRole("table", { name: `Software on ${REAL_PC}` });
  const libc = software.getByRole("row").filter({ has: page.getByRole("link", { name: "libc6", exact: true }) });
  await expectText(libc, new RegExp(LIBC6.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")));
  await accessible("agent software tab");
  await shot("09-agent-software");

  await tabs.getByRole("tab", { name: "History" }).click();
  const history = page.getByRole("table", { name: `Inventory changes on ${REAL_PC}, newest first` });
  await history.getByRole("row").filter({ hasText: "First report" }).first().waitFor();
  await accessible("agent history tab");
  await shot("10-agent-history");

  // Asked to report now, the agent is told; the page says what happened.
  await page.getByRole("button", { name: "Refresh inventory" }).click();
  await expectText(page.getByTestId("refresh-result"), new RegExp(`Asked ${REAL_PC} to collect its inventory now`));
});

test("markup in a software name is shown as text and never runs", async () => {
  await page.goto(`${URL}/agents/${HAND_PC}?tab=software`);
  const software = page.getByRole("table", { name: `Software on ${HAND_PC}` });
  const cell = software.getByRole("link", { name: MARKUP, exact: true });
  await cell.waitFor();
  assert.equal(await cell.textContent(), MARKUP);
  assert.equal(await software.locator("img").count(), 0, "no element was made of it");
  await software.getByText("<b>Evil</b> Corp", { exact: true }).waitFor();
  // Its hardware report's error is shown on the Hardware tab.
  await page.getByRole("tablist").getByRole("tab", { name: "Hardware" }).click();
  await page.getByRole("table", { name: "Inventory reports" }).getByText("smbios: permission denied").waitFor();
  await expectText(page.getByRole("table", { name: "Volumes" }).getByRole("row").filter({ hasText: "C:" }), /64\.0 GiB.*75%/);
  await shot("11-hand-pc-hardware");

  // The same name in the fleet's titles, and the PCs that have it.
  await page.goto(`${URL}/inventory?q=onerror`);
  const link = page.getByRole("link", { name: `PCs with ${MARKUP}` });
  await link.click();
  await page.getByRole("heading", { name: `PCs with ${MARKUP}`, level: 1 }).waitFor();
  await page.getByRole("table", { name: /PCs with/ }).getByRole("link", { name: HAND_PC }).waitFor();
  assert.equal(await page.locator("main img").count(), 0, "no element was made of it");
  await shot("12-markup");
  assert.deepEqual(dialogs, [], "nothing from the data ran");
});

test("the inventory pages fit a narrow window", async () => {
  await page.setViewportSize(NARROW);
  for (const [path, heading, name] of [
    ["/inventory?q=lib", "Inventory", "13-narrow-titles"],
    ["/inventory/hardware", "Inventory", "14-narrow-hardware"],
    [`/agents/${REAL_PC}?tab=hardware`, REAL_PC, "15-narrow-agent-hardware"],
  ]) {
    await page.goto(`${URL}${path}`);
    await page.getByRole("heading", { name: heading, level: 1 }).waitFor();
    await page.getByRole("table").first().waitFor();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `${path} is ${overflow}px wider than a ${NARROW.width}px window`);
    await shot(name);
  }
  await page.setViewportSize(WIDE);
});

test("the browser saw no errors and no dialogs", () => {
  // The first page load asks for the session before signing in: that 401 is how it learns to show the sign-in.
  assert.deepEqual(problems.filter((p) => !/status of 401 .*\/api\/(session|refresh)\)$/.test(p)), []);
  assert.deepEqual(dialogs, []);
});

/// Waits until the locator's text matches; on failure says what it was instead.
const expectText = (locator, pattern) => waitForText(locator, pattern, PATIENCE);
