//! Parser of `snap list --unicode=never --color=never`: a table of the installed snaps under a header line.

use kanade_shared::inventory::Software;

/// The snaps of `snap list` output (the `snap` source, `machine` scope, id the snap's name). Rows are read only
/// after the `Name Version Rev Tracking Publisher Notes` header, so a message such as "No snaps are installed
/// yet" is not taken for a snap. The publisher loses the marks snap adds to verified (`**`, `✓`) and starred
/// (`*`, `✪`) ones; `-` (none) becomes empty.
pub fn snap_list(text: &str) -> Vec<Software> {
    let mut lines = text.lines();
    if !lines.by_ref().any(|line| line.split_whitespace().take(3).eq(["Name", "Version", "Rev"])) {
        return Vec::new();
    }
    lines.filter_map(snap_row).collect()
}

fn snap_row(line: &str) -> Option<Software> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [name, version, _rev, _tracking, publisher, _notes] = fields.as_slice() else { return None };
    let publisher = publisher.trim_end_matches(['*', '✓', '✪']);
    Some(Software {
        source: "snap".into(),
        id: (*name).to_owned(),
        name: (*name).to_owned(),
        version: (*version).to_owned(),
        publisher: if publisher == "-" { String::new() } else { publisher.to_owned() },
        scope: "machine".into(),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snaps_are_read_from_the_table() {
        let text = "\
Name     Version   Rev    Tracking       Publisher    Notes
core22   20240111  1122   latest/stable  canonical**  base
firefox  122.0-2   3728   latest/stable  mozilla✓     -
mine     0.1       x1     -              -            -
broken row
";
        let items = snap_list(text);
        assert_eq!(
            items[0],
            Software {
                source: "snap".into(),
                id: "core22".into(),
                name: "core22".into(),
                version: "20240111".into(),
                publisher: "canonical".into(),
                scope: "machine".into(),
                ..Default::default()
            }
        );
        assert_eq!(items[1].publisher, "mozilla");
        assert_eq!((items[2].name.as_str(), items[2].publisher.as_str()), ("mine", ""));
        assert_eq!(items.len(), 3);
    }

    #[test]
    fn output_without_a_table_has_no_snaps() {
        assert!(snap_list("").is_empty());
        assert!(snap_list("No snaps are installed yet. Try 'snap install hello-world'.\n").is_empty());
        assert!(snap_list(&"x ".repeat(1 << 19)).is_empty());
        assert!(snap_list("Name Version Rev Tracking Publisher Notes").is_empty());
    }
}
