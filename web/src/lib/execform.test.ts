import { describe, expect, it } from "vitest";
import { CHOOSE_TARGETS, check, EMPTY_FORM, formFor, handoffOf, initialForm, splitNames, type ExecForm } from "./execform";

const form = (over: Partial<ExecForm>): ExecForm => ({ ...EMPTY_FORM, ...over });

function errorsOf(f: ExecForm) {
  const checked = check(f);
  if (checked.ok) throw new Error(`expected errors, got ${JSON.stringify(checked.body)}`);
  return checked.errors;
}

function bodyOf(f: ExecForm) {
  const checked = check(f);
  if (!checked.ok) throw new Error(`expected a body, got ${JSON.stringify(checked.errors)}`);
  return checked.body;
}

describe("splitNames", () => {
  it("splits on commas and any whitespace, dropping empties", () => {
    expect(splitNames("a, b,c\n d\t e,,, ,f")).toEqual(["a", "b", "c", "d", "e", "f"]);
    expect(splitNames("")).toEqual([]);
    expect(splitNames("  , ,\n\t ")).toEqual([]);
  });

  it("removes duplicates, keeping the first occurrence's order", () => {
    expect(splitNames("b a b c a")).toEqual(["b", "a", "c"]);
  });

  it("keeps names case-sensitive (the check rejects uppercase, it does not fold it)", () => {
    expect(splitNames("pc1 PC1")).toEqual(["pc1", "PC1"]);
  });
});

describe("check", () => {
  it("sends an empty body for the job's own targets", () => {
    expect(check(EMPTY_FORM)).toEqual({ ok: true, body: {} });
    // Text left in the other modes' boxes does not matter.
    expect(bodyOf(form({ mode: "job", pcs: "NOT VALID!", groups: "x y" }))).toEqual({});
  });

  it("sends all: true for every agent", () => {
    expect(bodyOf(form({ mode: "all" }))).toEqual({ all: true });
  });

  it("sends named groups, de-duplicated", () => {
    expect(bodyOf(form({ mode: "groups", groups: "canary, office canary\nlab" }))).toEqual({ groups: ["canary", "office", "lab"] });
  });

  it("sends named PCs, de-duplicated", () => {
    expect(bodyOf(form({ mode: "pcs", pcs: "pc-1 pc_2,pc-1\npc-1" }))).toEqual({ pcs: ["pc-1", "pc_2"] });
  });

  it("rejects an empty list of groups or PCs", () => {
    expect(errorsOf(form({ mode: "groups", groups: "" })).groups).toMatch(/at least one group/);
    expect(errorsOf(form({ mode: "groups", groups: " ,\n, " })).groups).toMatch(/at least one group/);
    expect(errorsOf(form({ mode: "pcs", pcs: "   " })).pcs).toMatch(/at least one PC/);
  });

  it("rejects ids the backend would refuse", () => {
    const bad = [
      "PC-1",
      "Pc1",
      "a".repeat(65),
      "pc.1",
      "pc/1",
      "../etc",
      "pc:1",
      "pc'1",
      "pc\u00e91",
      "ｐｃ１",
      "pc\u200b1",
      "πc",
      "🎉",
      "İ",
    ];
    for (const id of bad) {
      const errors = errorsOf(form({ mode: "pcs", pcs: `good-1 ${id}` }));
      expect(errors.pcs, id).toMatch(/is not a PC id/);
      const gErrors = errorsOf(form({ mode: "groups", groups: `${id}, good` }));
      expect(gErrors.groups, id).toMatch(/is not a group name/);
    }
  });

  it("accepts ids of 1 to 64 allowed characters", () => {
    expect(bodyOf(form({ mode: "pcs", pcs: "a" }))).toEqual({ pcs: ["a"] });
    expect(bodyOf(form({ mode: "pcs", pcs: "a".repeat(64) }))).toEqual({ pcs: ["a".repeat(64)] });
    expect(bodyOf(form({ mode: "pcs", pcs: "0_-z9" }))).toEqual({ pcs: ["0_-z9"] });
  });

  it("quotes a bad name shortened, so a pasted essay does not flood the dialog", () => {
    const long = "X".repeat(5000);
    const message = errorsOf(form({ mode: "pcs", pcs: long })).pcs ?? "";
    expect(message.length).toBeLessThan(200);
    expect(message).toContain("X".repeat(70));
    expect(message).not.toContain("X".repeat(71));
  });

  it("rejects more than 10000 PCs and accepts exactly 10000", () => {
    const names = (n: number) => Array.from({ length: n }, (_, i) => `pc-${i}`).join("\n");
    expect(bodyOf(form({ mode: "pcs", pcs: names(10_000) })).pcs).toHaveLength(10_000);
    expect(errorsOf(form({ mode: "pcs", pcs: names(10_001) })).pcs).toMatch(/10001 PCs named; the limit is 10000/);
    // Duplicates do not count towards the limit.
    expect(bodyOf(form({ mode: "pcs", pcs: `${names(10_000)}\n${names(10_000)}` })).pcs).toHaveLength(10_000);
  });

  it("leaves units to the backend, which knows humantime's", () => {
    // The form checks the shape; the preview request reports a unit the backend does not know.
    for (const d of ["1.5h", "5x", "5S"]) expect(bodyOf(form({ jitter: d })).jitter).toBe(d);
  });

  it("accepts humantime durations", () => {
    for (const d of ["30s", "5m", "2h", "1d", "1w", "90 s", "1h30m", "1h 30m", "250ms", "10 minutes", "3 hours", "1µs", "7days", " 5m "]) {
      const body = bodyOf(form({ jitter: d, deadline: d }));
      expect(body.jitter, d).toBe(d.trim());
      expect(body.deadline, d).toBe(d.trim());
    }
  });

  it("leaves out empty or blank durations", () => {
    expect(bodyOf(form({ jitter: "", deadline: "   " }))).toEqual({});
  });

  it("rejects what is not a duration", () => {
    for (const d of ["5", "s", "abc", "-5s", "1h-", "5 m s", "5.s", "1h;rm -rf /", "5m\n6m\u0000", "٣s", "5 ms ms"]) {
      const errors = errorsOf(form({ jitter: d }));
      expect(errors.jitter, JSON.stringify(d)).toMatch(/is not a duration/);
      expect(errors.deadline).toBeUndefined();
      expect(errorsOf(form({ deadline: d })).deadline, JSON.stringify(d)).toMatch(/is not a duration/);
    }
  });

  it("quotes a long bad duration shortened", () => {
    const evil = "1".repeat(50_000) + "x";
    const message = errorsOf(form({ jitter: evil })).jitter ?? "";
    expect(message.length).toBeLessThan(100);
    const evil2 = "1s ".repeat(20_000) + "x";
    expect(errorsOf(form({ deadline: evil2 })).deadline).toMatch(/is not a duration/);
  });

  it("reports every bad field at once", () => {
    const errors = errorsOf(form({ mode: "pcs", pcs: "", jitter: "soon", deadline: "later" }));
    expect(Object.keys(errors).sort()).toEqual(["deadline", "jitter", "pcs"]);
  });

  it("combines targets and durations in one body", () => {
    expect(bodyOf(form({ mode: "groups", groups: "lab", jitter: "30s", deadline: "1h" }))).toEqual({
      groups: ["lab"],
      jitter: "30s",
      deadline: "1h",
    });
  });
});

describe("check: waves of the operator's own", () => {
  const wave = (group: string, delay = "", maxFailurePct = "") => ({ group, delay, maxFailurePct });

  it("sends each wave in order with only the fields given", () => {
    const body = bodyOf(form({ mode: "waves", waves: [wave("canary", "", "0"), wave(" lab ", "1h", "12.5")] }));
    expect(body).toEqual({ waves: [{ group: "canary", max_failure_pct: 0 }, { group: "lab", delay: "1h", max_failure_pct: 12.5 }] });
  });

  it("ignores the wave rows unless waves are chosen", () => {
    expect(bodyOf(form({ mode: "all", waves: [wave("NOT OK")] }))).toEqual({ all: true });
  });

  it("names the first bad wave and what is wrong with it", () => {
    const cases: [ReturnType<typeof wave>[], RegExp][] = [
      [[], /at least one wave/],
      [[wave("")], /wave 1: `` is not a group name/],
      [[wave("ok"), wave("Bad")], /wave 2: `Bad` is not a group name/],
      [[wave("a"), wave("a")], /wave 2: group `a` has a wave already/],
      [[wave("a", "soon")], /wave 1: `soon` is not a duration/],
      [[wave("a", "", "101")], /wave 1: the failure percentage must be a number from 0 to 100/],
      [[wave("a", "", "-1")], /from 0 to 100/],
      [[wave("a", "", "ten")], /from 0 to 100/],
      [[wave("a", "", "1e2")], /from 0 to 100/],
      [[wave("a", "", "NaN")], /from 0 to 100/],
      [Array.from({ length: 51 }, (_, i) => wave(`g${i}`)), /51 waves; the limit is 50/],
    ];
    for (const [waves, says] of cases) expect(errorsOf(form({ mode: "waves", waves })).waves, JSON.stringify(waves)).toMatch(says);
  });

  it("takes exactly 50 waves", () => {
    expect(bodyOf(form({ mode: "waves", waves: Array.from({ length: 50 }, (_, i) => wave(`g${i}`)) })).waves).toHaveLength(50);
  });
});

describe("a job without a target of its own", () => {
  it("opens with nothing chosen, and a job with targets opens with its own", () => {
    expect(initialForm(null).mode).toBe("none");
    expect(initialForm(undefined).mode).toBe("none");
    expect(initialForm({ all: false, groups: ["lab"], pcs: [] }).mode).toBe("job");
  });

  it("will not submit until PCs, groups, all or waves are chosen", () => {
    expect(errorsOf(initialForm(null))).toEqual({ mode: CHOOSE_TARGETS });
    // The job's own targets are not a choice when it has none, whatever the form says.
    expect(check(form({ mode: "job" }), false)).toEqual({ ok: false, errors: { mode: CHOOSE_TARGETS } });
    // Text typed into a mode not chosen does not count as a choice.
    expect(errorsOf(form({ mode: "none", pcs: "pc-1", groups: "lab" })).mode).toBe(CHOOSE_TARGETS);
  });

  it("fires at what the operator chose", () => {
    expect(check(form({ mode: "pcs", pcs: "host-1" }), false)).toEqual({ ok: true, body: { pcs: ["host-1"] } });
    expect(check(form({ mode: "groups", groups: "lab" }), false)).toEqual({ ok: true, body: { groups: ["lab"] } });
    expect(check(form({ mode: "all" }), false)).toEqual({ ok: true, body: { all: true } });
  });

  it("still checks what was chosen, and reports both problems together", () => {
    expect(errorsOf({ ...initialForm(null), jitter: "soon" })).toEqual({ mode: CHOOSE_TARGETS, jitter: expect.stringContaining("not a duration") });
    expect(check(form({ mode: "pcs", pcs: "" }), false)).toEqual({ ok: false, errors: { pcs: "name at least one PC" } });
  });
});

describe("handoffOf", () => {
  it("reads PCs handed over in a navigation's state", () => {
    expect(handoffOf({ handoff: { pcs: ["pc-1", "pc-2"], from: "PCs with libc6" } })).toEqual({
      pcs: ["pc-1", "pc-2"],
      from: "PCs with libc6",
    });
  });

  it("drops what is not a PC name, and repeats", () => {
    expect(handoffOf({ handoff: { pcs: ["a", 1, null, "", "a", "b", {}], from: 7 } })).toEqual({ pcs: ["a", "b"], from: "another page" });
  });

  it("is null for no state, another page's state, or no PCs", () => {
    for (const state of [null, undefined, "x", 1, [], {}, { handoff: null }, { handoff: "pc-1" }, { handoff: { pcs: "pc-1" } }, { handoff: { pcs: [] } }, { handoff: { pcs: [""] } }]) {
      expect(handoffOf(state), JSON.stringify(state)).toBeNull();
    }
  });
});

describe("formFor", () => {
  it("opens on the handed PCs, at once, whatever the job's own targets", () => {
    const handoff = { pcs: ["pc-1", "pc-2"], from: "x" };
    const f = formFor({ all: true, groups: [], pcs: [] }, handoff);
    expect(f.mode).toBe("pcs");
    expect(f.pcs).toBe("pc-1, pc-2");
    expect(bodyOf(f)).toEqual({ pcs: ["pc-1", "pc-2"] });
    expect(formFor(null, handoff).mode).toBe("pcs");
    expect(check(formFor(null, handoff), false).ok).toBe(true);
  });

  it("is the usual first form without a hand-off", () => {
    expect(formFor({ all: true, groups: [], pcs: [] }, null)).toEqual(initialForm({ all: true, groups: [], pcs: [] }));
    expect(formFor(null, null).mode).toBe("none");
  });

  it("leaves a list over the limit to the check, which says so", () => {
    const pcs = Array.from({ length: 10_001 }, (_, i) => `pc-${i}`);
    expect(errorsOf(formFor(null, { pcs, from: "x" })).pcs).toMatch(/limit is 10000/);
  });
});
