//! Parser of dpkg's database of installed packages, `/var/lib/dpkg/status`: RFC 822-style stanzas, one per
//! package dpkg knows of, installed or not.

use kanade_shared::inventory::Software;

/// The fields of one stanza this parser needs.
#[derive(Debug, Default)]
struct Stanza<'a> {
    package: &'a str,
    status: &'a str,
    architecture: &'a str,
    version: &'a str,
    maintainer: &'a str,
}

impl<'a> Stanza<'a> {
    fn set(&mut self, key: &str, value: &'a str) {
        // dpkg's field names are case-insensitive.
        let slot = match key.to_ascii_lowercase().as_str() {
            "package" => &mut self.package,
            "status" => &mut self.status,
            "architecture" => &mut self.architecture,
            "version" => &mut self.version,
            "maintainer" => &mut self.maintainer,
            _ => return,
        };
        *slot = value;
    }

    /// The stanza as an installed package, or `None` when dpkg does not hold it as installed.
    fn into_software(self) -> Option<Software> {
        if self.package.is_empty() || !installed(self.status) {
            return None;
        }
        let id = if self.architecture.is_empty() {
            self.package.to_owned()
        } else {
            format!("{}:{}", self.package, self.architecture)
        };
        Some(Software {
            source: "dpkg".into(),
            id,
            name: self.package.to_owned(),
            version: self.version.to_owned(),
            publisher: publisher(self.maintainer),
            arch: self.architecture.to_owned(),
            scope: "machine".into(),
            ..Default::default()
        })
    }
}

/// Whether a `Status: <want> <flag> <state>` line says the package is on disk and configured. The first two words
/// are what the administrator asked for (`hold`, `deinstall`) and whether dpkg needs a reinstall: a held package
/// or one marked for removal is still installed. Waiting for triggers is installed too; `config-files`,
/// `half-installed`, `unpacked` and `half-configured` are not.
fn installed(status: &str) -> bool {
    let state = status.split_whitespace().nth(2);
    matches!(state, Some("installed" | "triggers-awaited" | "triggers-pending"))
}

/// `Maintainer: Name <email>` without the address (the address alone when there is no name).
fn publisher(maintainer: &str) -> String {
    let maintainer = maintainer.trim();
    match maintainer.split_once('<') {
        Some((name, _)) if !name.trim().is_empty() => name.trim().to_owned(),
        Some((_, address)) => address.trim_end().trim_end_matches('>').trim().to_owned(),
        None => maintainer.to_owned(),
    }
}

/// The installed packages of a dpkg `status` file, in file order (the `dpkg` source, `machine` scope, id
/// `package:arch`); `install_date` is left for the caller, since dpkg does not record one.
pub fn dpkg_status(text: &str) -> Vec<Software> {
    let mut items = Vec::new();
    let mut stanza = Stanza::default();
    for line in text.lines() {
        if line.trim().is_empty() {
            items.extend(std::mem::take(&mut stanza).into_software());
            continue;
        }
        // Continuation lines (a description, conffiles) belong to a field this parser does not need.
        if line.starts_with([' ', '\t']) {
            continue;
        }
        if let Some((key, value)) = line.split_once(':') {
            stanza.set(key.trim(), value.trim());
        }
    }
    items.extend(stanza.into_software());
    items
}

/// The files under `/var/lib/dpkg/info` whose modification time tells when `package` was last installed or
/// upgraded: `<package>:<arch>.list` for a multi-arch package, else `<package>.list`. Empty when the name is not
/// one dpkg allows, so a hostile status file cannot point the caller elsewhere.
pub fn dpkg_list_files(package: &str, arch: &str) -> Vec<String> {
    let valid_package = !package.is_empty()
        && !package.starts_with('.')
        && package.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
    let valid_arch = arch.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid_package || !valid_arch {
        return Vec::new();
    }
    let mut files = Vec::new();
    if !arch.is_empty() {
        files.push(format!("{package}:{arch}.list"));
    }
    files.push(format!("{package}.list"));
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "\
Package: adduser
Status: install ok installed
Maintainer: Debian Adduser Developers <adduser@packages.debian.org>
Architecture: all
Version: 3.134
Conffiles:
 /etc/adduser.conf cc3493ecd2d09837ffdcc3e25fdfff18
Description: add and remove users and groups
 Package: not-a-package
 .

Package: libc6
Status: hold ok installed
Installed-Size: 12000
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
Architecture: amd64
Multi-Arch: same
Version: 2.36-9+deb12u4
Homepage: https://www.gnu.org/software/libc/libc.html

Package: libc6
Status: install ok installed
Architecture: i386
Version: 2.36-9+deb12u4
Maintainer: <only@address.example>

Package: removed
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0

Package: broken
Status: install reinstreq half-installed
Version: 0.1

package: lower-case
status: install ok triggers-pending
version: 2
";

    #[test]
    fn installed_packages_are_listed_with_their_arch_and_maintainer() {
        let items = dpkg_status(STATUS);
        let ids: Vec<_> = items.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["adduser:all", "libc6:amd64", "libc6:i386", "lower-case"]);
        assert_eq!(
            items[1],
            Software {
                source: "dpkg".into(),
                id: "libc6:amd64".into(),
                name: "libc6".into(),
                version: "2.36-9+deb12u4".into(),
                publisher: "GNU Libc Maintainers".into(),
                arch: "amd64".into(),
                scope: "machine".into(),
                ..Default::default()
            }
        );
        assert_eq!(items[2].publisher, "only@address.example");
        assert_eq!(items[3].version, "2");
    }

    #[test]
    fn hostile_status_files_give_what_can_be_read() {
        assert!(dpkg_status("").is_empty());
        assert!(dpkg_status(&"x".repeat(1 << 20)).is_empty());
        assert!(dpkg_status("\n\n:\n: :\nStatus\n").is_empty());
        // A truncated last stanza without a version is still a package.
        let truncated = dpkg_status("Package: p\r\nStatus: install ok installed\r\nArchitecture: amd64\r\nVers");
        assert_eq!((truncated[0].id.as_str(), truncated[0].version.as_str()), ("p:amd64", ""));
        // Two stanzas run together keep the later values; nothing panics.
        let merged = dpkg_status("Package: a\nPackage: b\nStatus: install ok installed\n");
        assert_eq!(merged[0].name, "b");
        let lossy = String::from_utf8_lossy(b"Package: caf\xe9\nStatus: install ok installed\n").into_owned();
        assert_eq!(dpkg_status(&lossy)[0].name, "caf\u{FFFD}");
        let long = format!("Package: long\nStatus: install ok installed\nVersion: {}\n", "9".repeat(1 << 20));
        assert_eq!(dpkg_status(&long)[0].version.len(), 1 << 20);
    }

    #[test]
    fn list_files_are_named_only_for_valid_package_names() {
        assert_eq!(dpkg_list_files("libc6", "amd64"), ["libc6:amd64.list", "libc6.list"]);
        assert_eq!(dpkg_list_files("g++-12", ""), ["g++-12.list"]);
        assert!(dpkg_list_files("../../etc/shadow", "amd64").is_empty());
        assert!(dpkg_list_files("x", "a/b").is_empty());
        assert!(dpkg_list_files("", "amd64").is_empty());
        assert!(dpkg_list_files(".hidden", "").is_empty());
    }
}
