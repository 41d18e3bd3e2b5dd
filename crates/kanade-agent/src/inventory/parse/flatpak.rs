//! Parser of `flatpak list --columns=application,name,version,branch,arch,origin,installation`: one tab-separated
//! line per installed application or runtime.

use kanade_shared::inventory::Software;

/// The columns to ask `flatpak list` for, in the order [`flatpak_list`] reads them.
pub const FLATPAK_COLUMNS: &str = "--columns=application,name,version,branch,arch,origin,installation";

/// The apps and runtimes of `flatpak list` output (the `flatpak` source). The id is the installation and the ref
/// (`system:org.gimp.GIMP/x86_64/stable`), since one ref may be installed both system-wide and per user; the
/// version is the app's own, else its branch; the publisher is the remote it came from (`flathub`). The system
/// installation, and any other named one (configured system-wide), has scope `machine`; the `user` one has
/// `user_scope` (`user:<name>` of whoever ran flatpak). A header line, should flatpak print one, is no app id
/// and is skipped.
pub fn flatpak_list(text: &str, user_scope: &str) -> Vec<Software> {
    text.lines().filter_map(|line| flatpak_row(line, user_scope)).collect()
}

fn flatpak_row(line: &str, user_scope: &str) -> Option<Software> {
    let fields: Vec<&str> = line.split('\t').map(str::trim).collect();
    let [application, name, version, branch, arch, origin, installation] = fields.as_slice() else { return None };
    if application.is_empty() || !application.contains('.') || application.contains(char::is_whitespace) {
        return None;
    }
    Some(Software {
        source: "flatpak".into(),
        id: format!("{installation}:{application}/{arch}/{branch}"),
        name: if name.is_empty() { application } else { name }.to_string(),
        version: if version.is_empty() { branch } else { version }.to_string(),
        publisher: (*origin).to_owned(),
        arch: (*arch).to_owned(),
        scope: if *installation == "user" { user_scope.to_owned() } else { "machine".to_owned() },
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apps_and_runtimes_are_listed_with_their_installation() {
        let text = "Application ID\tName\tVersion\tBranch\tArch\tOrigin\tInstallation\n\
                    org.gimp.GIMP\tGNU Image Manipulation Program\t2.10.36\tstable\tx86_64\tflathub\tsystem\n\
                    org.freedesktop.Platform\tFreedesktop Platform\t\t23.08\tx86_64\tflathub\tuser\n\
                    org.gimp.GIMP\t\t\tstable\tx86_64\tflathub\tuser\n\
                    com.example.Extra\tExtra\t1\tstable\taarch64\tcorp\tcorp-installation\n\
                    short\tline\n";
        let items = flatpak_list(text, "user:root");
        assert_eq!(
            items[0],
            Software {
                source: "flatpak".into(),
                id: "system:org.gimp.GIMP/x86_64/stable".into(),
                name: "GNU Image Manipulation Program".into(),
                version: "2.10.36".into(),
                publisher: "flathub".into(),
                arch: "x86_64".into(),
                scope: "machine".into(),
                ..Default::default()
            }
        );
        assert_eq!((items[1].version.as_str(), items[1].scope.as_str()), ("23.08", "user:root"));
        assert_eq!(
            (items[2].name.as_str(), items[2].id.as_str()),
            ("org.gimp.GIMP", "user:org.gimp.GIMP/x86_64/stable")
        );
        assert_eq!(items[3].scope, "machine");
        assert_eq!(items.len(), 4);
    }

    #[test]
    fn hostile_output_gives_what_can_be_read() {
        assert!(flatpak_list("", "user").is_empty());
        assert!(flatpak_list(&"\t".repeat(1 << 20), "user").is_empty());
        assert!(flatpak_list("a b.c\t\t\t\t\t\t\n", "user").is_empty());
        assert_eq!(flatpak_list("a.b\t\t\t\t\t\t\n", "user")[0].id, ":a.b//");
    }
}
