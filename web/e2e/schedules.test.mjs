// The Schedules pages in headless Chromium against a real backend, nats-server and agent, which
// crates/kanade-backend/tests/dashboard_schedules.rs starts and describes through the environment:
//   KANADE_URL            the backend, serving the embedded dashboard, with the echo job in its catalogue
//   KANADE_TOKEN          the shared API token
//   KANADE_PC             the one agent's pc id
//   KANADE_OPERATOR       the name to sign in with
//   KANADE_SCHEDULE_ID    the sample's id
//   KANADE_SCHEDULE_YAML  the documents' every-10-seconds sample (schedules/echo-every-10s.yaml) as written
//   KANADE_ARTIFACTS      where screenshots go
//   KANADE_CHROMIUM       the browser (Debian's chromium; playwright-core does not download one)
// The steps run in order in one browser: each starts where the previous one left the page.

import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { accessible as checkAccessible, env as sharedEnv, expectText as waitForText, launchChromium } from "./support.mjs";

const env = (name) => sharedEnv(name, "dashboard_schedules");
const URL = env("KANADE_URL");
const TOKEN = env("KANADE_TOKEN");
const PC = env("KANADE_PC");
const OPERATOR = env("KANADE_OPERATOR");
const ID = env("KANADE_SCHEDULE_ID");
const SAMPLE = env("KANADE_SCHEDULE_YAML");
const ARTIFACTS = env("KANADE_ARTIFACTS");
const WIDE = { width: 1280, height: 900 };
const NARROW = { width: 390, height: 844 };
/// How long one expectation may take: changes travel backend → SSE → page, results agent → NATS → projector.
const PATIENCE = 30_000;
/// The sample fires every 10 s: its first fire, and that run's result, come within this.
const FIRST_FIRE = 25_000;
/// The sample with a cron pattern that cannot be: the backend refuses it, saying where and why.
const BAD = SAMPLE.replace(/^cron: .*$/m, 'cron: "61 * * * * *"');

let browser;
let context;
let page;
const problems = [];

before(async () => {
  assert.notEqual(BAD, SAMPLE, "the sample has a `cron:` line to break");
  mkdirSync(ARTIFACTS, { recursive: true });
  browser = await launchChromium();
  // The page runs under the backend's Content-Security-Policy; a violation is a console error, which fails the run.
  context = await browser.newContext({ viewport: WIDE });
  context.setDefaultTimeout(PATIENCE);
  page = await context.newPage();
  page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
  page.on("console", (msg) => {
    if (msg.type() === "error") problems.push(`console error: ${msg.text()} (${msg.location()?.url ?? ""})`);
  });
});

after(async () => {
  await browser?.close();
});

async function shot(name) {
  await page.screenshot({ path: join(ARTIFACTS, `schedules-${name}.png`), fullPage: true });
}

const accessible = (what) => checkAccessible(page, what);
const expectText = (locator, pattern, patience = PATIENCE) => waitForText(locator, pattern, patience);

/// The API as the test sees it, beside the page.
async function api(method, path, body) {
  const response = await fetch(`${URL}${path}`, {
    method,
    headers: { Authorization: `Bearer ${TOKEN}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, body: await response.json().catch(() => null) };
}

/// How much wider than the window the page is, and the elements that stick out furthest, to say what to fix.
async function overflow() {
  return page.evaluate(() => {
    const width = window.innerWidth;
    const wide = [...document.querySelectorAll("body *")]
      .map((el) => ({ el, right: el.getBoundingClientRect().right }))
      .filter(({ right }) => right > width + 1)
      .sort((a, b) => b.right - a.right)
      .slice(0, 5)
      .map(({ el, right }) => `${el.tagName.toLowerCase()}${el.className ? `.${String(el.className).replace(/ /g, ".")}` : ""} (${Math.round(right)}px)`);
    return { by: document.documentElement.scrollWidth - width, wide };
  });
}

const stateBadge = () => page.getByTestId("schedule-state");
const fires = () => page.getByRole("table", { name: "Recent fires" });
const nextList = () => page.getByTestId("next-list");
const detailTitle = () => page.getByRole("heading", { level: 1, name: new RegExp(`^${ID}\\b`) });

test("the Schedules page is in the navigation and starts empty", async () => {
  await page.goto(URL);
  await page.getByRole("button", { name: "Use an API token instead" }).click();
  await page.getByLabel("API token").fill(TOKEN);
  await page.getByLabel("Your name").fill(OPERATOR);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Fleet", level: 1 }).waitFor();
  await page.getByTestId("live-state").filter({ hasText: "Live" }).waitFor();

  const nav = page.getByRole("navigation", { name: "Main" });
  const links = await nav.getByRole("link").allTextContents();
  assert.equal(links[links.indexOf("Jobs") + 1], "Schedules", `Schedules follows Jobs: ${links}`);
  await nav.getByRole("link", { name: "Schedules", exact: true }).click();
  await page.getByRole("heading", { name: "Schedules", level: 1 }).waitFor();
  await page.waitForURL(/\/schedules$/);
  assert.equal(await page.title(), "Schedules · kanade");
  await page.getByText("No schedules.").waitFor();
  await accessible("the empty Schedules page");
});

test("a bad schedule file is refused with the backend's own message, and nothing is stored", async () => {
  const open = page.getByRole("button", { name: "New schedule" });
  await open.click();
  assert.equal(await open.getAttribute("aria-expanded"), "true");
  const form = page.getByRole("form", { name: "New schedule" });
  const yaml = form.getByLabel("Schedule file (YAML)");
  await expectText(yaml, /^$/);
  assert.ok(await form.getByRole("button", { name: "Create" }).isDisabled(), "nothing to create yet");

  await yaml.fill(BAD);
  await form.getByRole("button", { name: "Create" }).click();
  const alert = form.getByRole("alert");
  await alert.waitFor();
  // The same file sent straight to the API: the page shows its message as it is.
  const direct = await api("POST", "/api/schedules", { schedule: BAD });
  assert.equal(direct.status, 400, JSON.stringify(direct.body));
  assert.equal(direct.body.error.code, "invalid_schedule");
  assert.match(direct.body.error.message, /cron/);
  assert.equal(await form.getByTestId("schedule-error-message").textContent(), direct.body.error.message);
  assert.equal(await yaml.getAttribute("aria-invalid"), "true");
  // What was typed stays, to be fixed.
  assert.equal(await yaml.inputValue(), BAD);
  await accessible("the New schedule form with the backend's error");
  await shot("01-refused");
  assert.deepEqual((await api("GET", "/api/schedules")).body, [], "nothing was stored");
});

test("the sample pasted into the form is created and shown on its own page", async () => {
  const form = page.getByRole("form", { name: "New schedule" });
  await form.getByLabel("Schedule file (YAML)").fill(SAMPLE);
  await form.getByRole("button", { name: "Create" }).click();
  await page.waitForURL(new RegExp(`/schedules/${ID}$`));
  await detailTitle().waitFor();
  await page.getByRole("status").filter({ hasText: "Created." }).waitFor();
  await expectText(stateBadge(), /active$/);
  // The file as written, comments and all.
  assert.equal(await page.getByTestId("schedule-source").textContent(), SAMPLE);
  const settings = page.getByRole("region", { name: "Settings" });
  await expectText(settings, /When\s*cron \*\/10 \* \* \* \* \* \(UTC\)/);
  await expectText(settings, /Targets\s*every agent/);
  await expectText(settings, /Deadline\s*10 s/);
  await expectText(settings, new RegExp(`Created.*by ${OPERATOR}`));
  await settings.getByRole("link", { name: "echo" }).waitFor();
  assert.equal(await settings.getByRole("link", { name: "echo" }).getAttribute("href"), "/jobs/echo");
  // Five times ahead, ten seconds apart, and a countdown to the first.
  assert.equal(await nextList().getByRole("listitem").count(), 5);
  const times = await nextList().locator("time").evaluateAll((els) => els.map((e) => Date.parse(e.getAttribute("datetime"))));
  for (let i = 1; i < times.length; i++) assert.equal(times[i] - times[i - 1], 10_000, `${times}`);
  await expectText(page.getByTestId("next-run"), /^Next run (in (10|[1-9]) s|now)$/);
  await accessible("a schedule's page");
  await shot("02-created");
});

test("within 25 s a fire shows up, and its execution completes on the agent", async () => {
  const fired = fires().getByRole("row").filter({ hasText: "fired" }).first();
  await fired.waitFor({ timeout: FIRST_FIRE }).catch(async (err) => {
    const seen = await api("GET", `/api/schedules/${ID}`);
    assert.fail(`no fired row on the page within ${FIRST_FIRE} ms (${err.message}); the API says: ${JSON.stringify(seen.body?.fires)}`);
  });
  const link = fired.getByRole("link");
  const exec = await link.textContent();
  assert.match(exec, new RegExp(`^${ID}-\\d{8}t\\d{6}z$`), "the execution is named after its occurrence");
  // Its status follows the execution live: completed once the agent has answered.
  await expectText(fired.locator("td").nth(3), /completed\s*1 agent/);
  await shot("03-fired");
  await link.click();
  await page.waitForURL(new RegExp(`/activity/${exec}$`));
  await page.getByRole("heading", { level: 1, name: /^echo v1\.0\.0 completed$/ }).waitFor();
  const target = page.getByRole("row").filter({ has: page.getByRole("link", { name: PC }) });
  await target.getByText("ok").waitFor();
  await page.goBack();
  await detailTitle().waitFor();
});

test("Pause stops it: paused, no next runs; Run now still fires it, with a link to the new execution", async () => {
  await page.getByRole("button", { name: "Pause" }).click();
  await expectText(stateBadge(), /paused$/);
  await expectText(page.getByTestId("next-run"), /^none: paused$/);
  assert.equal(await nextList().count(), 0, "no next runs while paused");
  await page.getByRole("button", { name: "Resume" }).waitFor();
  await accessible("a paused schedule");
  await shot("04-paused");

  // While it is paused, no fire of its own can take this second: Run now starts an execution of its own.
  const before = await fires().getByRole("row").count();
  await page.getByRole("button", { name: "Run now" }).click();
  const note = page.getByTestId("run-now-note");
  await expectText(note, /^Fired now:/);
  const link = note.getByRole("link");
  const exec = await link.textContent();
  assert.match(exec, new RegExp(`^${ID}-\\d{8}t\\d{6}z$`));
  assert.equal(await link.getAttribute("href"), `/activity/${exec}`);
  const row = fires().getByRole("row").filter({ has: page.getByRole("link", { name: exec }) });
  await expectText(row, /run now/);
  await expectText(row.locator("td").nth(5), new RegExp(`run now by \`${OPERATOR}\``));
  assert.ok((await fires().getByRole("row").count()) > before, "a row was added");
  await expectText(row.locator("td").nth(3), /completed/);
  await expectText(stateBadge(), /paused$/);
  await shot("05-run-now");
});

test("Resume makes it active again, with its next runs", async () => {
  await page.getByRole("button", { name: "Resume" }).click();
  await expectText(stateBadge(), /active$/);
  await nextList().waitFor();
  assert.equal(await nextList().getByRole("listitem").count(), 5);
  await expectText(page.getByTestId("next-run"), /^Next run (in (10|[1-9]) s|now)$/);
  await page.getByRole("button", { name: "Pause" }).waitFor();
});

test("the list shows it with its job, timing, state, next run and last fire", async () => {
  await page.getByRole("link", { name: "← All schedules" }).click();
  await page.getByRole("heading", { name: "Schedules", level: 1 }).waitFor();
  const table = page.getByRole("table", { name: "Schedules" });
  const row = table.getByRole("row").filter({ has: page.getByRole("link", { name: ID, exact: true }) });
  await row.waitFor();
  const cells = row.locator("td");
  await expectText(cells.nth(0), new RegExp(`^${ID}echo on every agent every 10 seconds$`));
  assert.equal(await cells.nth(1).getByRole("link", { name: "echo" }).getAttribute("href"), "/jobs/echo");
  await expectText(cells.nth(2), /^cron \*\/10 \* \* \* \* \* \(UTC\)$/);
  await expectText(cells.nth(3), /active$/);
  await expectText(cells.nth(4), /^(in (10|[1-9]) s|now)$/);
  await expectText(cells.nth(5), /(fired|run now)/);
  const last = cells.nth(5).getByRole("link", { name: `execution of ${ID}'s last fire` });
  assert.match(await last.getAttribute("href"), new RegExp(`^/activity/${ID}-\\d{8}t\\d{6}z$`));
  await accessible("the Schedules list");
  await shot("06-list");

  // A narrow window: the list and the schedule's page scroll their tables, not the page.
  await page.setViewportSize(NARROW);
  await shot("07-narrow-list");
  let wider = await overflow();
  assert.ok(wider.by <= 1, `the list is ${wider.by}px wider than a ${NARROW.width}px window: ${wider.wide.join(", ")}`);
  await row.getByRole("link", { name: ID, exact: true }).click();
  await detailTitle().waitFor();
  await fires().waitFor();
  await shot("08-narrow-schedule");
  wider = await overflow();
  assert.ok(wider.by <= 1, `the schedule's page is ${wider.by}px wider than a ${NARROW.width}px window: ${wider.wide.join(", ")}`);
  await page.setViewportSize(WIDE);
});

test("Delete asks first, then removes it and goes back to the list", async () => {
  // Declined: nothing happens.
  let asked = "";
  page.once("dialog", (dialog) => {
    asked = dialog.message();
    void dialog.dismiss();
  });
  await page.getByRole("button", { name: "Delete…" }).click();
  assert.match(asked, new RegExp(`^Delete the schedule ${ID}\\? Nothing more fires`));
  assert.equal((await api("GET", `/api/schedules/${ID}`)).status, 200, "still there after declining");
  await expectText(stateBadge(), /active$/);

  page.once("dialog", (dialog) => void dialog.accept());
  await page.getByRole("button", { name: "Delete…" }).click();
  await page.waitForURL(/\/schedules$/);
  await page.getByRole("status").filter({ hasText: `Deleted the schedule ${ID}.` }).waitFor();
  await page.getByText("No schedules.").waitFor();
  assert.equal(await page.getByRole("link", { name: ID, exact: true }).count(), 0);
  assert.equal((await api("GET", `/api/schedules/${ID}`)).status, 404);
  await accessible("the Schedules list after a delete");
  await shot("09-deleted");
});

test("the browser saw no errors and the CSP refused nothing", async () => {
  // Expected: the first page load's 401s (no sign-in to resume: how it learns to show the sign-in) and the bad
  // file's 400, once.
  const expected = (p) => /status of 401 .*\/api\/(session|refresh)/.test(p) || /status of 400/.test(p);
  assert.deepEqual(problems.filter((p) => !expected(p)), []);
  assert.ok(problems.filter((p) => /status of 400/.test(p)).length <= 1, `one refusal: ${problems}`);
});
