// What the browser scripts share: their environment, Chromium as this machine can run it, accessibility checks and
// waiting for a text. Each script is run by a Rust test (`crates/kanade-backend/tests/dashboard*.rs`), which sets
// the environment.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

import { chromium } from "playwright-core";

/// A variable the Rust test sets; `test` names that test, for the error when the script is run by hand.
export function env(name, test) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set; run this through \`cargo test -p kanade-backend --test ${test}\``);
  return value;
}

/// Headless Debian Chromium. This machine has no internet: the flags keep Chromium from trying to reach Google's
/// services at every start.
export function launchChromium() {
  return chromium.launch({
    executablePath: env("KANADE_CHROMIUM", "dashboard"),
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

/// Runs axe-core on the page; fails on serious or critical violations.
export async function accessible(page, what) {
  // Evaluated through the DevTools protocol, which the page's CSP does not govern (a <script> tag would be refused).
  await page.evaluate(AXE);
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ["violations"] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(" ")).slice(0, 3) }));
  });
  const serious = result.filter((v) => v.impact === "serious" || v.impact === "critical");
  assert.deepEqual(serious, [], `${what}: accessibility violations:\n${JSON.stringify(serious, null, 2)}`);
}

/// Waits up to `patience` ms until the locator's text matches; on failure says what it was instead.
export async function expectText(locator, pattern, patience) {
  const deadline = Date.now() + patience;
  let last;
  while (Date.now() < deadline) {
    last = await locator.textContent({ timeout: patience }).catch(() => null);
    if (last !== null && pattern.test(last)) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.fail(`text stayed ${JSON.stringify(last)}, expected ${pattern}`);
}
