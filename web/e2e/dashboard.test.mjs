// The dashboard in headless Chromium against a real backend, nats-server and agent, which
// crates/kanade-backend/tests/dashboard.rs starts and describes through the environment:
//   KANADE_URL            the backend, serving the embedded dashboard
//   KANADE_TOKEN          the shared API token
//   KANADE_PC             the one agent's pc id
//   KANADE_PENDING_EXEC   an execution of job `guarded` that alice requested and that waits for approval
//   KANADE_HELD_EXEC      an execution of job `consented` held on the agent for its user's consent, put off by ann
//   KANADE_ARTIFACTS      where screenshots go
//   KANADE_CHROMIUM       the browser (Debian's chromium; playwright-core does not download one)
// The steps run in order in one browser: each starts where the previous one left the page.

import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { accessible as checkAccessible, env as sharedEnv, expectText as waitForText, launchChromium } from "./support.mjs";

const env = (name) => sharedEnv(name, "dashboard");
const URL = env("KANADE_URL");
const TOKEN = env("KANADE_TOKEN");
const PC = env("KANADE_PC");
const PENDING = env("KANADE_PENDING_EXEC");
const HELD = env("KANADE_HELD_EXEC");
const ARTIFACTS = env("KANADE_ARTIFACTS");
const WIDE = { width: 1280, height: 800 };
const NARROW = { width: 390, height: 844 };
/// How long one expectation may take: results travel agent → NATS → projector → SSE → page.
const PATIENCE = 30_000;

let browser;
let context;
let page;
const problems = [];

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  browser = await launchChromium();
  // The page runs under the backend's Content-Security-Policy; a violation is a console error, which fails the run.
  context = await browser.newContext({ viewport: WIDE });
  context.setDefaultTimeout(PATIENCE);
  page = await context.newPage();
  page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
  page.on("console", (msg) => {
    if (msg.type() === "error") problems.push(`console error: ${msg.text()}`);
  });
});

after(async () => {
  await browser?.close();
});

async function shot(name) {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}

/// Runs axe-core on the current page; fails on serious or critical violations.
const accessible = (what) => checkAccessible(page, what);

test("the dashboard asks for a name and password, offers an API token instead, and refuses a wrong token", async () => {
  await page.goto(URL);
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
  await page.getByLabel("Password").waitFor();
  await accessible("sign-in page");
  await page.getByRole("button", { name: "Use an API token instead" }).click();
  await page.getByLabel("API token").fill("not-the-token");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("alert").filter({ hasText: "not accepted" }).waitFor();
  await shot("01-sign-in");
});

test("signing in shows the fleet with the agent online", async () => {
  await page.getByLabel("API token").fill(TOKEN);
  await page.getByLabel("Your name").fill("bob");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Fleet", level: 1 }).waitFor();
  await page.getByTestId("online-count").filter({ hasText: /^1$/ }).waitFor();
  assert.equal(await page.getByTestId("offline-count").textContent(), "0");
  await page.getByTestId("live-state").filter({ hasText: "Live" }).waitFor();
  await accessible("fleet page");
  await shot("02-fleet");
});

test("the agents table finds the agent, and its page pings it", async () => {
  await page.getByRole("link", { name: "Agents", exact: true }).click();
  await page.getByRole("heading", { name: "Agents", level: 1 }).waitFor();
  const search = page.getByLabel("Search");
  await search.fill("no-such-pc");
  await page.getByText("No agent matches the search.").waitFor();
  await search.fill(`${PC} online`);
  const row = page.getByRole("row").filter({ has: page.getByRole("link", { name: PC }) });
  await row.getByText("online").waitFor();
  await agentsFilterOnTheServer();
  await accessible("agents page");
  await shot("03-agents");

  await row.getByRole("link", { name: PC }).click();
  await page.getByRole("heading", { name: PC, level: 1 }).waitFor();
  await page.getByRole("button", { name: "Ping" }).click();
  await page.getByText(/Answered in [0-9.]+ ms/).waitFor();
  const setting = page.getByRole("row").filter({ hasText: "max_local_concurrent" });
  await setting.filter({ hasText: "3" }).filter({ hasText: "group:lab" }).waitFor();
  await timelineShowsTheAgentStarted();
  await accessible("agent page");
  await shot("04-agent");
});

test("a job fired from the exec dialog reaches 100% and its output can be read", async () => {
  await page.getByRole("link", { name: "Jobs", exact: true }).click();
  await page.getByRole("link", { name: /^hello/ }).click();
  await page.getByLabel("Manifest of hello").filter({ hasText: "echo hello from kanade" }).waitFor();
  await accessible("jobs page");
  await shot("05-jobs");

  // Revoked, the job cannot be run from the page; allowed again, it can.
  page.once("dialog", (dialog) => dialog.accept());
  await page.getByRole("button", { name: "Revoke" }).click();
  await page.getByText("Revoked: agents skip its runs").waitFor();
  assert.ok(await page.getByRole("button", { name: "Run…" }).isDisabled(), "a revoked job's Run button is disabled");
  await page.getByRole("button", { name: "Allow again" }).click();
  await page.getByRole("button", { name: "Revoke" }).waitFor();

  await page.getByRole("button", { name: "Run…" }).click();
  const dialog = page.getByRole("dialog", { name: "Run hello" });
  await dialog.waitFor();
  await dialog.getByLabel("Every agent, at once").check();
  await dialog.getByLabel("Jitter").fill("soon");
  await dialog.getByText("is not a duration").waitFor();
  await dialog.getByLabel("Jitter").fill("");
  await dialog.getByTestId("preview-count").filter({ hasText: "1 agent will be hit (1 online now" }).waitFor();
  await accessible("exec dialog");
  await shot("06-exec-dialog");
  await dialog.getByRole("button", { name: "Run on 1 agent" }).click();

  await page.waitForURL(/\/activity\/[a-z0-9_-]+$/);
  const bar = page.getByRole("progressbar", { name: "Progress" });
  await expectAttribute(bar, "aria-valuenow", "100");
  await page.getByRole("button", { name: `Output of ${PC}` }).click();
  await page.getByTestId("stdout").filter({ hasText: "hello from kanade" }).waitFor();
  await accessible("execution page");
  await shot("07-execution-result");
});

test("a running job's output streams onto the page", async () => {
  await page.getByRole("link", { name: "Jobs", exact: true }).click();
  await page.getByRole("link", { name: /^ticker/ }).click();
  await page.getByRole("button", { name: "Run…" }).click();
  const dialog = page.getByRole("dialog", { name: "Run ticker" });
  await dialog.getByRole("button", { name: "Run on 1 agent" }).click();
  await page.waitForURL(/\/activity\/[a-z0-9_-]+$/);
  // The targets table learns that the run started from the pushed change, without a reload.
  await page.getByRole("button", { name: `Output of ${PC}` }).filter({ hasText: "Watch" }).click();
  await page.getByTestId("live-output").filter({ hasText: /tick \d+/ }).waitFor();
  await shot("08-live-output");
  // Killed from the page: the stored result replaces the stream, with what it printed until then.
  page.once("dialog", (dialog) => dialog.accept());
  await page.getByRole("button", { name: /^Kill ticker / }).click();
  await page.getByRole("status").filter({ hasText: "Killed 1 run(s)." }).waitFor();
  await page.getByRole("region", { name: /Output of/ }).getByText("killed").first().waitFor();
  const stdout = await page.getByTestId("stdout").textContent();
  assert.match(stdout, /tick 1\b/);
  assert.doesNotMatch(stdout, /tick 16/, "the run was cut short");
});

test("a result's whole output is offered and shown past the inline part", wholeOutputs);

test("a rollout shows whom each wave hits before firing, and each wave's state after", async () => {
  await page.getByRole("link", { name: "Jobs", exact: true }).click();
  await page.getByRole("link", { name: /^rolling/ }).click();
  await page.getByRole("button", { name: "Run…" }).click();
  const dialog = page.getByRole("dialog", { name: "Run rolling" });
  await dialog.getByTestId("preview-count").filter({ hasText: "1 agent will be hit" }).waitFor();
  await dialog.getByRole("listitem").filter({ hasText: "lab: 1" }).waitFor();
  await dialog.getByRole("listitem").filter({ hasText: "later: 0" }).waitFor();
  await dialog.getByRole("button", { name: "Run on 1 agent" }).click();
  await page.waitForURL(/\/activity\/[a-z0-9_-]+$/);
  const waves = page.getByRole("list", { name: "Waves" });
  await waves.getByRole("listitem").filter({ hasText: "1. lab sent" }).waitFor();
  await expectAttribute(waves.getByRole("progressbar", { name: "Wave 1 (lab)" }), "aria-valuenow", "100");
  await expectText(waves.getByRole("listitem").nth(1), /2\. later pending \(due in (1 h|\d+ min)\)/);
  await shot("09-rollout");

  // The same from the dialog, with waves of the operator's own over a job that has none.
  await page.getByRole("link", { name: "Jobs", exact: true }).click();
  await page.getByRole("link", { name: /^hello/ }).click();
  await page.getByRole("button", { name: "Run…" }).click();
  const own = page.getByRole("dialog", { name: "Run hello" });
  await own.getByLabel("Groups, in waves of your own").check();
  await own.getByLabel("Wave 1 group").fill("lab");
  await own.getByLabel("Wave 1 halts over % failed").fill("150");
  await own.getByText("the failure percentage must be a number from 0 to 100").waitFor();
  await own.getByLabel("Wave 1 halts over % failed").fill("10");
  await own.getByRole("button", { name: "Add wave" }).click();
  await own.getByLabel("Wave 2 group").fill("later");
  await own.getByLabel("Wave 2 delay").fill("2h");
  await own.getByRole("listitem").filter({ hasText: "later: 0" }).waitFor();
  await own.getByTestId("preview-count").filter({ hasText: "1 agent will be hit" }).waitFor();
  await shot("10-exec-dialog-waves");
  await own.getByRole("button", { name: "Run on 1 agent" }).click();
  await page.waitForURL(/\/activity\/[a-z0-9_-]+$/);
  const ownWaves = page.getByRole("list", { name: "Waves" });
  await ownWaves.getByRole("listitem").filter({ hasText: "1. lab sent" }).waitFor();
  await expectText(ownWaves.getByRole("listitem").nth(1), /2\. later pending \(due in (2 h|1 h)\)/);
});

test("a job without a target makes the operator choose before it runs", aJobWithoutATargetMakesTheOperatorChoose);

test("markup in a job's description or a script's output is shown as text, never run", async () => {
  await page.getByRole("link", { name: "Jobs", exact: true }).click();
  await page.getByRole("link", { name: /^hostile/ }).filter({ hasText: '<img src=x onerror="window.__pwned=1">' }).click();
  await page.getByRole("button", { name: "Run…" }).click();
  await page.getByRole("dialog", { name: "Run hostile" }).getByRole("button", { name: "Run on 1 agent" }).click();
  await page.waitForURL(/\/activity\/[a-z0-9_-]+$/);
  await expectAttribute(page.getByRole("progressbar", { name: "Progress" }), "aria-valuenow", "100");
  await page.getByRole("button", { name: `Output of ${PC}` }).click();
  await page.getByTestId("stdout").filter({ hasText: "<script>window.__pwned=1</script>" }).waitFor();
  assert.equal(await page.evaluate(() => window.__pwned), undefined, "nothing from the data ran");
});

test("an execution waiting for approval is approved from the Activity page", async () => {
  await page.getByRole("link", { name: "Activity", exact: true }).click();
  const card = page.getByRole("article").filter({ has: page.getByRole("link", { name: /^guarded/ }) });
  await card.getByText("pending approval").waitFor();
  await accessible("activity page");
  await shot("11-activity-pending");
  await card.getByRole("button", { name: `Approve guarded ${PENDING}` }).click();
  await card.getByText("completed").waitFor();
  await expectAttribute(card.getByRole("progressbar"), "aria-valuenow", "100");
  await card.getByText("approved by bob").waitFor();
  await shot("12-activity-approved");
});

test("a run its user put off shows who deferred it and until when", async () => {
  await page.goto(`${URL}/activity/${HELD}`);
  const row = page.getByRole("row").filter({ has: page.getByRole("link", { name: PC, exact: true }) });
  await expectText(row.getByTestId("held"), /deferred by ann until/);
  assert.match(await row.getByTestId("held").locator("time").getAttribute("datetime"), /^\d{4}-\d\d-\d\dT/);
  await accessible("a held run");
  await shot("12b-execution-held");
});

test("the audit log shows who did what, filtered by operator", async () => {
  await page.getByRole("link", { name: "Audit", exact: true }).click();
  await page.getByLabel("Operator").fill("bob");
  await page.getByRole("button", { name: "Filter" }).click();
  await page.waitForURL(/actor=bob/);
  const approve = page.getByRole("row").filter({ hasText: "approve" }).filter({ hasText: PENDING });
  await approve.waitFor();
  await expectText(page.locator("tbody"), /approve/);
  const operators = await page.locator("tbody tr td:nth-child(2)").allTextContents();
  assert.ok(operators.length > 0 && operators.every((o) => o === "bob"), `only bob's actions are shown: ${operators}`);
  await accessible("audit page");
  await shot("13-audit");
});

test("everything is reachable from the keyboard", async () => {
  await page.goto(`${URL}/`);
  await page.getByRole("heading", { name: "Fleet", level: 1 }).waitFor();
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement?.textContent), "Skip to content");
  // Tab on to the navigation and open Jobs with Enter; focus moves to the new page's heading.
  let reached = false;
  for (let i = 0; i < 10 && !reached; i++) {
    await page.keyboard.press("Tab");
    reached = (await page.evaluate(() => document.activeElement?.textContent)) === "Jobs";
  }
  assert.ok(reached, "the Jobs link is reachable with Tab");
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: "Jobs", level: 1 }).waitFor();
  // Focus moves in an effect after the page renders: wait for it rather than read it at once.
  await page.waitForFunction(() => document.activeElement?.id === "page-title", null, { timeout: PATIENCE });
});

test("the pages fit a narrow window", async () => {
  await page.setViewportSize(NARROW);
  for (const [path, heading, name] of [
    ["/", "Fleet", "14-narrow-fleet"],
    ["/agents", "Agents", "15-narrow-agents"],
    ["/activity", "Activity", "16-narrow-activity"],
    ["/jobs/hello", "Jobs", "17-narrow-job"],
    ["/audit", "Audit", "18-narrow-audit"],
  ]) {
    await page.goto(`${URL}${path}`);
    await page.getByRole("heading", { name: heading, level: 1 }).waitFor();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `${path} is ${overflow}px wider than a ${NARROW.width}px window`);
    await shot(name);
  }
  await page.setViewportSize(WIDE);
});

test("forgetting the agent removes it, and its next heartbeat brings it back as new", forgetTheAgentAndSeeItReturn);

test("the browser saw no errors", () => {
  // A refused sign-in is a 401 the console reports as a failed resource; anything else is a real problem.
  const real = problems.filter((p) => !/status of 401/.test(p));
  assert.deepEqual(real, []);
});

/// The `installer` job has no target of its own (the documents' installer jobs): the Run dialog opens with nothing
/// chosen, offers no "job's own" choice, and will not send until PCs, groups or all are chosen.
async function aJobWithoutATargetMakesTheOperatorChoose() {
  await page.getByRole("link", { name: "Jobs", exact: true }).click();
  await page.getByRole("link", { name: /^installer/ }).filter({ hasText: "none: choose at run time" }).click();
  await page.getByRole("definition").filter({ hasText: "none: choose at run time" }).waitFor();
  await page.getByRole("button", { name: "Run…" }).click();
  const dialog = page.getByRole("dialog", { name: "Run installer" });
  await dialog.getByTestId("choose-targets").filter({ hasText: "This job has no target of its own" }).waitFor();
  assert.equal(await dialog.getByLabel(/^The job's own/).count(), 0, "no job's own targets to offer");
  assert.equal(await dialog.getByRole("radio", { checked: true }).count(), 0, "nothing is chosen yet");
  await dialog.getByText("Choose the targets to see who it will hit.").waitFor();
  assert.ok(await dialog.getByRole("button", { name: "Run", exact: true }).isDisabled(), "Run waits for a choice");
  await accessible("exec dialog of a job without a target");
  await shot("10b-exec-dialog-no-target");
  await dialog.getByLabel("PCs, at once").check();
  await dialog.getByLabel("PC ids (comma-separated)").fill(PC);
  assert.equal(await dialog.getByTestId("choose-targets").count(), 0, "the message goes once a choice is made");
  await dialog.getByTestId("preview-count").filter({ hasText: "1 agent will be hit" }).waitFor();
  await dialog.getByRole("button", { name: "Run on 1 agent" }).click();
  await page.waitForURL(/\/activity\/[a-z0-9_-]+$/);
  await expectAttribute(page.getByRole("progressbar", { name: "Progress" }), "aria-valuenow", "100");
  await page.getByRole("button", { name: `Output of ${PC}` }).click();
  await page.getByTestId("stdout").filter({ hasText: "installed by the dashboard" }).waitFor();
}

/// A run whose stdout outgrew the inline part: the result view offers "Full output (N KiB)", fetches it with the
/// token in a header, and shows all of it (the inline part holds only its first 256 KiB).
async function wholeOutputs() {
  await page.getByRole("link", { name: "Jobs", exact: true }).click();
  await page.getByRole("link", { name: /^chatty/ }).click();
  await page.getByRole("button", { name: "Run…" }).click();
  await page.getByRole("dialog", { name: "Run chatty" }).getByRole("button", { name: "Run on 1 agent" }).click();
  await page.waitForURL(/\/activity\/[a-z0-9_-]+$/);
  await expectAttribute(page.getByRole("progressbar", { name: "Progress" }), "aria-valuenow", "100");
  await page.getByRole("button", { name: `Output of ${PC}` }).click();
  const inline = await page.getByTestId("stdout").textContent();
  assert.equal(inline.length, 256 * 1024, "the result itself carries the first 256 KiB");
  const action = page.getByTestId("stdout-full");
  await expectText(action, /^Full output \(585\.9 KiB\)$/);
  await action.click();
  const whole = await page.getByTestId("stdout-whole").textContent();
  assert.equal(whole.length, 600_005, "every byte the script wrote");
  assert.ok(whole.endsWith("\nEND\n"), "down to its last line");
  await accessible("whole output");
  await shot("09-whole-output");
}

/// The Agents page asks the server for what the search and the status filter pick, page by page, and the URL keeps
/// them: the one agent is online, so `stale` finds nobody and `online` finds it again.
async function agentsFilterOnTheServer() {
  const asked = [];
  const listen = (request) => {
    if (request.url().includes("/api/agents?")) asked.push(new globalThis.URL(request.url()).searchParams);
  };
  page.on("request", listen);
  await page.getByLabel("Status").selectOption("stale");
  await page.getByText("No agent matches the search.").waitFor();
  await page.getByLabel("Status").selectOption("online");
  await page.getByRole("row").filter({ has: page.getByRole("link", { name: PC }) }).waitFor();
  await page.getByText(/^1 agent match$/).waitFor();
  page.off("request", listen);
  assert.ok(
    asked.some((q) => q.get("status") === "stale" && q.get("search") === `${PC} online` && q.get("limit") === "200"),
    `the server was asked for stale agents: ${asked.map(String).join(" | ")}`,
  );
  assert.match(page.url(), /status=online/);
  await page.getByRole("button", { name: "Load more agents" }).waitFor({ state: "detached" });
  await page.getByLabel("Status").selectOption("");
}

/// The agent's page forgets it (after a confirmation that says it will come back while it runs); the Agents page
/// shows it again once its next heartbeat makes it a new agent, first seen just now.
async function forgetTheAgentAndSeeItReturn() {
  await page.setViewportSize(WIDE);
  await page.goto(`${URL}/agents/${PC}`);
  await page.getByRole("heading", { name: PC, level: 1 }).waitFor();
  const firstSeen = await (await fetch(`${URL}/api/agents/${PC}`, { headers: { Authorization: `Bearer ${TOKEN}` } })).json();
  let asked = "";
  page.once("dialog", (dialog) => {
    asked = dialog.message();
    void dialog.accept();
  });
  const forgotten = page.waitForResponse((r) => r.request().method() === "DELETE" && r.url().endsWith(`/api/agents/${PC}`));
  await page.getByRole("button", { name: "Forget…" }).click();
  assert.equal((await forgotten).status(), 200);
  assert.match(asked, /It is online: unless it is uninstalled first, it comes back as a new agent/);
  await page.getByRole("heading", { name: "Agents", level: 1 }).waitFor();
  await page.getByRole("row").filter({ has: page.getByRole("link", { name: PC }) }).waitFor();
  const back = await (await fetch(`${URL}/api/agents/${PC}`, { headers: { Authorization: `Bearer ${TOKEN}` } })).json();
  assert.ok(Date.parse(back.first_seen) > Date.parse(firstSeen.first_seen), `${back.first_seen} after ${firstSeen.first_seen}`);
  await shot("14-agent-forgotten-and-back");
}

/// On the agent's page: its timeline lists the agent's start, in words, with its version and whether it followed an
/// update, newest first.
async function timelineShowsTheAgentStarted() {
  const timeline = page.getByRole("region", { name: "Timeline" });
  const entries = timeline.getByRole("list", { name: "timeline entries, newest first" });
  const started = entries.getByRole("listitem").filter({ hasText: "Agent started" });
  await started.first().waitFor();
  await expectText(started.first(), /Agent started .* — version \S+$/);
  assert.equal(await started.first().getAttribute("data-kind"), "agent_started");
  assert.equal(await timeline.getByRole("button", { name: "Load more" }).count(), 0, "one page holds it all");
}

async function expectAttribute(locator, name, value) {
  const deadline = Date.now() + PATIENCE;
  let last;
  while (Date.now() < deadline) {
    last = await locator.getAttribute(name);
    if (last === value) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.fail(`${name} stayed ${last}, expected ${value}`);
}

/// Waits until the locator's text matches; on failure says what it was instead.
const expectText = (locator, pattern) => waitForText(locator, pattern, PATIENCE);
