use std::path::Path;

use chrono::{DateTime, TimeZone, Utc};

use super::*;

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}")).with_timezone(&Utc)
}

fn checked(yaml: &str) -> CheckedSchedule {
    CheckedSchedule::from_yaml(yaml).unwrap_or_else(|e| panic!("{e}"))
}

fn refused(yaml: &str) -> String {
    match CheckedSchedule::from_yaml(yaml) {
        Ok(s) => panic!("accepted: {s:?}"),
        Err(err) => err.to_string(),
    }
}

fn timing(yaml: &str) -> Timing {
    Timing::of(&checked(yaml).schedule).unwrap_or_else(|e| panic!("{e}"))
}

fn times(list: &[DateTime<Utc>]) -> Vec<String> {
    list.iter().map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string()).collect()
}

const BASE: &str = "id: s\njob: echo\n";

#[test]
fn a_full_schedule_validates_into_its_checked_form() {
    let s = checked(
        "id: nightly\ndescription: patch at night\njob: patch\ncron: \"30 2 * * 1-5\"\ntimezone: Europe/Berlin\n\
         target:\n  groups: [lab, office]\nwaves:\n  - group: lab\n  - group: office\n    delay: 1h\n    max_failure_pct: 5\n\
         jitter: 5m\ndeadline: 2h\nenabled: false\nnot_before: 2026-12-01 00:00\nnot_after: 2027-03-01T00:00:00Z\n\
         misfire: run_once\ngrace: 30m\noverlap: allow\n",
    )
    .schedule;
    assert_eq!(s.id.as_str(), "nightly");
    assert_eq!(s.job_id.as_str(), "patch");
    assert_eq!(s.when, When::Cron { pattern: "30 2 * * 1-5".into() });
    assert_eq!(s.timezone, "Europe/Berlin");
    assert_eq!(s.targets.as_ref().map(|t| t.groups.len()), Some(2));
    assert_eq!(s.waves.as_ref().map(Vec::len), Some(2));
    assert_eq!((s.jitter, s.deadline), (Some(Duration::from_secs(300)), Some(Duration::from_secs(7200))));
    assert!(!s.enabled);
    assert_eq!(s.not_before, Some(utc("2026-11-30T23:00:00Z")), "a time without an offset is read in the time zone");
    assert_eq!(s.not_after, Some(utc("2027-03-01T00:00:00Z")));
    assert_eq!((s.misfire, s.grace, s.overlap), (Misfire::RunOnce, Duration::from_secs(1800), Overlap::Allow));

    let plain = checked(&format!("{BASE}every: 10m\n")).schedule;
    assert_eq!(plain.when, When::Every { every_ms: 600_000 });
    assert_eq!((plain.timezone.as_str(), plain.enabled), ("UTC", true));
    assert_eq!((plain.misfire, plain.grace, plain.overlap), (Misfire::Skip, DEFAULT_GRACE, Overlap::Skip));
    assert_eq!((plain.targets, plain.waves), (None, None), "the job's own");
}

#[test]
fn the_sample_schedules_validate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schedules");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            CheckedSchedule::load(&path).unwrap_or_else(|e| panic!("{e}"));
            seen += 1;
        }
    }
    assert!(seen >= 2, "expected the sample schedules in schedules/");
}

#[test]
fn the_documents_every_ten_seconds_sample_fires_every_ten_seconds() {
    let sample =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schedules/echo-every-10s.yaml"))
            .unwrap();
    let t = Timing::of(&checked(&sample).schedule).unwrap();
    let next = t.upcoming(utc("2026-12-06T10:00:03Z"), 4);
    assert_eq!(
        times(&next),
        ["2026-12-06T10:00:10Z", "2026-12-06T10:00:20Z", "2026-12-06T10:00:30Z", "2026-12-06T10:00:40Z"]
    );
}

#[test]
fn unknown_keys_and_wrong_types_are_refused_with_their_path() {
    let err = refused(&format!("{BASE}every: 10m\ncorn: x\n"));
    assert!(err.contains("corn"), "{err}");
    let err = refused(&format!("{BASE}every: often\n"));
    assert!(err.contains("every") && err.contains("not a duration"), "{err}");
    let err = refused(&format!("{BASE}every: 10m\ntarget:\n  all: true\n  gropus: [x]\n"));
    assert!(err.contains("target") && err.contains("gropus"), "{err}");
    let err = refused(&format!("{BASE}every: 10m\noverlap: sometimes\n"));
    assert!(err.contains("overlap"), "{err}");
    let err = refused("id: s\nevery: 10m\n");
    assert!(err.contains("job"), "{err}");
}

#[test]
fn exactly_one_when_is_required() {
    let err = refused(BASE);
    assert!(err.contains("says not when"), "{err}");
    let err = refused(&format!("{BASE}every: 10m\ncron: \"* * * * *\"\n"));
    assert!(err.contains("cannot be combined") && err.contains("`cron`") && err.contains("every"), "{err}");
    let err = refused(&format!("{BASE}at: 2027-01-01T00:00:00Z\nmode: once_per_pc\n"));
    assert!(err.contains("cannot be combined"), "{err}");
}

#[test]
fn cron_patterns_take_five_or_six_fields_and_nicknames() {
    assert!(checked(&format!("{BASE}cron: \"0 3 * * *\"\n")).inline_job.is_none());
    checked(&format!("{BASE}cron: \"*/10 * * * * *\"\n"));
    checked(&format!("{BASE}cron: \"@daily\"\n"));
    for (pattern, wanted) in [
        ("* * * *", "4 fields"),
        ("* * * * * * *", "7 fields"),
        ("61 * * * *", "not a cron pattern"),
        ("* * * * BLAH", "not a cron pattern"),
        ("", "0 fields"),
    ] {
        let err = refused(&format!("{BASE}cron: \"{pattern}\"\n"));
        assert!(err.contains("cron") && err.contains(wanted), "{pattern}: {err}");
    }
    let err = refused(&format!("{BASE}cron: \"{}\"\n", "1,".repeat(200) + " * * * *"));
    assert!(err.contains("cron"), "{err}");
}

#[test]
fn times_zones_windows_and_limits_are_checked() {
    let err = refused(&format!("{BASE}every: 10m\ntimezone: Mars/Olympus\n"));
    assert!(err.contains("timezone") && err.contains("not an IANA time zone"), "{err}");
    let err = refused(&format!("{BASE}at: tomorrow\n"));
    assert!(err.contains("at") && err.contains("not a time"), "{err}");
    let err = refused(&format!("{BASE}at: 2026-03-29 02:30\ntimezone: Europe/Berlin\n"));
    assert!(err.contains("does not exist in Europe/Berlin"), "{err}");
    // The repeated hour: the earlier instant, as croner reads a fixed-time pattern.
    let at = checked(&format!("{BASE}at: 2026-10-25 02:30\ntimezone: Europe/Berlin\n")).schedule.when;
    assert_eq!(at, When::At { at: utc("2026-10-25T00:30:00Z") });
    let err =
        refused(&format!("{BASE}every: 10m\nnot_before: 2027-01-02T00:00:00Z\nnot_after: 2027-01-01T00:00:00Z\n"));
    assert!(err.contains("not_after") && err.contains("later than not_before"), "{err}");
    let err = refused(&format!("{BASE}at: 2027-01-01T00:00:00Z\nnot_after: 2027-01-02T00:00:00Z\n"));
    assert!(err.contains("fires once"), "{err}");
    for (every, wanted) in [("0s", "between 1s"), ("400days", "between 1s"), ("1500ms", "whole seconds")] {
        let err = refused(&format!("{BASE}every: {every}\n"));
        assert!(err.contains(wanted), "{every}: {err}");
    }
    let err = refused(&format!("{BASE}every: 10m\ngrace: 1h\n"));
    assert!(err.contains("grace") && err.contains("run_once"), "{err}");
    let err = refused(&format!("{BASE}every: 10m\nmisfire: run_once\ngrace: 60days\n"));
    assert!(err.contains("grace"), "{err}");
    let err = refused(&format!("{BASE}every: 10m\njitter: 2h\ndeadline: 1h\n"));
    assert!(err.contains("jitter") && err.contains("shorter than the deadline"), "{err}");
    let err = refused(&format!("{BASE}every: 10m\ndeadline: 90days\n"));
    assert!(err.contains("deadline"), "{err}");
    let err = refused(&format!("{BASE}mode: once_per_pc\noverlap: allow\n"));
    assert!(err.contains("overlap") && err.contains("once-per-PC"), "{err}");
}

#[test]
fn targets_and_waves_follow_the_manifest_rules() {
    let err = refused(&format!("{BASE}every: 10m\ntarget: {{}}\n"));
    assert!(err.contains("target") && err.contains("names no agents"), "{err}");
    let err = refused(&format!("{BASE}every: 10m\ntarget:\n  groups: [a]\nwaves:\n  - group: b\n"));
    assert!(err.contains("waves[0]") && err.contains("not in target.groups"), "{err}");
    let err = refused(&format!("{BASE}every: 10m\ntarget:\n  pcs: [pc-1]\nwaves:\n  - group: a\n"));
    assert!(err.contains("waves") && err.contains("not pcs"), "{err}");
    let err = refused(&format!("{BASE}every: 10m\nwaves:\n  - group: a\n    max_failure_pct: 150\n"));
    assert!(err.contains("waves[0].max_failure_pct"), "{err}");
    let s = checked(&format!("{BASE}every: 10m\nwaves:\n  - group: a\n  - group: b\n    delay: 10m\n")).schedule;
    assert_eq!(s.waves.unwrap()[1].delay, Duration::from_secs(600), "without a target the waves name the groups");
}

#[test]
fn ids_are_short_enough_for_their_occurrences() {
    let long = "a".repeat(41);
    let err = refused(&format!("id: {long}\njob: echo\nevery: 1m\n"));
    assert!(err.contains("longer than 40"), "{err}");
    let err = refused("id: Nightly Patch\njob: echo\nevery: 1m\n");
    assert!(err.contains("schedule id") || err.contains("id"), "{err}");
    let id = ScheduleId::new("a".repeat(40)).unwrap();
    let occurrence = occurrence_id(&id, utc("2026-12-06T09:05:07Z"));
    assert_eq!(occurrence.as_str(), format!("{}-20261206t090507z", "a".repeat(40)));
    assert!(occurrence.as_str().len() <= crate::ids::MAX_ID_LEN);
    assert_eq!(
        occurrence_id(&ScheduleId::new("tick").unwrap(), utc("2026-12-06T09:05:07.900Z")).as_str(),
        "tick-20261206t090507z",
        "to the second"
    );
}

#[test]
fn an_inline_job_is_checked_strictly_and_carried() {
    let s = checked(
        "id: s\nevery: 1h\njob:\n  id: hello\n  version: 2\n  target: {all: true}\n  execute:\n    shell: sh\n    script: echo hi\n",
    );
    assert_eq!(s.schedule.job_id.as_str(), "hello");
    let job = s.inline_job.unwrap();
    assert_eq!((job.id.as_str(), job.version.as_str()), ("hello", "2"));
    let err = refused("id: s\nevery: 1h\njob:\n  id: hello\n  version: 2\n  execute:\n    shell: sh\n    scritp: x\n");
    assert!(err.contains("scritp"), "{err}");
    let err = refused("id: s\nevery: 1h\njob:\n  id: hello\n  version: 2\n  execute:\n    shell: sh\n");
    assert!(err.contains("job.execute") && err.contains("no script"), "{err}");
    let err = refused("id: s\nevery: 1h\njob: [a, b]\n");
    assert!(err.contains("job"), "{err}");
}

#[test]
fn an_inline_job_s_script_file_is_read_beside_the_schedule() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hi.sh"), "echo from a file\n").unwrap();
    let file = dir.path().join("s.yaml");
    std::fs::write(
        &file,
        "id: s\nevery: 1h\njob:\n  id: hello\n  version: 1\n  execute:\n    shell: sh\n    script_file: hi.sh\n",
    )
    .unwrap();
    let job = CheckedSchedule::load(&file).unwrap().inline_job.unwrap();
    assert_eq!(job.source, manifest::ScriptSource::Inline { script: "echo from a file\n".into() });
    std::fs::write(
        &file,
        "id: s\nevery: 1h\njob:\n  id: hello\n  version: 1\n  execute:\n    shell: sh\n    script_file: gone.sh\n",
    )
    .unwrap();
    let err = CheckedSchedule::load(&file).unwrap_err().to_string();
    assert!(err.contains("s.yaml") && err.contains("gone.sh"), "{err}");
}

#[test]
fn hostile_files_are_refused_without_a_panic() {
    let big = format!("{BASE}every: 1m\ndescription: \"{}\"\n", "x".repeat(manifest::MAX_MANIFEST_BYTES));
    assert!(refused(&big).contains("limit"));
    let err = refused(&format!("{BASE}every: 1m\ndescription: \"{}\"\n", "x".repeat(2000)));
    assert!(err.contains("description"), "{err}");
    for text in ["", "---", "[1, 2", "id: s\njob: echo\nevery: 1m\nevery: 2m\n", "\u{0}\u{1}", "id: &a [*a]\n", "{{{{"]
    {
        let _ = CheckedSchedule::from_yaml(text);
    }
    let nested = format!("{BASE}every: 1m\ntarget: {}{}\n", "[".repeat(5000), "]".repeat(5000));
    assert!(CheckedSchedule::from_yaml(&nested).is_err());
}

#[test]
fn every_counts_from_the_epoch_or_from_not_before() {
    let t = timing(&format!("{BASE}every: 10m\n"));
    assert_eq!(times(&t.upcoming(utc("2026-12-06T10:03:00Z"), 2)), ["2026-12-06T10:10:00Z", "2026-12-06T10:20:00Z"]);
    assert_eq!(times(&t.upcoming(utc("2026-12-06T10:10:00Z"), 1)), ["2026-12-06T10:20:00Z"], "strictly after");
    let t = timing(&format!("{BASE}every: 7m\nnot_before: 2026-12-06T10:01:00Z\nnot_after: 2026-12-06T10:20:00Z\n"));
    let before = utc("2026-12-01T00:00:00Z");
    assert_eq!(times(&t.upcoming(before, 9)), ["2026-12-06T10:01:00Z", "2026-12-06T10:08:00Z", "2026-12-06T10:15:00Z"]);
}

#[test]
fn at_fires_once_and_once_per_pc_has_no_times() {
    let t = timing(&format!("{BASE}at: 2027-01-01T09:00:00+09:00\n"));
    assert_eq!(times(&t.upcoming(utc("2026-12-01T00:00:00Z"), 3)), ["2027-01-01T00:00:00Z"]);
    assert!(t.next_after(utc("2027-01-01T00:00:00Z")).is_none());
    let t = timing(&format!("{BASE}mode: once_per_pc\n"));
    assert!(t.next_after(utc("2026-01-01T00:00:00Z")).is_none());
    let s = checked(&format!("{BASE}mode: once_per_version\n")).schedule;
    assert!(s.when.is_once() && s.when.kind() == "once_per_version");
}

// Europe/Berlin: on 2026-03-29 the clocks go from 02:00 CET to 03:00 CEST (02:00-02:59 do not exist); on
// 2026-10-25 from 03:00 CEST back to 02:00 CET (02:00-02:59 happen twice).

#[test]
fn a_fixed_time_in_the_spring_forward_gap_fires_at_the_first_instant_after_it() {
    let t = timing(&format!("{BASE}cron: \"30 2 * * *\"\ntimezone: Europe/Berlin\n"));
    let next = t.upcoming(utc("2026-03-27T12:00:00Z"), 3);
    assert_eq!(
        times(&next),
        [
            "2026-03-28T01:30:00Z", // 02:30 CET
            "2026-03-29T01:00:00Z", // 02:30 does not exist: 03:00 CEST, the first instant after the gap
            "2026-03-30T00:30:00Z", // 02:30 CEST
        ]
    );
}

#[test]
fn an_interval_pattern_skips_the_times_the_gap_removes() {
    let t = timing(&format!("{BASE}cron: \"*/30 * * * *\"\ntimezone: Europe/Berlin\n"));
    let next = t.upcoming(utc("2026-03-29T00:00:00Z"), 4); // 01:00 CET
    // 01:30 CET, then 03:00 and 03:30 CEST: no 02:00 or 02:30; in UTC still every 30 minutes.
    assert_eq!(
        times(&next),
        ["2026-03-29T00:30:00Z", "2026-03-29T01:00:00Z", "2026-03-29T01:30:00Z", "2026-03-29T02:00:00Z"]
    );
}

#[test]
fn a_fixed_time_in_the_repeated_hour_fires_once() {
    let t = timing(&format!("{BASE}cron: \"30 2 * * *\"\ntimezone: Europe/Berlin\n"));
    let next = t.upcoming(utc("2026-10-24T12:00:00Z"), 3);
    assert_eq!(
        times(&next),
        [
            "2026-10-25T00:30:00Z", // 02:30 CEST, the first of the two
            "2026-10-26T01:30:00Z", // the next day's 02:30 CET: the second 02:30 CET of the 25th does not fire
            "2026-10-27T01:30:00Z",
        ]
    );
}

#[test]
fn an_interval_pattern_fires_in_both_copies_of_the_repeated_hour() {
    let t = timing(&format!("{BASE}cron: \"*/30 * * * *\"\ntimezone: Europe/Berlin\n"));
    let next = t.upcoming(utc("2026-10-24T23:45:00Z"), 5); // 01:45 CEST
    assert_eq!(
        times(&next),
        [
            "2026-10-25T00:00:00Z", // 02:00 CEST
            "2026-10-25T00:30:00Z", // 02:30 CEST
            "2026-10-25T01:00:00Z", // 02:00 CET
            "2026-10-25T01:30:00Z", // 02:30 CET
            "2026-10-25T02:00:00Z", // 03:00 CET
        ]
    );
}

#[test]
fn on_time_occurrences_fire_each_once_in_order() {
    let t = timing(&format!("{BASE}every: 10s\n"));
    let cursor = utc("2026-12-06T10:00:00Z");
    assert_eq!(due(&t, cursor, utc("2026-12-06T10:00:09Z"), Misfire::Skip, DEFAULT_GRACE), []);
    let found = due(&t, cursor, utc("2026-12-06T10:00:35Z"), Misfire::Skip, DEFAULT_GRACE);
    assert_eq!(
        found,
        [
            Due::Fire(utc("2026-12-06T10:00:10Z")),
            Due::Fire(utc("2026-12-06T10:00:20Z")),
            Due::Fire(utc("2026-12-06T10:00:30Z"))
        ],
        "a failover shorter than a minute fires what fell due, late"
    );
}

#[test]
fn occurrences_missed_for_longer_are_skipped_or_the_latest_run_once() {
    let t = timing(&format!("{BASE}every: 1m\n"));
    let cursor = utc("2026-12-06T10:00:00Z");
    let now = utc("2026-12-06T10:10:30Z");
    let skipped = due(&t, cursor, now, Misfire::Skip, DEFAULT_GRACE);
    let missed = Due::Missed {
        first: utc("2026-12-06T10:01:00Z"),
        last: utc("2026-12-06T10:09:00Z"),
        count: 9,
        at_least: false,
    };
    assert_eq!(skipped, [missed, Due::Fire(utc("2026-12-06T10:10:00Z"))], "10:10 is on time");

    let ran = due(&t, cursor, now, Misfire::RunOnce, DEFAULT_GRACE);
    assert_eq!(
        ran,
        [
            Due::Missed {
                first: utc("2026-12-06T10:01:00Z"),
                last: utc("2026-12-06T10:08:00Z"),
                count: 8,
                at_least: false
            },
            Due::Fire(utc("2026-12-06T10:09:00Z")),
            Due::Fire(utc("2026-12-06T10:10:00Z")),
        ]
    );
    let beyond_grace = due(&t, cursor, now, Misfire::RunOnce, Duration::from_secs(60));
    assert_eq!(
        beyond_grace[0],
        Due::Missed {
            first: utc("2026-12-06T10:01:00Z"),
            last: utc("2026-12-06T10:09:00Z"),
            count: 9,
            at_least: false
        }
    );

    let once = timing(&format!("{BASE}at: 2026-12-06T10:00:00Z\n"));
    let late = utc("2026-12-06T10:30:00Z");
    assert_eq!(
        due(&once, utc("2026-12-06T09:00:00Z"), late, Misfire::RunOnce, DEFAULT_GRACE),
        [Due::Fire(utc("2026-12-06T10:00:00Z"))]
    );
    let skipped = due(&once, utc("2026-12-06T09:00:00Z"), late, Misfire::Skip, DEFAULT_GRACE);
    assert!(matches!(skipped.as_slice(), [Due::Missed { count: 1, .. }]), "{skipped:?}");
}

#[test]
fn a_month_away_is_one_bounded_jump() {
    let t = timing(&format!("{BASE}every: 1s\n"));
    let cursor = utc("2026-11-01T00:00:00Z");
    let now = utc("2026-12-01T00:00:00Z");
    let clock = std::time::Instant::now();
    let found = due(&t, cursor, now, Misfire::Skip, DEFAULT_GRACE);
    let Some(Due::Missed { first, last, at_least, .. }) = found.first() else { panic!("{found:?}") };
    assert!(*at_least);
    assert_eq!(*first, utc("2026-11-01T00:00:01Z"));
    assert_eq!(*last, utc("2026-11-30T23:59:00Z"), "the last one more than a minute late");
    assert!(found.iter().filter(|d| matches!(d, Due::Fire(_))).count() <= 60);
    // Not a timing assertion: the walk is bounded by steps, this only keeps a runaway loop from passing.
    assert!(clock.elapsed() < std::time::Duration::from_secs(30));
}

#[test]
fn the_committed_schema_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schema/schedule.schema.json");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != json_schema() {
        if std::env::var_os("KANADE_BLESS").is_some() {
            std::fs::write(&path, json_schema()).unwrap();
        } else {
            panic!(
                "schema/schedule.schema.json is stale: run `KANADE_BLESS=1 cargo test -p kanade-shared` and commit it"
            );
        }
    }
}

proptest::proptest! {
    #[test]
    fn occurrences_only_move_forward(minute in 0u32..60, hour in 0u32..24, secs in 0i64..(400 * 86_400), tz in 0usize..4) {
        let zone = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"][tz];
        let t = timing(&format!("{BASE}cron: \"{minute} {hour} * * *\"\ntimezone: {zone}\n"));
        let start = Utc.timestamp_opt(1_767_225_600 + secs, 0).unwrap();
        let next = t.upcoming(start, 4);
        proptest::prop_assert_eq!(next.len(), 4);
        proptest::prop_assert!(next[0] > start);
        for pair in next.windows(2) {
            proptest::prop_assert!(pair[1] > pair[0]);
            // A daily pattern never fires twice within 20 hours, even across a time change.
            proptest::prop_assert!(pair[1] - pair[0] >= chrono::Duration::hours(20), "{:?}", pair);
        }
    }
}
