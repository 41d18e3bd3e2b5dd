// The Enrolment page in headless Chromium against a real backend with enrolment on and a real nats-server in
// operator mode, which crates/kanade-backend/tests/dashboard_enrollment.rs starts and describes through the
// environment:
//   KANADE_URL          the backend, serving the embedded dashboard, with `[security] approve_enrollments`
//   KANADE_PLAIN_URL    a second backend without `[security]` (enrolment off)
//   KANADE_TOKEN        the shared API token (both backends)
//   KANADE_OPERATOR     the name to sign in with
//   KANADE_PC_APPROVE   a PC waiting for approval, which the page approves
//   KANADE_PC_REFUSE    a PC waiting for approval, which the page refuses
//   KANADE_PC_ACTIVE    a PC with an active credential and a live connection, which the page revokes
//   KANADE_FIRST_TOKEN  the id of the token the test enrolled the three with (all its uses spent)
//   KANADE_ARTIFACTS    where screenshots go
//   KANADE_CHROMIUM     the browser (Debian's chromium; playwright-core does not download one)
// The steps run in order in one browser: each starts where the previous one left the page.

import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { accessible as checkAccessible, env as sharedEnv, expectText as waitForText, launchChromium } from "./support.mjs";

const env = (name) => sharedEnv(name, "dashboard_enrollment");
const URL = env("KANADE_URL");
const PLAIN_URL = env("KANADE_PLAIN_URL");
const TOKEN = env("KANADE_TOKEN");
const OPERATOR = env("KANADE_OPERATOR");
const PC_APPROVE = env("KANADE_PC_APPROVE");
const PC_REFUSE = env("KANADE_PC_REFUSE");
const PC_ACTIVE = env("KANADE_PC_ACTIVE");
const FIRST_TOKEN = env("KANADE_FIRST_TOKEN");
const ARTIFACTS = env("KANADE_ARTIFACTS");
const WIDE = { width: 1280, height: 900 };
const NARROW = { width: 390, height: 844 };
/// How long one expectation may take: an action's answer, then the lists asked again.
const PATIENCE = 20_000;

let browser;
let context;
let page;
const problems = [];

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  browser = await launchChromium();
  // The page runs under the backend's Content-Security-Policy; a violation is a console error, which fails the run.
  // The clipboard is granted so that Copy can be checked against what it wrote.
  context = await browser.newContext({ viewport: WIDE, permissions: ["clipboard-read", "clipboard-write"] });
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
  await page.screenshot({ path: join(ARTIFACTS, `enrollment-${name}.png`), fullPage: true });
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

/// The credential of `pc` as the API holds it (one of the first 1000 by pc id: plenty here).
async function credential(pc) {
  const { body } = await api("GET", "/api/enrollments?limit=1000");
  return body.items.find((item) => item.pc_id === pc);
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

/// Answers the next confirmation with `accept`; returns what it asked, once it has been asked.
function confirmNext(accept) {
  return new Promise((resolve) => {
    page.once("dialog", (dialog) => {
      resolve(dialog.message());
      void (accept ? dialog.accept() : dialog.dismiss());
    });
  });
}

const table = (id) => page.getByTestId(`${id}-table`);
const pcRow = (id, pc) => table(id).locator(`tr[data-pc="${pc}"]`);
const tokenRow = (id) => page.getByTestId("tokens-table").locator(`tr[data-token="${id}"]`);
const cells = (row) => row.locator("td");

async function signIn(url) {
  await page.goto(url);
  await page.getByRole("button", { name: "Use an API token instead" }).click();
  await page.getByLabel("API token").fill(TOKEN);
  await page.getByLabel("Your name").fill(OPERATOR);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Fleet", level: 1 }).waitFor();
}

async function openEnrollment() {
  const nav = page.getByRole("navigation", { name: "Main" });
  await nav.getByRole("link", { name: "Enrolment", exact: true }).click();
  await page.getByRole("heading", { name: "Enrolment", level: 1 }).waitFor();
  await page.waitForURL(/\/enrollment$/);
}

test("the Enrolment page is in the navigation and lists the PCs waiting, with their host, OS, groups and token", async () => {
  await signIn(URL);
  await page.getByTestId("live-state").filter({ hasText: "Live" }).waitFor();
  const links = await page.getByRole("navigation", { name: "Main" }).getByRole("link").allTextContents();
  assert.equal(links[links.indexOf("Agents") + 1], "Enrolment", `Enrolment follows Agents: ${links}`);
  await openEnrollment();
  assert.equal(await page.title(), "Enrolment · kanade");

  for (const pc of [PC_APPROVE, PC_REFUSE]) {
    const row = pcRow("pending", pc);
    await row.waitFor();
    await expectText(cells(row).nth(0), new RegExp(`^${pc}$`));
    await expectText(cells(row).nth(1), new RegExp(`^${pc.toUpperCase()}\\.testlinux$`));
    await expectText(cells(row).nth(2), /^lab$/);
    await expectText(cells(row).nth(3), new RegExp(`^${FIRST_TOKEN}$`));
    await expectText(cells(row).nth(4), /^U[A-Z2-7]{3}…[A-Z2-7]{4}$/);
    await expectText(cells(row).nth(5), /(ago|just now)$/);
    await row.getByRole("button", { name: `Approve ${pc}` }).waitFor();
    await row.getByRole("button", { name: `Refuse ${pc}` }).waitFor();
  }
  // The PC the test approved itself is active, with its credential's expiry.
  const active = pcRow("active", PC_ACTIVE);
  await active.waitFor();
  await expectText(cells(active).nth(2), /^office$/);
  await expectText(cells(active).nth(4), /^in \d+ d$/);
  assert.equal(await active.getByRole("link", { name: PC_ACTIVE }).getAttribute("href"), `/agents/${PC_ACTIVE}`);
  await page.getByText("No credential has been revoked.").waitFor();
  // The token they enrolled with: every use spent.
  const first = tokenRow(FIRST_TOKEN);
  await first.waitFor();
  await expectText(cells(first).nth(2), /^0 of 3 left$/);
  await expectText(cells(first).nth(3), /used up$/);
  await expectText(cells(first).nth(6), new RegExp(`${PC_ACTIVE}`));
  await accessible("the Enrolment page");
  await shot("01-pending");
});

test("Approve asks first; declined, nothing changes; accepted, the PC is active", async () => {
  const row = pcRow("pending", PC_APPROVE);
  let asked = confirmNext(false);
  await row.getByRole("button", { name: `Approve ${PC_APPROVE}` }).click();
  assert.match(
    await asked,
    new RegExp(`^Approve ${PC_APPROVE} \\(${PC_APPROVE.toUpperCase()}\\.test, linux\\) into lab\\? Its agent gets a credential the next time it asks`),
  );
  assert.equal((await credential(PC_APPROVE)).status, "pending", "still waiting after declining");

  asked = confirmNext(true);
  await row.getByRole("button", { name: `Approve ${PC_APPROVE}` }).click();
  await asked;
  await expectText(page.getByTestId("enrollment-note"), new RegExp(`^Approved ${PC_APPROVE}: its agent gets its credential the next time it asks\\.$`));
  await pcRow("active", PC_APPROVE).waitFor();
  await row.waitFor({ state: "detached" });
  // Approved, not yet issued: the agent has not asked again.
  await expectText(cells(pcRow("active", PC_APPROVE)).nth(4), /^not issued yet$/);
  const held = await credential(PC_APPROVE);
  assert.equal(held.status, "active", JSON.stringify(held));
  assert.deepEqual(held.groups, ["lab"]);
  await shot("02-approved");
});

test("Refuse asks first, then the waiting PC is revoked without a credential", async () => {
  const asked = confirmNext(true);
  await pcRow("pending", PC_REFUSE).getByRole("button", { name: `Refuse ${PC_REFUSE}` }).click();
  assert.equal(
    await asked,
    `Refuse ${PC_REFUSE} (${PC_REFUSE.toUpperCase()}.test)? It gets no credential, and to enrol it needs a new token.`,
  );
  await expectText(page.getByTestId("enrollment-note"), new RegExp(`^Refused ${PC_REFUSE}: it gets no credential\\.$`));
  const revoked = pcRow("revoked", PC_REFUSE);
  await revoked.waitFor();
  await expectText(cells(revoked).nth(3), /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$/);
  await page.getByText("No PC is waiting for approval.", { exact: false }).waitFor();
  assert.equal((await credential(PC_REFUSE)).status, "revoked");
});

test("Revoke says the PC is cut off at once and needs a new token, then moves it to the revoked", async () => {
  const row = pcRow("active", PC_ACTIVE);
  let asked = confirmNext(false);
  await row.getByRole("button", { name: `Revoke ${PC_ACTIVE}` }).click();
  assert.equal(
    await asked,
    `Revoke ${PC_ACTIVE}'s credential? The broker cuts ${PC_ACTIVE} off at once: it can neither reconnect nor renew, and it needs a new token to come back.`,
  );
  assert.equal((await credential(PC_ACTIVE)).status, "active", "still active after declining");

  asked = confirmNext(true);
  await row.getByRole("button", { name: `Revoke ${PC_ACTIVE}` }).click();
  await asked;
  await expectText(page.getByTestId("enrollment-note"), new RegExp(`^Revoked ${PC_ACTIVE}: the broker has cut it off\\.$`));
  const revoked = pcRow("revoked", PC_ACTIVE);
  await revoked.waitFor();
  await row.waitFor({ state: "detached" });
  // A revoked credential has nothing left to do.
  assert.equal(await revoked.getByRole("button").count(), 0);
  assert.equal((await credential(PC_ACTIVE)).status, "revoked");
  await accessible("the Enrolment page after approving and revoking");
  await shot("03-revoked");
});

test("the New token form says what is wrong with each field, and sends nothing", async () => {
  const before = (await api("GET", "/api/enroll/tokens")).body.items.length;
  const form = page.getByRole("form", { name: "New token" });
  await form.getByLabel("Groups").fill("lab, Office");
  await form.getByLabel("Uses").fill("0");
  await form.getByLabel("Lifetime").fill("soon");
  await form.getByRole("button", { name: "Create token" }).click();
  await form.getByRole("alert").filter({ hasText: "Fix the fields marked above; nothing was sent." }).waitFor();
  await expectText(page.getByTestId("token-groups-error"), /^`Office` contains `O`: a group name has only lowercase a-z, 0-9, `_` and `-`$/);
  await expectText(page.getByTestId("token-uses-error"), /^`0` is not a whole number from 1 to 100,000$/);
  await expectText(page.getByTestId("token-ttl-error"), /^`soon` is not a duration: write e\.g\. `24h`, `7d` or `1h30m`$/);
  for (const label of ["Groups", "Uses", "Lifetime"]) {
    assert.equal(await form.getByLabel(label).getAttribute("aria-invalid"), "true", label);
  }
  // Seventeen groups: one more than a credential carries.
  await form.getByLabel("Groups").fill(Array.from({ length: 17 }, (_, i) => `g${i}`).join(","));
  await expectText(page.getByTestId("token-groups-error"), /^more than 16 groups/);
  await form.getByLabel("Lifetime").fill("91d");
  await expectText(page.getByTestId("token-ttl-error"), /longer than the maximum of 90d$/);
  await accessible("the New token form with its errors");
  await shot("04-form-errors");
  assert.equal((await api("GET", "/api/enroll/tokens")).body.items.length, before, "nothing was sent");
});

let created = "";
let createdId = "";

test("a new token is shown once, with Copy and the note that it is not shown again", async () => {
  const form = page.getByRole("form", { name: "New token" });
  await form.getByLabel("Groups").fill("kiosk, lab");
  await form.getByLabel("Uses").fill("5");
  await form.getByLabel("Lifetime").fill("2h");
  await form.getByRole("button", { name: "Create token" }).click();
  const panel = page.getByTestId("created-token");
  await panel.waitFor();
  created = (await page.getByTestId("created-token-text").textContent()) ?? "";
  const match = /^kanade_enroll_([a-z2-7]+)_\S+$/.exec(created);
  assert.ok(match, `a token as an agent takes it: ${created}`);
  createdId = match[1];
  const heading = panel.getByRole("heading", { name: `Token ${createdId} created` });
  await heading.waitFor();
  // Focus goes to it: the one chance to take it.
  assert.equal(await page.evaluate(() => document.activeElement?.id), "created-token-title");
  await expectText(panel, /Enrols up to 5 PCs into kiosk, lab\. Usable until \d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\./);
  await expectText(panel, /Copy it now: it is not shown again/);
  // The form is empty again, for the next one.
  assert.equal(await form.getByLabel("Groups").inputValue(), "");

  await panel.getByRole("button", { name: "Copy token" }).click();
  await expectText(page.getByTestId("copy-state"), /^Copied\.$/);
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), created, "the clipboard holds the token");

  const row = tokenRow(createdId);
  await row.waitFor();
  await expectText(cells(row).nth(1), /^kiosk, lab$/);
  await expectText(cells(row).nth(2), /^5 of 5 left$/);
  await expectText(cells(row).nth(3), /active$/);
  await expectText(cells(row).nth(5), new RegExp(`by ${OPERATOR}$`));
  await expectText(cells(row).nth(6), /^none yet$/);
  // The backend keeps the token, never its secret.
  const { body } = await api("GET", "/api/enroll/tokens");
  const kept = body.items.find((t) => t.id === createdId);
  assert.deepEqual([kept.groups, kept.uses, kept.uses_left, kept.state], [["kiosk", "lab"], 5, 5, "active"]);
  assert.ok(!JSON.stringify(body).includes(created), "the list holds no secret");
  await accessible("a new token shown once");
  await shot("05-token-created");

  // Done: it is gone from the page, and a reload does not bring it back.
  await panel.getByRole("button", { name: "Done" }).click();
  await panel.waitFor({ state: "detached" });
  assert.ok(!(await page.content()).includes(created), "the token is no longer on the page");
  await page.reload();
  await page.getByRole("heading", { name: "Enrolment", level: 1 }).waitFor();
  await tokenRow(createdId).waitFor();
  assert.ok(!(await page.content()).includes(created), "a reload does not show the token again");
});

test("Revoke on a token asks first, then marks it revoked", async () => {
  const row = tokenRow(createdId);
  let asked = confirmNext(false);
  await row.getByRole("button", { name: `Revoke token ${createdId}` }).click();
  assert.equal(
    await asked,
    `Revoke the enrolment token ${createdId} (5 of 5 left)? It enrols no more PCs; the PCs it enrolled stay enrolled.`,
  );
  await expectText(cells(row).nth(3), /active$/);

  asked = confirmNext(true);
  await row.getByRole("button", { name: `Revoke token ${createdId}` }).click();
  await asked;
  await expectText(page.getByTestId("token-note"), new RegExp(`^Revoked the token ${createdId}: it enrols no more PCs\\.$`));
  await expectText(cells(row).nth(3), /revoked(just now|\d+ s ago)$/);
  assert.equal(await row.getByRole("button").count(), 0, "a revoked token has no Revoke");
  const { body } = await api("GET", "/api/enroll/tokens");
  const kept = body.items.find((t) => t.id === createdId);
  assert.equal(kept.state, "revoked");
  assert.ok(kept.revoked_at, JSON.stringify(kept));
  await accessible("the tokens after a revoke");
  await shot("06-token-revoked");
});

test("in a narrow window the tables scroll, not the page", async () => {
  await page.setViewportSize(NARROW);
  // The tokens' table was scrolled to its last column by the Revoke pressed there; the picture shows each from its
  // start.
  await page.evaluate(() => document.querySelectorAll(".table-wrap").forEach((wrap) => wrap.scrollTo(0, 0)));
  await shot("07-narrow");
  const wider = await overflow();
  assert.ok(wider.by <= 1, `the page is ${wider.by}px wider than a ${NARROW.width}px window: ${wider.wide.join(", ")}`);
  await page.setViewportSize(WIDE);
});

test("on a backend without [security] the page says that enrolment is off and how to turn it on", async () => {
  await signIn(PLAIN_URL);
  await openEnrollment();
  const off = page.getByTestId("enrollment-off");
  await off.waitFor();
  await expectText(off, /^Enrolment is off on this backend: set \[security\] dir in its config to the folder that kanade security init wrote, and restart it\./);
  assert.equal(await page.getByRole("form", { name: "New token" }).count(), 0, "nothing to do here");
  assert.equal(await page.getByRole("table").count(), 0);
  await accessible("the Enrolment page with enrolment off");
  await shot("08-off");
});

test("the browser saw no errors and the CSP refused nothing", async () => {
  // Expected: each first page load's 401s (no sign-in to resume: how it learns to show the sign-in), and the
  // backend without [security] answering its four lists 503.
  const expected = (p) =>
    /status of 401 .*\/api\/(session|refresh)/.test(p) || (/status of 503/.test(p) && p.includes(PLAIN_URL));
  assert.deepEqual(problems.filter((p) => !expected(p)), []);
});
