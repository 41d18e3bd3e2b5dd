import { describe, expect, it } from "vitest";
import {
  MAX_HANDOFF_PCS,
  changeDetail,
  changeWords,
  checkRange,
  csvName,
  csvPath,
  describeHardwareFilter,
  distinctPcs,
  factJobs,
  factTable,
  factWarning,
  filterForSummary,
  hardwareFilterOf,
  rangeFilter,
  searchSoftware,
  summaryValue,
  titlesQuery,
  volumeLines,
} from "./inventory";
import type { SoftwareRow, StoredJob } from "./types";

/// The server's own cases (`kanade_shared::inventory::version`'s tests), so the two cannot drift apart unnoticed.
const SERVER_MESSAGE_TAIL = "a version is printable ASCII without whitespace, `,`, `<`, `>`, `=` or `!`";

describe("checkRange", () => {
  it("accepts what the server accepts, in its canonical spelling", () => {
    const cases: [string, string][] = [
      ["<2.0", "<2.0"],
      [">=1.4.2,<1.5", ">=1.4.2,<1.5"],
      [" >= 1.4.2 , < 1.5 ", ">=1.4.2,<1.5"],
      ["1.2.3", "=1.2.3"],
      ["==1.2.3", "=1.2.3"],
      ["=1.2.3", "=1.2.3"],
      ["<=3.0.2-1", "<=3.0.2-1"],
      [">2", ">2"],
      ["!=1.2", "!=1.2"],
      ["1:2.0-1~bpo1+b2", "=1:2.0-1~bpo1+b2"],
      ["<1.0^git1", "<1.0^git1"],
      ["::::", "=::::"],
    ];
    for (const [raw, canonical] of cases) expect(checkRange(raw), raw).toEqual({ ok: true, range: canonical });
    expect(checkRange(Array(8).fill("<9").join(",")).ok).toBe(true);
    expect(checkRange("1".repeat(256)).ok).toBe(true);
  });

  it("refuses what the server refuses, in its words", () => {
    const cases: [string, string][] = [
      ["", "version range is empty"],
      [" \t ", "version range is empty"],
      [">=1,,<2", "version range `>=1,,<2` has an empty clause"],
      [">=1,", "version range `>=1,` has an empty clause"],
      [">=", "clause `>=` has an operator but no version"],
      ["<1, != ", "clause `!=` has an operator but no version"],
      ["<1.0 2", `version \`1.0 2\` contains \` \`: ${SERVER_MESSAGE_TAIL}`],
      ["<<1", `version \`<1\` contains \`<\`: ${SERVER_MESSAGE_TAIL}`],
      ["=>1", `version \`>1\` contains \`>\`: ${SERVER_MESSAGE_TAIL}`],
      ["~>1.2", `version \`~>1.2\` contains \`>\`: ${SERVER_MESSAGE_TAIL}`],
      ["<1.0é", `version \`1.0é\` contains \`é\`: ${SERVER_MESSAGE_TAIL}`],
      ["<1\u0000", `version \`1\\0\` contains \`\\0\`: ${SERVER_MESSAGE_TAIL}`],
    ];
    for (const [raw, error] of cases) expect(checkRange(raw), JSON.stringify(raw)).toEqual({ ok: false, error });
    const many = Array(9).fill("<9").join(",");
    expect(checkRange(many)).toEqual({ ok: false, error: `version range \`${many}\` has 9 clauses, more than 8` });
    expect(checkRange("1".repeat(257))).toEqual({ ok: false, error: "version range is 257 characters long, more than 256" });
  });

  it("counts characters, not UTF-16 units, and trims as Rust does", () => {
    // 200 two-unit characters are within the limit and fail on the character instead.
    expect(checkRange("😀".repeat(200))).toMatchObject({ ok: false, error: expect.stringContaining("contains `😀`") });
    // A byte-order mark is not whitespace to Rust: it is refused as a character, not trimmed away.
    expect(checkRange("\ufeff<1")).toMatchObject({ ok: false, error: expect.stringContaining("contains") });
    // U+0085 is whitespace to Rust.
    expect(checkRange("\u0085<1\u0085")).toEqual({ ok: true, range: "<1" });
  });

  it("never throws on hostile input", () => {
    for (const raw of [",", ",,,,,,,,,,,,", "<", "=", "!", "!!", "<=>", "<1,\u0000", " , ", "\ud800", "x".repeat(10_000)]) {
      expect(() => checkRange(raw)).not.toThrow();
    }
  });
});

describe("rangeFilter", () => {
  it("is nothing when blank, the canonical range when good, the error when not", () => {
    expect(rangeFilter("")).toEqual({});
    expect(rangeFilter("   ")).toEqual({});
    expect(rangeFilter(">= 2")).toEqual({ version: ">=2" });
    expect(rangeFilter(">=")).toEqual({ error: "clause `>=` has an operator but no version" });
  });
});

describe("titlesQuery", () => {
  it("collapses and cuts the words to the server's limits", () => {
    expect(titlesQuery("")).toEqual({});
    expect(titlesQuery("   ")).toEqual({});
    expect(titlesQuery("  lib   c6 ")).toEqual({ search: "lib c6" });
    expect(titlesQuery("a b c d e f g h i j").search).toBe("a b c d e f g h");
    expect([...(titlesQuery("é".repeat(300)).search ?? "")].length).toBe(256);
  });
});

describe("hardware filters", () => {
  it("reads only the known filters from a URL", () => {
    const params = new URLSearchParams("os=Debian%20GNU%2FLinux&model=&q=x&memory_below=16GiB");
    expect(hardwareFilterOf(params)).toEqual({ os: "Debian GNU/Linux", memory_below: "16GiB" });
  });

  it("links a summary value to exactly the PCs with it; memory is a one-byte range", () => {
    expect(filterForSummary("os", "Debian GNU/Linux")).toEqual({ os: "Debian GNU/Linux" });
    expect(filterForSummary("os_build", "6.1.0-21-amd64")).toEqual({ os_build: "6.1.0-21-amd64" });
    expect(filterForSummary("model", "")).toBeNull();
    expect(filterForSummary("memory", "8589934592")).toEqual({ memory_at_least: "8589934592", memory_below: "8589934593" });
    // Past what a double holds exactly.
    expect(filterForSummary("memory", "9007199254740993")).toEqual({ memory_at_least: "9007199254740993", memory_below: "9007199254740994" });
    expect(filterForSummary("memory", "lots")).toBeNull();
    expect(filterForSummary("memory", "")).toBeNull();
  });

  it("shows values as an operator reads them", () => {
    expect(summaryValue("memory", "8589934592")).toBe("8.0 GiB");
    expect(summaryValue("memory", "16777216000")).toBe("15.6 GiB");
    expect(summaryValue("os", "Debian GNU/Linux")).toBe("Debian GNU/Linux");
    expect(summaryValue("model", "")).toBe("unknown");
    expect(summaryValue("memory", "x")).toBe("x");
  });

  it("says a filter in words", () => {
    expect(describeHardwareFilter({})).toBe("");
    expect(describeHardwareFilter(filterForSummary("memory", "8589934592") ?? {})).toBe("memory 8.0 GiB");
    expect(describeHardwareFilter({ os_build: "22631.4602", memory_below: "16GiB" })).toBe("OS build 22631.4602, memory below 16GiB");
    expect(describeHardwareFilter({ memory_at_least: "1073741824" })).toBe("memory at least 1.0 GiB");
    expect(describeHardwareFilter({ model: "" })).toBe("model unknown");
  });
});

describe("CSV downloads", () => {
  it("asks for the same query as CSV, without the page's cursor or size", () => {
    expect(csvPath("/api/inventory/software", { name: "libc6", version: "<2.37", cursor: "abc", limit: 100, pc_id: "" })).toBe(
      "/api/inventory/software?name=libc6&version=%3C2.37&format=csv",
    );
    expect(csvPath("/api/inventory/titles", {})).toBe("/api/inventory/titles?format=csv");
    expect(csvPath("/api/inventory", { app: "client-facts", format: "json" })).toBe("/api/inventory?app=client-facts&format=csv");
  });

  it("names the file after the list, its filter and the day, safely", () => {
    const day = new Date(2026, 4, 1, 12, 0, 0);
    expect(csvName("software", ["libc6", "<2.37"], day)).toBe("software-libc6-lt2.37-2026-05-01.csv");
    expect(csvName("software", ["7-Zip*", ">=1.4.2,<1.5"], day)).toBe("software-7_zipany-ge1.4.2_lt1.5-2026-05-01.csv");
    expect(csvName("titles", [undefined, ""], day)).toBe("titles-2026-05-01.csv");
    expect(csvName("software", ["../../etc/passwd", "<img src=x onerror=alert(1)>"], day)).toBe(
      "software-etc_passwd-ltimg_srceqx_onerroreqalert_1_gt-2026-05-01.csv",
    );
    expect(csvName("", [], day)).toBe("list-2026-05-01.csv");
    expect(csvName("x", ["a".repeat(500)], day).length).toBeLessThanOrEqual(115);
  });
});

describe("distinctPcs", () => {
  it("lists each PC once, in order", () => {
    expect(distinctPcs([{ pc_id: "b" }, { pc_id: "a" }, { pc_id: "b" }])).toEqual({ pcs: ["b", "a"], more: 0 });
    expect(distinctPcs([])).toEqual({ pcs: [], more: 0 });
  });

  it("stops at what one run may name", () => {
    const rows = Array.from({ length: MAX_HANDOFF_PCS + 5 }, (_, i) => ({ pc_id: `pc-${i}` }));
    const { pcs, more } = distinctPcs(rows);
    expect(pcs.length).toBe(MAX_HANDOFF_PCS);
    expect(more).toBe(5);
  });
});

const job = (id: string, inventory: boolean): StoredJob =>
  ({
    job: { id, inventory: inventory ? { display: [], summary: [] } : null },
    revoked: false,
  }) as unknown as StoredJob;

describe("factJobs", () => {
  it("keeps the jobs with an inventory block, by id", () => {
    expect(factJobs([job("z", true), job("plain", false), job("a", true)]).map((j) => j.job.id)).toEqual(["a", "z"]);
  });
});

describe("factWarning", () => {
  it("says the last run gave no facts, and whether the ones shown are older", () => {
    expect(factWarning({ error: null, cells: ["1"] })).toBeNull();
    expect(factWarning({ error: "stdout is not JSON", cells: ["1", null] })).toBe(
      "The last run gave no facts (stdout is not JSON); these are from the run before.",
    );
    expect(factWarning({ error: "stdout is not JSON", cells: [null] })).toBe("The run gave no facts: stdout is not JSON");
  });
});

describe("factTable", () => {
  const at = "2026-05-01T10:00:00Z";
  it("makes a column per display field, labelled, and a line per PC's row", () => {
    const { columns, lines } = factTable({
      display: [{ field: "version", label: "Version" }, { field: "path" }],
      items: [
        { pc_id: "a", result_id: "r1", at, rows: [{ version: "1.0", path: "/opt", extra: "x" }] },
        { pc_id: "b", result_id: "r2", at, rows: [{ version: "2.0" }, { version: "2.1", path: "/usr" }] },
      ],
    });
    expect(columns).toEqual([
      { field: "version", label: "Version" },
      { field: "path", label: "path" },
    ]);
    expect(lines.map((l) => [l.key, l.pc_id, l.first, l.cells])).toEqual([
      ["a:0", "a", true, ["1.0", "/opt"]],
      ["b:0", "b", true, ["2.0", null]],
      ["b:1", "b", false, ["2.1", "/usr"]],
    ]);
  });

  it("keeps a PC without rows for its error", () => {
    const { lines } = factTable({
      display: [{ field: "version", label: "Version" }],
      items: [{ pc_id: "a", result_id: "r1", at, error: "stdout is not JSON", rows: [] }],
    });
    expect(lines).toEqual([{ key: "a:0", pc_id: "a", result_id: "r1", at, error: "stdout is not JSON", first: true, cells: [null] }]);
  });

  it("shows every field by name when the job displays none", () => {
    const { columns, lines } = factTable({
      display: [],
      items: [
        { pc_id: "a", result_id: "r1", at, rows: [{ b: "2", a: "1" }] },
        { pc_id: "b", result_id: "r2", at, rows: [{ c: "3" }] },
      ],
    });
    expect(columns.map((c) => c.label)).toEqual(["a", "b", "c"]);
    expect(lines.map((l) => l.cells)).toEqual([
      ["1", "2", null],
      [null, null, "3"],
    ]);
  });

  it("does not read a field from the row's prototype", () => {
    const { lines } = factTable({ display: [{ field: "constructor" }, { field: "__proto__" }], items: [{ pc_id: "a", result_id: "r", at, rows: [{}] }] });
    expect(lines[0]?.cells).toEqual([null, null]);
  });
});

const sw = (over: Partial<SoftwareRow>): SoftwareRow => ({
  pc_id: "pc",
  source: "dpkg",
  id: over.name ?? "x",
  name: "x",
  version: "1",
  publisher: "",
  install_date: "",
  location: "",
  arch: "",
  scope: "",
  since: "2026-05-01T10:00:00Z",
  ...over,
});

describe("searchSoftware", () => {
  const rows = [
    sw({ name: "openssl", version: "3.0.15", publisher: "Debian" }),
    sw({ name: "libc6", version: "2.36-9" }),
    sw({ name: "7-Zip 23.01 (x64)", source: "registry", publisher: "Igor Pavlov" }),
    sw({ name: "Libc6-dev", version: "2.36-9" }),
  ];
  it("sorts by name, case-insensitively", () => {
    expect(searchSoftware(rows, "").map((r) => r.name)).toEqual(["7-Zip 23.01 (x64)", "libc6", "Libc6-dev", "openssl"]);
  });

  it("finds every word in the name, version, publisher, source or id", () => {
    expect(searchSoftware(rows, "LIBC").map((r) => r.name)).toEqual(["libc6", "Libc6-dev"]);
    expect(searchSoftware(rows, "libc dev").map((r) => r.name)).toEqual(["Libc6-dev"]);
    expect(searchSoftware(rows, "pavlov").map((r) => r.name)).toEqual(["7-Zip 23.01 (x64)"]);
    expect(searchSoftware(rows, "registry").map((r) => r.name)).toEqual(["7-Zip 23.01 (x64)"]);
    expect(searchSoftware(rows, "3.0.15").map((r) => r.name)).toEqual(["openssl"]);
    expect(searchSoftware(rows, "nothing-like-it")).toEqual([]);
  });

  it("does not change the list it is given", () => {
    const copy = [...rows];
    searchSoftware(rows, "");
    expect(rows).toEqual(copy);
  });
});

describe("volumeLines", () => {
  it("joins the free space by mount point, and keeps mounts only the status knows", () => {
    const lines = volumeLines(
      [
        { mount: "/", file_system: "ext4", size_bytes: 1000, label: "" },
        { mount: "/boot", file_system: "vfat", size_bytes: 0, label: "EFI" },
      ],
      [
        { mount: "/", size_bytes: 1000, free_bytes: 250 },
        { mount: "/data", size_bytes: 400, free_bytes: 400 },
      ],
    );
    expect(lines).toEqual([
      { mount: "/", file_system: "ext4", label: "", size_bytes: 1000, free_bytes: 250, used_pct: 75 },
      { mount: "/boot", file_system: "vfat", label: "EFI", size_bytes: 0, free_bytes: null, used_pct: null },
      { mount: "/data", file_system: "", label: "", size_bytes: 400, free_bytes: 400, used_pct: 0 },
    ]);
  });

  it("does not make up a percentage from nonsense", () => {
    expect(volumeLines([], [{ mount: "/", size_bytes: 10, free_bytes: 20 }])[0]?.used_pct).toBeNull();
  });
});

describe("the change log in words", () => {
  it("names each change", () => {
    expect(changeWords("installed")).toBe("Installed");
    expect(changeWords("version_changed")).toBe("Version changed");
    expect(changeWords("first_report")).toBe("First report");
    expect(changeWords("brand_new_kind")).toBe("Brand new kind");
    expect(changeWords("")).toBe("Changed");
  });

  it("says what changed", () => {
    expect(changeDetail({ kind: "software", name: "openssl", old: "3.0.11", new: "3.0.15" })).toBe("3.0.11 → 3.0.15");
    expect(changeDetail({ kind: "software", name: "curl", old: null, new: "7.88" })).toBe("7.88");
    expect(changeDetail({ kind: "software", name: "libfoo", old: "1.0-1", new: null })).toBe("1.0-1");
    expect(changeDetail({ kind: "hardware", name: "memory.total_bytes", old: "8589934592", new: "17179869184" })).toBe("8.0 GiB → 16.0 GiB");
    expect(changeDetail({ kind: "hardware", name: "os.build", old: "", new: "6.1.0-21" })).toBe("(empty) → 6.1.0-21");
    expect(changeDetail({ kind: "software", name: "x", old: undefined, new: undefined })).toBe("");
    // A first report: the software's count, nothing for hardware.
    expect(changeDetail({ kind: "software", name: "software", old: null, new: "790 items" })).toBe("790 items");
    expect(changeDetail({ kind: "hardware", name: "hardware", old: null, new: "" })).toBe("");
  });
});
