// Signing in with a name and password, in headless Chromium against a real backend with operator accounts, which
// crates/kanade-backend/tests/dashboard_signin.rs starts and describes through the environment:
//   KANADE_URL            the backend, serving the embedded dashboard
//   KANADE_TOKEN          the shared static token (for the test's own requests beside the page)
//   KANADE_PASSWORD       every account's password
//   KANADE_ADMIN          the first admin (made with the setup token)
//   KANADE_VIEWER         a viewer
//   KANADE_TOTP_USER      an operator whose sign-in needs a TOTP code
//   KANADE_TOTP_SECRET    that account's TOTP secret (base32), to play its authenticator app
//   KANADE_ROLLING_EXEC   an execution still rolling out (its second wave is an hour away): something to kill
//   KANADE_PENDING_EXEC   an execution waiting for approval: something to approve
//   KANADE_ARTIFACTS      where screenshots go
//   KANADE_CHROMIUM       the browser (Debian's chromium; playwright-core does not download one)
// The steps run in order in one browser: each starts where the previous one left the page.

import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { accessible as checkAccessible, env as sharedEnv, expectText as waitForText, launchChromium } from "./support.mjs";

const env = (name) => sharedEnv(name, "dashboard_signin");
const URL = env("KANADE_URL");
const TOKEN = env("KANADE_TOKEN");
const PASSWORD = env("KANADE_PASSWORD");
const ADMIN = env("KANADE_ADMIN");
const VIEWER = env("KANADE_VIEWER");
const TOTP_USER = env("KANADE_TOTP_USER");
const TOTP_SECRET = env("KANADE_TOTP_SECRET");
const ROLLING = env("KANADE_ROLLING_EXEC");
const PENDING = env("KANADE_PENDING_EXEC");
const ARTIFACTS = env("KANADE_ARTIFACTS");
const PATIENCE = 30_000;
/// A name nobody has, for the throttle: failures are counted per name, whether it exists or not.
const MALLORY = "mallory";

let browser;
let context;
let page;
const problems = [];
/// Every sign-in route the page called, with its answer's status, in order.
let calls = [];

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  browser = await launchChromium();
  // The page runs under the backend's Content-Security-Policy; a violation is a console error, which fails the run.
  context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  context.setDefaultTimeout(PATIENCE);
  page = await context.newPage();
  page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
  page.on("console", (msg) => {
    if (msg.type() === "error") problems.push(`console error: ${msg.text()} (${msg.location()?.url ?? ""})`);
  });
  page.on("response", (response) => {
    const path = new globalThis.URL(response.url()).pathname;
    if (/^\/api\/(login|refresh|logout)$/.test(path)) calls.push(`${path} ${response.status()}`);
  });
});

after(async () => {
  await browser?.close();
});

async function shot(name) {
  await page.screenshot({ path: join(ARTIFACTS, `signin-${name}.png`), fullPage: true });
}

const accessible = (what) => checkAccessible(page, what);
const expectText = (locator, pattern, patience = PATIENCE) => waitForText(locator, pattern, patience);
const message = () => page.getByTestId("sign-in-message");
const who = () => page.getByTestId("signed-in-as");

/// The API as the test sees it, beside the page.
async function api(method, path, body, headers = { Authorization: `Bearer ${TOKEN}` }) {
  const response = await fetch(`${URL}${path}`, {
    method,
    headers: { ...headers, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, headers: response.headers, body: await response.json().catch(() => null) };
}

/// The code an authenticator app shows for `secret` at `unixSeconds` (RFC 6238: SHA-1, 30 s, 6 digits).
function totpCode(secret, unixSeconds) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const ch of secret.replace(/=+$/, "").toUpperCase()) bits += alphabet.indexOf(ch).toString(2).padStart(5, "0");
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(unixSeconds / 30)));
  const mac = createHmac("sha1", key).update(counter).digest();
  const offset = mac[mac.length - 1] & 0xf;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000).padStart(6, "0");
}

async function fillSignIn(name, password) {
  await page.getByLabel("Name", { exact: true }).fill(name);
  await page.getByLabel("Password", { exact: true }).fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
}

/// What the page's scripts can read of where the browser keeps things: both storages and `document.cookie`.
async function readable() {
  return page.evaluate(() => JSON.stringify({ local: { ...localStorage }, session: { ...sessionStorage }, cookie: document.cookie }));
}

async function signOut() {
  await page.getByRole("banner").getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
}

test("the dashboard opens on a name-and-password sign-in, with the API token as the other way in", async () => {
  await page.goto(URL);
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
  await page.getByLabel("Name", { exact: true }).waitFor();
  await page.getByLabel("Password", { exact: true }).waitFor();
  assert.equal(await page.getByLabel("Authenticator code").count(), 0, "no TOTP field until the backend asks");
  await page.getByRole("button", { name: "Use an API token instead" }).waitFor();
  // Nothing to resume: the refresh cookie was asked for and there was none.
  assert.deepEqual(calls, ["/api/refresh 401"]);
  await accessible("the sign-in page");
  await shot("01-form");
});

test("a wrong password is refused with the backend's words, and nothing is kept", async () => {
  await fillSignIn(ADMIN, "not the password at all");
  await expectText(message(), /^Wrong name or password\.$/);
  assert.equal(await message().getAttribute("role"), "alert");
  assert.equal(await page.getByRole("heading", { name: "Fleet" }).count(), 0);
  // The name stays to be corrected; the wrong password is selected, ready to be typed over.
  assert.equal(await page.getByLabel("Name", { exact: true }).inputValue(), ADMIN);
  assert.deepEqual(JSON.parse(await readable()), { local: {}, session: {}, cookie: "" });
  await accessible("the sign-in page with an error");
  await shot("02-wrong-password");
});

test("a throttled name is told how long to wait, and may not try until then", async () => {
  // Five failures are free, then each waits 1 s, 2 s, 4 s, ...: eight counted failures leave a 4 s wait.
  let counted = 0;
  while (counted < 8) {
    const reply = await api("POST", "/api/login", { name: MALLORY, password: "guessing-guessing" }, {});
    if (reply.status === 429) {
      await new Promise((r) => setTimeout(r, Number(reply.headers.get("retry-after")) * 1000 + 50));
      continue;
    }
    assert.equal(reply.status, 401, JSON.stringify(reply.body));
    counted++;
  }
  await fillSignIn(MALLORY, "guessing-again-and-again");
  await expectText(message(), /^Too many failed sign-ins for this name\. Try again in [1-4] s\.$/);
  const submit = page.getByRole("button", { name: "Sign in" });
  assert.ok(await submit.isDisabled(), "no new try while the name waits");
  await shot("03-throttled");
  // The wait counts down and ends.
  await expectText(message(), /You may try again now\.$/, 8_000);
  assert.ok(!(await submit.isDisabled()), "allowed again once the wait is over");
});

test("a backend that cannot be reached is said to be so", async () => {
  await page.route("**/api/login", (route) => route.abort("connectionrefused"));
  await fillSignIn(ADMIN, PASSWORD);
  await expectText(message(), /^The backend cannot be reached \(.+\)\. Check that it is running, then try again\.$/);
  await shot("04-unreachable");
  await page.unroute("**/api/login");
});

test("the right password signs in: the dashboard with the user's name and role, the token in memory only", async () => {
  calls = [];
  await fillSignIn(ADMIN, PASSWORD);
  await page.getByRole("heading", { name: "Fleet", level: 1 }).waitFor();
  await expectText(who(), new RegExp(`^Signed in as ${ADMIN} admin$`));
  await page.getByTestId("live-state").filter({ hasText: "Live" }).waitFor();
  assert.deepEqual(calls, ["/api/login 200"]);
  // The session token is nowhere a script could find it later, and the refresh token is an HttpOnly cookie for
  // /api alone, which no script can read.
  assert.deepEqual(JSON.parse(await readable()), { local: {}, session: {}, cookie: "" });
  const cookies = await context.cookies();
  assert.equal(cookies.length, 1, JSON.stringify(cookies));
  const [cookie] = cookies;
  assert.deepEqual(
    { name: cookie.name, path: cookie.path, httpOnly: cookie.httpOnly, sameSite: cookie.sameSite },
    { name: "kanade_refresh", path: "/api", httpOnly: true, sameSite: "Strict" },
  );
  assert.match(cookie.value, /^kanade_refresh_/);
  // No password is left in the page.
  assert.equal(await page.locator('input[type="password"]').count(), 0);
  await accessible("the fleet page signed in");
  await shot("05-signed-in");
});

test("an admin is offered Kill and Approve", async () => {
  await page.getByRole("link", { name: "Activity", exact: true }).click();
  await page.getByRole("heading", { name: "Activity", level: 1 }).waitFor();
  await page.getByRole("button", { name: `Kill rolling ${ROLLING}` }).waitFor();
  await page.getByRole("button", { name: `Approve guarded ${PENDING}` }).waitFor();
});

test("a reload keeps the operator signed in, through the refresh cookie", async () => {
  calls = [];
  await page.reload();
  await page.getByRole("heading", { name: "Activity", level: 1 }).waitFor();
  await expectText(who(), new RegExp(`^Signed in as ${ADMIN} admin$`));
  assert.deepEqual(calls, ["/api/refresh 200"]);
  // The cookie was replaced by the refresh (each refresh token is spent once), and still nothing readable.
  assert.deepEqual(JSON.parse(await readable()), { local: {}, session: {}, cookie: "" });
  await shot("06-reloaded");
});

test("session tokens refused at once are renewed with one refresh, and every request goes again", async () => {
  // Every API request the Fleet page makes answers 401 once, as for an expired session token, until the page has
  // refreshed: one refresh for all of them, and each is asked again with the new token.
  const refused = new Set();
  const api = (url) => url.pathname.startsWith("/api/") && !/^\/api\/(login|refresh|logout|events)$/.test(url.pathname);
  const expire = (route) => {
    const path = new globalThis.URL(route.request().url()).pathname;
    if (refused.has(path) || calls.length > 0) return route.continue();
    refused.add(path);
    return route.fulfill({
      status: 401,
      contentType: "application/json",
      body: JSON.stringify({ error: { code: "token_expired", message: "the session token expired" } }),
    });
  };
  await page.route(api, expire);
  calls = [];
  await page.getByRole("link", { name: "Fleet", exact: true }).click();
  await page.getByRole("heading", { name: "Fleet", level: 1 }).waitFor();
  await page.getByTestId("online-count").filter({ hasText: /^1$/ }).waitFor();
  await page.unroute(api, expire);
  assert.ok(refused.size >= 2, `several requests were refused at once: ${[...refused]}`);
  assert.deepEqual(calls, ["/api/refresh 200"], "one refresh for them all");
  await expectText(who(), new RegExp(`^Signed in as ${ADMIN} admin$`));
});

test("signing out returns to the sign-in page, and a reload stays signed out", async () => {
  calls = [];
  await signOut();
  assert.deepEqual(calls, ["/api/logout 204"]);
  assert.deepEqual(await context.cookies(), [], "the backend cleared the refresh cookie");
  await page.reload();
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
  await page.getByLabel("Password", { exact: true }).waitFor();
  assert.deepEqual(calls, ["/api/logout 204", "/api/refresh 401"]);
  await shot("07-signed-out");
});

test("an account with TOTP is asked for its code, and signs in with it", async () => {
  await fillSignIn(TOTP_USER, PASSWORD);
  await expectText(message(), /^This account needs the 6-digit code from its authenticator app\.$/);
  const code = page.getByLabel("Authenticator code");
  await code.waitFor();
  assert.ok(await code.evaluate((el) => el === document.activeElement), "the code field has the focus");
  await accessible("the sign-in page asking for the TOTP code");
  await shot("08-totp");
  // The code of the current 30 s step, unless that step is about to end: then the next one (the backend allows
  // one step of drift).
  const now = Date.now() / 1000;
  await code.fill(totpCode(TOTP_SECRET, now % 30 > 25 ? now + 30 : now));
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Fleet", level: 1 }).waitFor();
  await expectText(who(), new RegExp(`^Signed in as ${TOTP_USER} operator$`));
  await signOut();
});

test("a viewer is offered no fire, kill or approve buttons", async () => {
  await fillSignIn(VIEWER, PASSWORD);
  await page.getByRole("heading", { name: "Fleet", level: 1 }).waitFor();
  await expectText(who(), new RegExp(`^Signed in as ${VIEWER} viewer$`));

  await page.getByRole("link", { name: "Jobs", exact: true }).click();
  await page.getByRole("link", { name: /^rolling/ }).click();
  await page.getByRole("heading", { name: /^rolling/, level: 2 }).waitFor();
  await expectText(page.getByTestId("role-note"), /^Your role \(viewer\) may look but not run or revoke jobs\.$/);
  assert.equal(await page.getByRole("button", { name: "Run…" }).count(), 0);
  assert.equal(await page.getByRole("button", { name: "Revoke" }).count(), 0);
  await accessible("the Jobs page as a viewer");
  await shot("09-viewer-jobs");

  await page.getByRole("link", { name: "Activity", exact: true }).click();
  await page.getByRole("heading", { name: "Activity", level: 1 }).waitFor();
  await page.getByRole("link", { name: /^rolling/ }).first().waitFor();
  for (const name of [`Kill rolling ${ROLLING}`, `Approve guarded ${PENDING}`, `Reject guarded ${PENDING}`, "Revoke job rolling"]) {
    assert.equal(await page.getByRole("button", { name }).count(), 0, `no ${name} button for a viewer`);
  }
  await page.goto(`${URL}/activity/${ROLLING}`);
  await page.getByRole("heading", { name: /^rolling/, level: 1 }).waitFor();
  assert.equal(await page.getByRole("button", { name: /^Kill / }).count(), 0);
  await accessible("an execution's page as a viewer");
  await shot("10-viewer-activity");
  // The backend holds the line too: the same kill with the viewer's own session is refused.
  const login = await api("POST", "/api/login", { name: VIEWER, password: PASSWORD }, {});
  assert.equal(login.status, 200, JSON.stringify(login.body));
  const kill = await api("POST", `/api/executions/${ROLLING}/kill`, undefined, { Authorization: `Bearer ${login.body.access_token}` });
  assert.deepEqual([kill.status, kill.body?.error?.code], [403, "forbidden"]);
  await signOut();
});

test("the browser saw no errors and the CSP refused nothing", () => {
  // Expected: the refusals this script asked for (a 401 for each wrong password, TOTP step or missing cookie, a 429
  // for the throttled name, the 401s it injected), and the aborted sign-in of the unreachable step.
  const expected = (p) =>
    /status of 40[13] .*\/api\//.test(p) ||
    /status of 429 .*\/api\/login/.test(p) ||
    /ERR_CONNECTION_REFUSED .*\/api\/login/.test(p);
  assert.deepEqual(problems.filter((p) => !expected(p)), []);
});
