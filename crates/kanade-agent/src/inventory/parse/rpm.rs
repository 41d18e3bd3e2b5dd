//! Parser of what `rpm -qa --queryformat` prints with [`RPM_QUERY_FORMAT`]: one record per installed package,
//! fields and records split by ASCII's unit and record separators, which no package header can contain in a way
//! that matters (a field holding one only costs that record).

use std::collections::BTreeMap;

use chrono::DateTime;
use kanade_shared::inventory::Software;

/// Between two fields of a record.
const FIELD: char = '\u{1f}';
/// After each record.
const RECORD: char = '\u{1e}';

/// The `--queryformat` to give `rpm -qa`: name, epoch, version, release, arch, vendor, install time (seconds).
pub const RPM_QUERY_FORMAT: &str =
    "%{NAME}\u{1f}%{EPOCH}\u{1f}%{VERSION}\u{1f}%{RELEASE}\u{1f}%{ARCH}\u{1f}%{VENDOR}\u{1f}%{INSTALLTIME}\u{1e}";

/// The packages of `rpm -qa --queryformat RPM_QUERY_FORMAT` output (the `rpm` source, `machine` scope, id
/// `name.arch`, version `[epoch:]version-release`). rpm's imported signing keys (`gpg-pubkey`) are not software
/// and are left out. Packages installed in several versions at once (kernels) get the version in their id, so
/// each stays its own item.
pub fn rpm_query(text: &str) -> Vec<Software> {
    let mut items: Vec<Software> = text.split(RECORD).filter_map(rpm_record).collect();
    let mut counts = BTreeMap::new();
    for item in &items {
        *counts.entry(item.id.clone()).or_insert(0_usize) += 1;
    }
    for item in &mut items {
        if counts.get(&item.id).is_some_and(|&n| n > 1) {
            item.id = match item.arch.as_str() {
                "" => format!("{}-{}", item.name, item.version),
                arch => format!("{}-{}.{arch}", item.name, item.version),
            };
        }
    }
    items
}

/// rpm prints `(none)` for a tag a package does not have.
fn tag(value: &str) -> &str {
    match value.trim() {
        "(none)" => "",
        value => value,
    }
}

fn rpm_record(record: &str) -> Option<Software> {
    let fields: Vec<&str> = record.split(FIELD).map(tag).collect();
    let [name, epoch, version, release, arch, vendor, install_time] = fields.as_slice() else { return None };
    if name.is_empty() || *name == "gpg-pubkey" {
        return None;
    }
    let mut full_version = String::new();
    if !epoch.is_empty() && *epoch != "0" {
        full_version.push_str(epoch);
        full_version.push(':');
    }
    full_version.push_str(version);
    if !release.is_empty() {
        full_version.push('-');
        full_version.push_str(release);
    }
    let install_date = install_time
        .parse::<i64>()
        .ok()
        .filter(|&secs| secs > 0)
        .and_then(|secs| DateTime::from_timestamp(secs, 0))
        .map(|t| t.format("%Y-%m-%d").to_string());
    Some(Software {
        source: "rpm".into(),
        id: if arch.is_empty() { (*name).to_owned() } else { format!("{name}.{arch}") },
        name: (*name).to_owned(),
        version: full_version,
        publisher: (*vendor).to_owned(),
        install_date: install_date.unwrap_or_default(),
        arch: (*arch).to_owned(),
        scope: "machine".into(),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fields: [&str; 7]) -> String {
        format!("{}{RECORD}", fields.join(&FIELD.to_string()))
    }

    #[test]
    fn packages_have_epoch_version_release_and_an_install_date() {
        let text = [
            record([
                "bash",
                "(none)",
                "5.1.8",
                "9.el9",
                "x86_64",
                "Rocky Enterprise Software Foundation",
                "1700000000",
            ]),
            record(["openssl", "1", "3.0.7", "27.el9", "x86_64", "(none)", "(none)"]),
            record(["gpg-pubkey", "(none)", "350d275d", "6279464b", "(none)", "(none)", "1700000000"]),
            record(["tzdata", "0", "2024a", "1.el9", "noarch", "Rocky", "1700000000"]),
        ]
        .concat();
        let items = rpm_query(&text);
        assert_eq!(
            items[0],
            Software {
                source: "rpm".into(),
                id: "bash.x86_64".into(),
                name: "bash".into(),
                version: "5.1.8-9.el9".into(),
                publisher: "Rocky Enterprise Software Foundation".into(),
                install_date: "2023-11-14".into(),
                arch: "x86_64".into(),
                scope: "machine".into(),
                ..Default::default()
            }
        );
        assert_eq!((items[1].version.as_str(), items[1].publisher.as_str()), ("1:3.0.7-27.el9", ""));
        assert_eq!(items[1].install_date, "");
        assert_eq!(items[2].version, "2024a-1.el9", "epoch 0 is not shown");
        assert_eq!(items.len(), 3, "signing keys are not software");
    }

    #[test]
    fn packages_installed_in_several_versions_stay_apart() {
        let text = [
            record(["kernel", "(none)", "5.14.0", "1.el9", "x86_64", "", "1"]),
            record(["kernel", "(none)", "5.14.0", "2.el9", "x86_64", "", "2"]),
            record(["bash", "(none)", "5.1", "1", "x86_64", "", "2"]),
        ]
        .concat();
        let ids: Vec<_> = rpm_query(&text).into_iter().map(|s| s.id).collect();
        assert_eq!(ids, ["kernel-5.14.0-1.el9.x86_64", "kernel-5.14.0-2.el9.x86_64", "bash.x86_64"]);
    }

    #[test]
    fn hostile_output_gives_what_can_be_read() {
        assert!(rpm_query("").is_empty());
        assert!(rpm_query("\n").is_empty());
        assert!(rpm_query(&"x".repeat(1 << 20)).is_empty());
        assert!(rpm_query("a\u{1f}b\u{1e}c\u{1f}\u{1f}\u{1f}\u{1f}\u{1f}\u{1f}\u{1f}\u{1f}\u{1e}").is_empty());
        let truncated = format!("{}bash\u{1f}(none)\u{1f}5", record(["zsh", "", "5.9", "", "", "", "x"]));
        let items = rpm_query(&truncated);
        assert_eq!((items.len(), items[0].id.as_str(), items[0].version.as_str()), (1, "zsh", "5.9"));
        assert!(rpm_query(&record(["p", "", "1", "", "", "", "99999999999999999"]))[0].install_date.is_empty());
    }
}
