//! Version comparison and ranges for inventory queries ("which PCs have openssl below 3.0"): one total order of
//! version strings per packaging scheme ([`compare`]) and a parsed range of clauses ([`VersionRange`]) checked
//! against it.
//!
//! A version's [`Scheme`] follows from the inventory item's `source`: dpkg and rpm each have their own, exactly
//! specified order, and everything else (registry, msi, appx, snap, flatpak, macOS bundles, job facts) gets one
//! documented rule that suits Windows product versions. Comparing and matching take any string — empty, garbage,
//! megabytes long — without panicking, and without allocating, since a query checks one range against every
//! installed copy of a product in the fleet (some 10,000 versions).
//!
//! dpkg's algorithm is written here by hand: the crate that implements it (`debversion`) pulls in regex, num-bigint
//! and chrono, allocates a parsed `Version` per string and refuses malformed ones, while the algorithm is forty
//! lines. rpm's segment comparison comes from `rpm-version` (MIT, no dependencies, borrowed strings); only the
//! splitting of `epoch:version-release` is done here, because that crate splits at the first `-` where rpm splits at
//! the last.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// Longest range accepted, in characters.
pub const MAX_RANGE_CHARS: usize = 256;
/// Most clauses one range may have.
pub const MAX_RANGE_CLAUSES: usize = 8;

/// How a source's versions compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Debian's order, as `dpkg --compare-versions` has it: `[epoch:]upstream[-revision]`, `~` before anything.
    Dpkg,
    /// rpm's order, as rpm 4.15+ has it: `[epoch:]version[-release]`, `~` before anything, `^` after the end.
    Rpm,
    /// Digit runs and letter runs, rpm-like, ignoring case and trailing zeros; see [`compare`].
    Generic,
}

impl Scheme {
    /// The scheme of an inventory item's `source`: "dpkg" -> Dpkg, "rpm" -> Rpm, everything else (registry, msi,
    /// appx, snap, flatpak, app, job facts) -> Generic. Case is ignored, as a hand-written job fact may not keep it.
    pub fn of_source(source: &str) -> Scheme {
        if source.eq_ignore_ascii_case("dpkg") {
            Scheme::Dpkg
        } else if source.eq_ignore_ascii_case("rpm") {
            Scheme::Rpm
        } else {
            Scheme::Generic
        }
    }
}

/// Total order of two version strings under `scheme` (never panics, any input, incl. empty and garbage).
/// Leading and trailing whitespace is ignored in every scheme.
///
/// - [`Scheme::Dpkg`]: Debian policy 5.6.12 exactly. The epoch is the number before the first `:` (none means 0),
///   the revision what follows the last `-` (none means empty); upstream and revision are compared in turns of
///   non-digit parts, character by character with `~` before the end of the string, the end before letters and
///   letters before everything else, and digit runs as numbers of any length. Strings dpkg would refuse still get
///   a place: a `:` after something that is not a number is part of the upstream version, and a byte outside ASCII
///   sorts after every ASCII symbol.
/// - [`Scheme::Rpm`]: rpm's `rpmverCmp`. The epoch is the leading digits when a `:` follows them (none means 0),
///   the release what follows the last `-`; epoch, version and release are each compared by `rpmvercmp` (runs of
///   digits and of ASCII letters, everything else a separator; a number beats letters; `~` sorts before anything
///   including the end, `^` after the end but before anything else). A version without a release sorts before
///   the same version with any release.
/// - [`Scheme::Generic`]: the version is read as digit runs and ASCII letter runs, everything else being a
///   separator (`10.0.19041.3803`, `1.2.3 build 45`, `14.5 (23F79)`). Trailing runs that are all zeros are dropped
///   first, so `1.2` == `1.2.0` == `1.2.0.0` as Windows has it. What is left is compared run by run like rpm does:
///   numbers as numbers, letters ignoring case, a number beating letters, and a version with runs left over after
///   the other ends is the greater (so `1.1.1w` > `1.1.1`, and also `2.0.0-beta.1` > `2.0.0`: no pre-release
///   markers are recognised). An empty version equals `0`.
pub fn compare(scheme: Scheme, a: &str, b: &str) -> Ordering {
    let (a, b) = (a.trim(), b.trim());
    match scheme {
        Scheme::Dpkg => dpkg_compare(a, b),
        Scheme::Rpm => rpm_compare(a, b),
        Scheme::Generic => generic_compare(a.as_bytes(), b.as_bytes()),
    }
}

/// Compares two runs of ASCII digits as the numbers they write, however long: without leading zeros, the longer
/// is the larger, and of equal lengths the first differing digit decides.
fn compare_digit_runs(a: &[u8], b: &[u8]) -> Ordering {
    let significant = |run: &[u8]| -> usize { run.iter().position(|&d| d != b'0').unwrap_or(run.len()) };
    let (a, b) = (&a[significant(a)..], &b[significant(b)..]);
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Splits the leading run of ASCII digits off `s`.
fn split_digits(s: &[u8]) -> (&[u8], &[u8]) {
    s.split_at(s.iter().position(|c| !c.is_ascii_digit()).unwrap_or(s.len()))
}

/// A Debian version split as dpkg's `parseversion` splits it, borrowed from the string.
struct DebianVersion<'a> {
    /// ASCII digits, possibly empty (meaning 0).
    epoch: &'a [u8],
    upstream: &'a [u8],
    revision: &'a [u8],
}

impl<'a> DebianVersion<'a> {
    fn split(version: &'a str) -> Self {
        // dpkg refuses a version whose text before the first `:` is not a number; keeping that `:` in the upstream
        // version instead gives such a string a place in the order all the same.
        let (epoch, rest) = match version.split_once(':') {
            Some((epoch, rest)) if !epoch.is_empty() && epoch.bytes().all(|b| b.is_ascii_digit()) => (epoch, rest),
            _ => ("", version),
        };
        let (upstream, revision) = rest.rsplit_once('-').unwrap_or((rest, ""));
        Self { epoch: epoch.as_bytes(), upstream: upstream.as_bytes(), revision: revision.as_bytes() }
    }
}

fn dpkg_compare(a: &str, b: &str) -> Ordering {
    let (a, b) = (DebianVersion::split(a), DebianVersion::split(b));
    compare_digit_runs(a.epoch, b.epoch)
        .then_with(|| dpkg_compare_part(a.upstream, b.upstream))
        .then_with(|| dpkg_compare_part(a.revision, b.revision))
}

/// Weight of the byte at the head of a non-digit part in dpkg's comparison (`None` is the end of the string). A
/// digit weighs as much as the end, since it ends the non-digit part. Non-digit bytes weigh differently from one
/// another, so equal weights off the end mean equal bytes.
fn dpkg_weight(byte: Option<u8>) -> i32 {
    match byte {
        None => 0,
        Some(b) if b.is_ascii_digit() => 0,
        Some(b'~') => -1,
        Some(b) if b.is_ascii_alphabetic() => i32::from(b),
        // dpkg adds 256 to a C `char`, which is signed on x86, so there bytes over 127 land between the letters and
        // the ASCII symbols; dpkg refuses such versions anyway, and here they simply follow every ASCII symbol.
        Some(b) => i32::from(b) + 256,
    }
}

/// dpkg's `verrevcmp`: an upstream version or a revision against another, in turns of a non-digit part compared
/// byte by byte and a digit run compared as a number.
fn dpkg_compare_part(mut a: &[u8], mut b: &[u8]) -> Ordering {
    let starts_non_digit = |s: &[u8]| s.first().is_some_and(|c| !c.is_ascii_digit());
    while !a.is_empty() || !b.is_empty() {
        while starts_non_digit(a) || starts_non_digit(b) {
            let (weight_a, weight_b) = (dpkg_weight(a.first().copied()), dpkg_weight(b.first().copied()));
            if weight_a != weight_b {
                return weight_a.cmp(&weight_b);
            }
            a = a.get(1..).unwrap_or_default();
            b = b.get(1..).unwrap_or_default();
        }
        let ((run_a, rest_a), (run_b, rest_b)) = (split_digits(a), split_digits(b));
        let by_number = compare_digit_runs(run_a, run_b);
        if by_number != Ordering::Equal {
            return by_number;
        }
        (a, b) = (rest_a, rest_b);
    }
    Ordering::Equal
}

/// An rpm `[epoch:]version[-release]` split as rpm's `parseEVR` splits it, borrowed from the string.
struct RpmEvr<'a> {
    /// ASCII digits, possibly empty (meaning 0).
    epoch: &'a str,
    version: &'a str,
    /// `None` without a `-`: rpm tells "no release" from an empty one, and sorts it first.
    release: Option<&'a str>,
}

impl<'a> RpmEvr<'a> {
    fn split(evr: &'a str) -> Self {
        let digits = evr.bytes().take_while(u8::is_ascii_digit).count();
        let (epoch, rest) = match evr.as_bytes().get(digits) {
            Some(b':') => (&evr[..digits], &evr[digits + 1..]),
            _ => ("", evr),
        };
        match rest.rsplit_once('-') {
            Some((version, release)) => Self { epoch, version, release: Some(release) },
            None => Self { epoch, version: rest, release: None },
        }
    }

    /// Epoch, then version; the release is left to the caller, as rpm compares it in two ways.
    fn compare_epoch_version(&self, other: &Self) -> Ordering {
        let or_zero = |epoch: &'a str| if epoch.is_empty() { "0" } else { epoch };
        rpmvercmp(or_zero(self.epoch), or_zero(other.epoch)).then_with(|| rpmvercmp(self.version, other.version))
    }
}

/// rpm's `rpmvercmp` on one part of an EVR. `rpm-version` exposes it only through the order of its `Evr`, so the
/// part is put in as the version of two EVRs with the same (empty) epoch and release.
fn rpmvercmp(a: &str, b: &str) -> Ordering {
    rpm_version::Evr::new("", a, "").cmp(&rpm_version::Evr::new("", b, ""))
}

fn rpm_compare(a: &str, b: &str) -> Ordering {
    let (a, b) = (RpmEvr::split(a), RpmEvr::split(b));
    a.compare_epoch_version(&b).then_with(|| match (a.release, b.release) {
        (Some(release_a), Some(release_b)) => rpmvercmp(release_a, release_b),
        (release_a, release_b) => release_a.is_some().cmp(&release_b.is_some()),
    })
}

/// `version` against a range's `bound` the way rpm resolves `Requires: foo >= 1.0`: when either has no release (or
/// an empty one), releases are not compared, so `=1.0` matches `1.0-5.el9` and `<1.0` does not.
fn rpm_compare_to_bound(version: &str, bound: &str) -> Ordering {
    let (version, bound) = (RpmEvr::split(version.trim()), RpmEvr::split(bound.trim()));
    version.compare_epoch_version(&bound).then_with(|| match (version.release, bound.release) {
        (Some(release_v), Some(release_b)) if !release_v.is_empty() && !release_b.is_empty() => {
            rpmvercmp(release_v, release_b)
        }
        _ => Ordering::Equal,
    })
}

/// One run of a generic version.
#[derive(Clone, Copy)]
enum GenericRun<'a> {
    Letters(&'a [u8]),
    Digits(&'a [u8]),
}

impl<'a> GenericRun<'a> {
    /// Takes the next run off the front of `rest`, skipping separators; `None` at the end.
    fn next(rest: &mut &'a [u8]) -> Option<Self> {
        let start = rest.iter().position(u8::is_ascii_alphanumeric)?;
        let tail = &rest[start..];
        let digits = tail[0].is_ascii_digit();
        let len = tail.iter().position(|c| c.is_ascii_digit() != digits || !c.is_ascii_alphanumeric());
        let (run, after) = tail.split_at(len.unwrap_or(tail.len()));
        *rest = after;
        Some(if digits { GenericRun::Digits(run) } else { GenericRun::Letters(run) })
    }

    fn is_zero(self) -> bool {
        matches!(self, GenericRun::Digits(run) if run.iter().all(|&d| d == b'0'))
    }

    fn compare(self, other: Self) -> Ordering {
        match (self, other) {
            (GenericRun::Digits(a), GenericRun::Digits(b)) => compare_digit_runs(a, b),
            (GenericRun::Letters(a), GenericRun::Letters(b)) => {
                a.iter().map(u8::to_ascii_lowercase).cmp(b.iter().map(u8::to_ascii_lowercase))
            }
            (GenericRun::Digits(_), GenericRun::Letters(_)) => Ordering::Greater,
            (GenericRun::Letters(_), GenericRun::Digits(_)) => Ordering::Less,
        }
    }
}

/// `version` without its trailing all-zero runs (and the separators between them), so `1.2.0.0` reads as `1.2`.
fn generic_significant(version: &[u8]) -> &[u8] {
    let mut rest = version;
    let mut end = 0;
    while let Some(run) = GenericRun::next(&mut rest) {
        if !run.is_zero() {
            end = version.len() - rest.len();
        }
    }
    &version[..end]
}

fn generic_compare(a: &[u8], b: &[u8]) -> Ordering {
    // Dropping the zero tail first (rather than treating a zero as equal to the end while walking) keeps the order
    // transitive: otherwise `1` == `1.0.0` and `1` < `1.0a` but `1.0.0` > `1.0a`.
    let (mut a, mut b) = (generic_significant(a), generic_significant(b));
    loop {
        match (GenericRun::next(&mut a), GenericRun::next(&mut b)) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(run_a), Some(run_b)) => {
                let order = run_a.compare(run_b);
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

/// A parsed range: comma-separated clauses, all of which must hold: `<2.0`, `<=2.0`, `>1`, `>=1.4.2,<1.5`,
/// `=1.2.3` (also `==`), `!=1.2`, and a bare `1.2.3` meaning `=`. Whitespace around clauses and operators is
/// allowed; a version is printable ASCII without whitespace, `,`, `<`, `>`, `=` or `!`.
///
/// Its [`Display`](fmt::Display) is the canonical form (`>= 1.4.2 , <1.5` prints as `>=1.4.2,<1.5`, `==1` and `1`
/// as `=1`), which parses back to an equal range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRange {
    clauses: Vec<Clause>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Clause {
    operator: Operator,
    version: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    Equal,
    NotEqual,
}

impl Operator {
    /// Longest spelling first, so `<=` is not read as `<` followed by a version starting with `=`.
    const SPELLINGS: [(&'static str, Operator); 7] = [
        ("<=", Operator::LessOrEqual),
        (">=", Operator::GreaterOrEqual),
        ("==", Operator::Equal),
        ("!=", Operator::NotEqual),
        ("<", Operator::Less),
        (">", Operator::Greater),
        ("=", Operator::Equal),
    ];

    /// Splits the operator off the front of a clause; `None` when it has none.
    fn split(clause: &str) -> (Option<Operator>, &str) {
        Self::SPELLINGS
            .iter()
            .find_map(|(spelling, operator)| clause.strip_prefix(spelling).map(|rest| (Some(*operator), rest)))
            .unwrap_or((None, clause))
    }

    fn canonical(self) -> &'static str {
        match self {
            Operator::Less => "<",
            Operator::LessOrEqual => "<=",
            Operator::Greater => ">",
            Operator::GreaterOrEqual => ">=",
            Operator::Equal => "=",
            Operator::NotEqual => "!=",
        }
    }

    /// Whether a version that compares `order` to the clause's version satisfies the clause.
    fn holds(self, order: Ordering) -> bool {
        match self {
            Operator::Less => order == Ordering::Less,
            Operator::LessOrEqual => order != Ordering::Greater,
            Operator::Greater => order == Ordering::Greater,
            Operator::GreaterOrEqual => order != Ordering::Less,
            Operator::Equal => order == Ordering::Equal,
            Operator::NotEqual => order != Ordering::Equal,
        }
    }
}

/// Why a version range was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("version range is empty")]
    Empty,
    #[error("version range is {chars} characters long, more than {MAX_RANGE_CHARS}")]
    TooLong { chars: usize },
    #[error("version range `{}` has {clauses} clauses, more than {MAX_RANGE_CLAUSES}", .range.escape_debug())]
    TooManyClauses { range: String, clauses: usize },
    #[error("version range `{}` has an empty clause", .range.escape_debug())]
    EmptyClause { range: String },
    #[error("clause `{clause}` has an operator but no version")]
    MissingVersion { clause: String },
    #[error(
        "version `{}` contains `{}`: a version is printable ASCII without whitespace, `,`, `<`, `>`, `=` or `!`",
        .version.escape_debug(),
        .character.escape_debug()
    )]
    InvalidCharacter { version: String, character: char },
}

/// Whether `c` may appear in a range's version. The operator characters are refused so that `<<1` or `=>1` is an
/// error rather than a clause about the version `<1`.
fn is_version_char(c: char) -> bool {
    c.is_ascii_graphic() && !matches!(c, ',' | '<' | '>' | '=' | '!')
}

impl VersionRange {
    /// Parses a range as an operator writes it in a query (`>=1.4.2,<1.5`), at most [`MAX_RANGE_CHARS`] characters
    /// and [`MAX_RANGE_CLAUSES`] clauses.
    pub fn parse(raw: &str) -> Result<VersionRange, RangeError> {
        let chars = raw.chars().count();
        if chars > MAX_RANGE_CHARS {
            return Err(RangeError::TooLong { chars });
        }
        let range = raw.trim();
        if range.is_empty() {
            return Err(RangeError::Empty);
        }
        let clauses = range.split(',').count();
        if clauses > MAX_RANGE_CLAUSES {
            return Err(RangeError::TooManyClauses { range: range.to_owned(), clauses });
        }
        let clauses = range.split(',').map(|clause| Clause::parse(clause, range)).collect::<Result<_, _>>()?;
        Ok(VersionRange { clauses })
    }

    /// Whether `version` satisfies every clause under `scheme`. Under [`Scheme::Rpm`] a clause whose version has no
    /// release ignores the installed version's release, as rpm does (`=1.0` matches `1.0-5.el9`); under
    /// [`Scheme::Dpkg`] the whole version counts, as dpkg has it (`<=3.0.2` does not match `3.0.2-1`).
    pub fn matches(&self, scheme: Scheme, version: &str) -> bool {
        self.clauses.iter().all(|clause| {
            let order = match scheme {
                Scheme::Rpm => rpm_compare_to_bound(version, &clause.version),
                Scheme::Dpkg | Scheme::Generic => compare(scheme, version, &clause.version),
            };
            clause.operator.holds(order)
        })
    }
}

impl Clause {
    /// Parses one clause of `range` (which is named in errors).
    fn parse(clause: &str, range: &str) -> Result<Clause, RangeError> {
        let clause = clause.trim();
        if clause.is_empty() {
            return Err(RangeError::EmptyClause { range: range.to_owned() });
        }
        let (operator, version) = Operator::split(clause);
        let version = version.trim();
        if version.is_empty() {
            return Err(RangeError::MissingVersion { clause: clause.to_owned() });
        }
        if let Some(character) = version.chars().find(|c| !is_version_char(*c)) {
            return Err(RangeError::InvalidCharacter { version: version.to_owned(), character });
        }
        Ok(Clause { operator: operator.unwrap_or(Operator::Equal), version: version.to_owned() })
    }
}

impl FromStr for VersionRange {
    type Err = RangeError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        VersionRange::parse(raw)
    }
}

impl fmt::Display for VersionRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, clause) in self.clauses.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}{}", clause.operator.canonical(), clause.version)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::cmp::Ordering::{Equal, Greater, Less};

    /// Asserts `compare(scheme, a, b) == expected`, and the reverse the other way round.
    #[track_caller]
    fn assert_order(scheme: Scheme, a: &str, b: &str, expected: Ordering) {
        assert_eq!(compare(scheme, a, b), expected, "{scheme:?}: `{a}` vs `{b}`");
        assert_eq!(compare(scheme, b, a), expected.reverse(), "{scheme:?}: `{b}` vs `{a}`");
    }

    /// Asserts that `versions` are in strictly increasing order under `scheme`, each pair of them.
    #[track_caller]
    fn assert_increasing(scheme: Scheme, versions: &[&str]) {
        for (i, a) in versions.iter().enumerate() {
            for b in &versions[i + 1..] {
                assert_order(scheme, a, b, Less);
            }
        }
    }

    #[test]
    fn scheme_of_source_knows_dpkg_and_rpm_and_calls_the_rest_generic() {
        assert_eq!(Scheme::of_source("dpkg"), Scheme::Dpkg);
        assert_eq!(Scheme::of_source("rpm"), Scheme::Rpm);
        assert_eq!(Scheme::of_source("RPM"), Scheme::Rpm);
        for source in ["registry", "msi", "appx", "snap", "flatpak", "app", "job", "", "dpkg ", "rpmx"] {
            assert_eq!(Scheme::of_source(source), Scheme::Generic, "{source}");
        }
    }

    #[test]
    fn dpkg_orders_the_debian_policy_and_brief_examples() {
        // Debian policy 5.6.12: `~~`, `~~a`, `~`, the empty part, `a`.
        assert_increasing(Scheme::Dpkg, &["1.0~~", "1.0~~a", "1.0~", "1.0", "1.0a"]);
        assert_order(Scheme::Dpkg, "1.0~rc1", "1.0", Less);
        assert_order(Scheme::Dpkg, "1:0.1", "2.0", Greater);
        assert_order(Scheme::Dpkg, "1.2-1", "1.2-1ubuntu1", Less);
        assert_order(Scheme::Dpkg, "2.30-1", "2.3-1", Greater);
        assert_order(Scheme::Dpkg, "1.0+dfsg-1", "1.0-1", Greater);
        // Letters before everything else that is not a digit, and `+` (43) before `.` (46).
        assert_increasing(Scheme::Dpkg, &["1.0a", "1.0+", "1.0."]);
        assert_order(Scheme::Dpkg, "1.0A", "1.0a", Less);
    }

    #[test]
    fn dpkg_splits_versions_as_its_test_suite_does() {
        // From dpkg's lib/dpkg/t/t-version.c: these all parse to the same version.
        for same in ["0", "0:0", "0:0-", "00:0", "0:00"] {
            assert_order(Scheme::Dpkg, same, "0", Equal);
        }
        assert_order(Scheme::Dpkg, "0:0-0", "0-0", Equal);
        assert_order(Scheme::Dpkg, "0:0.0-0.0", "0.0-0.0", Equal);
        assert_order(Scheme::Dpkg, "0:0-00", "0:00-0", Equal);
        assert_order(Scheme::Dpkg, "  \t0:0-1", "0:0-1\t  ", Equal);
        // Multiple hyphens: the revision is after the last one; multiple colons: the epoch is before the first.
        assert_order(Scheme::Dpkg, "0:0-0-0", "0:0-0-1", Less);
        assert_order(Scheme::Dpkg, "0:0-1-0", "0:0-0-9", Greater);
        assert_order(Scheme::Dpkg, "0:0:0-0", "0:0:1-0", Less);
        assert_order(Scheme::Dpkg, "1:0", "0:9", Greater);
        assert_order(Scheme::Dpkg, "10:0", "9:9", Greater);
        // A revision of zero is no revision.
        assert_order(Scheme::Dpkg, "1.0-0", "1.0", Equal);
        // A text before `:` that is not a number is upstream version (dpkg refuses it; it still gets a place), and
        // a letter sorts after the digit that ends the other non-digit part.
        assert_order(Scheme::Dpkg, "a:1", "1", Greater);
        assert_order(Scheme::Dpkg, "a:1", "b", Less);
    }

    #[test]
    fn dpkg_compares_long_digit_runs_as_numbers() {
        let big = "9".repeat(100);
        let bigger = format!("1{}", "0".repeat(100));
        assert_order(Scheme::Dpkg, &big, &bigger, Less);
        assert_order(Scheme::Dpkg, &format!("{big}:1"), &format!("{bigger}:0"), Less);
        assert_order(Scheme::Dpkg, &format!("000{big}"), &big, Equal);
        assert_order(Scheme::Dpkg, &format!("1.{big}-1"), &format!("1.{big}-2"), Less);
    }

    /// Pairs whose order is easy to get wrong; [`dpkg_agrees_with_dpkg_compare_versions`] asks dpkg about each.
    const DPKG_PAIRS: &[(&str, &str)] = &[
        ("1.0~rc1", "1.0"),
        ("1:0.1", "2.0"),
        ("1.2-1", "1.2-1ubuntu1"),
        ("2.30-1", "2.3-1"),
        ("1.0+dfsg-1", "1.0-1"),
        ("1.0~~", "1.0~~a"),
        ("1.0~~a", "1.0~"),
        ("1.0~", "1.0"),
        ("1.0", "1.0a"),
        ("1.0a", "1.0+"),
        ("1.0.1", "1.0+1"),
        ("1.0-1", "1.0.1-1"),
        ("0:1.0", "1.0"),
        ("00:1.0", "0:1.0"),
        ("1.0-0", "1.0"),
        ("1.00", "1.0"),
        ("1.0-1", "1.0-1.1"),
        ("1.0-1~bpo11+1", "1.0-1"),
        ("1.0-1+b1", "1.0-1"),
        ("2:1.0", "10:0.1"),
        ("1.0-a-1", "1.0-b"),
        ("1.0a", "1.0A"),
        ("1.0a1", "1.0.1"),
        ("9", "10"),
        ("0.9", "0.10"),
        ("1.2.3", "1.2.3.0"),
        ("20231010", "20231009"),
        ("123456789012345678901234567890", "123456789012345678901234567891"),
        ("0001", "1"),
        ("1.0+git20200101", "1.0+git20191231"),
        ("7.4.052-1ubuntu3", "7.4.052-1ubuntu3.1"),
        ("1:1.2.3~rc1-1", "1:1.2.3-0"),
        ("3.0.2-0ubuntu1.10", "3.0.2-0ubuntu1.9"),
        ("1.0~rc1~git", "1.0~rc1"),
        ("2.0.0~beta1+dfsg-2", "2.0.0~beta1-2"),
        ("5.10.0-28", "5.10.0-3"),
        ("1.2-3-4", "1.2-3"),
        ("1:0", "0:99"),
        ("0~", "0"),
        ("1.0.0", "1.0.0."),
        ("2.36-9+deb12u4", "2.36-9+deb12u10"),
        ("1.0~alpha", "1.0~beta"),
        ("1.0-1", "1.0-01"),
        ("4.18.0+dfsg-1+deb12u1", "4.18.0-1"),
    ];

    /// What `dpkg --compare-versions a <relation> b` says; panics when dpkg cannot be run or calls a pair invalid.
    fn dpkg_says(a: &str, relation: &str, b: &str) -> bool {
        let status = std::process::Command::new("dpkg")
            .args(["--compare-versions", a, relation, b])
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot run `dpkg` ({err}): this test checks the dpkg order against dpkg itself and needs a \
                     Debian machine with dpkg on PATH, as CI has"
                )
            });
        match status.code() {
            Some(0) => true,
            Some(1) => false,
            other => panic!("`dpkg --compare-versions {a} {relation} {b}` failed with {other:?}: fix the pair"),
        }
    }

    #[test]
    fn dpkg_agrees_with_dpkg_compare_versions() {
        for (a, b) in DPKG_PAIRS {
            let dpkg = if dpkg_says(a, "lt", b) {
                Less
            } else if dpkg_says(a, "gt", b) {
                Greater
            } else {
                Equal
            };
            assert_eq!(compare(Scheme::Dpkg, a, b), dpkg, "`{a}` vs `{b}`: dpkg says {dpkg:?}");
            assert_eq!(compare(Scheme::Dpkg, b, a), dpkg.reverse(), "`{b}` vs `{a}`");
        }
    }

    #[test]
    fn rpm_orders_rpms_own_test_suite() {
        // Every case of rpm's tests/rpmvercmp.at (rpm 4.15+, with the caret cases).
        let cases: &[(&str, &str, Ordering)] = &[
            ("1.0", "1.0", Equal),
            ("1.0", "2.0", Less),
            ("2.0.1", "2.0.1", Equal),
            ("2.0", "2.0.1", Less),
            ("2.0.1a", "2.0.1a", Equal),
            ("2.0.1a", "2.0.1", Greater),
            ("5.5p1", "5.5p1", Equal),
            ("5.5p1", "5.5p2", Less),
            ("5.5p10", "5.5p10", Equal),
            ("5.5p1", "5.5p10", Less),
            ("10xyz", "10.1xyz", Less),
            ("xyz10", "xyz10", Equal),
            ("xyz10", "xyz10.1", Less),
            ("xyz.4", "xyz.4", Equal),
            ("xyz.4", "8", Less),
            ("xyz.4", "2", Less),
            ("5.5p2", "5.6p1", Less),
            ("5.6p1", "6.5p1", Less),
            ("6.0.rc1", "6.0", Greater),
            ("10b2", "10a1", Greater),
            ("10a2", "10b2", Less),
            ("1.0aa", "1.0aa", Equal),
            ("1.0a", "1.0aa", Less),
            ("10.0001", "10.0001", Equal),
            ("10.0001", "10.1", Equal),
            ("10.0001", "10.0039", Less),
            ("4.999.9", "5.0", Less),
            ("20101121", "20101121", Equal),
            ("20101121", "20101122", Less),
            ("2_0", "2_0", Equal),
            ("2.0", "2_0", Equal),
            ("a", "a", Equal),
            ("a+", "a+", Equal),
            ("a+", "a_", Equal),
            ("+a", "+a", Equal),
            ("+a", "_a", Equal),
            ("+_", "+_", Equal),
            ("_+", "+_", Equal),
            ("+", "_", Equal),
            ("1.0~rc1", "1.0~rc1", Equal),
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1", "1.0~rc2", Less),
            ("1.0~rc1~git123", "1.0~rc1~git123", Equal),
            ("1.0~rc1~git123", "1.0~rc1", Less),
            ("1.0^", "1.0^", Equal),
            ("1.0^", "1.0", Greater),
            ("1.0^git1", "1.0^git1", Equal),
            ("1.0^git1", "1.0", Greater),
            ("1.0^git1", "1.0^git2", Less),
            ("1.0^git1", "1.01", Less),
            ("1.0^20160101", "1.0^20160101", Equal),
            ("1.0^20160101", "1.0.1", Less),
            ("1.0^20160101^git1", "1.0^20160101^git1", Equal),
            ("1.0^20160102", "1.0^20160101^git1", Greater),
            ("1.0~rc1^git1", "1.0~rc1^git1", Equal),
            ("1.0~rc1^git1", "1.0~rc1", Greater),
            ("1.0^git1~pre", "1.0^git1~pre", Equal),
            ("1.0^git1", "1.0^git1~pre", Greater),
        ];
        for (a, b, expected) in cases {
            assert_order(Scheme::Rpm, a, b, *expected);
        }
    }

    #[test]
    fn rpm_splits_epoch_version_and_release_as_rpm_does() {
        assert_order(Scheme::Rpm, "1:1.0-1", "2.0-1", Greater);
        assert_order(Scheme::Rpm, "0:1.0-1", "1.0-1", Equal);
        assert_order(Scheme::Rpm, ":1.0", "0:1.0", Equal);
        assert_order(Scheme::Rpm, "1.0-1.el9", "1.0-2.el9", Less);
        assert_order(Scheme::Rpm, "1.0-1.el9", "1.0-1.el9_1", Less);
        assert_order(Scheme::Rpm, "3.0.7-27.el9", "3.0.7-25.el9", Greater);
        // No release sorts before any release, even an empty one (rpmverCmp).
        assert_increasing(Scheme::Rpm, &["1.0", "1.0-", "1.0-0", "1.0-1"]);
        // The release follows the last `-`: the version here is `1.0-beta`, which is newer than `1.0`.
        assert_order(Scheme::Rpm, "1.0-beta-1", "1.0-1", Greater);
        // Only digits make an epoch: `a:1.0` is a version starting with letters.
        assert_order(Scheme::Rpm, "a:1.0", "1.0", Less);
        let big = "9".repeat(100);
        assert_order(Scheme::Rpm, &format!("{big}:1"), &format!("1{big}:0"), Less);
        assert_order(Scheme::Rpm, &format!("1.{big}-1"), &format!("1.0{big}-1"), Equal);
    }

    #[test]
    fn generic_orders_windows_macos_and_product_versions() {
        assert_increasing(Scheme::Generic, &["10.0.17763.1", "10.0.19041.3803", "10.0.19041.3804", "10.0.22631.3447"]);
        assert_increasing(Scheme::Generic, &["9.20", "19.00", "22.01", "23.01"]);
        assert_increasing(Scheme::Generic, &["1.2.3", "1.2.3 build 9", "1.2.3 build 45", "1.2.4"]);
        assert_increasing(Scheme::Generic, &["14.5", "14.5 (23F79)", "14.5 (23G80)", "14.6"]);
        assert_increasing(Scheme::Generic, &["1.1.1", "1.1.1k", "1.1.1w", "3.0.2"]);
        // Documented, not wished for: no pre-release markers, so a beta sorts after its release.
        assert_increasing(Scheme::Generic, &["2.0.0", "2.0.0-beta.1", "2.0.0-beta.2", "2.0.1"]);
        // A number beats letters at the same place.
        assert_order(Scheme::Generic, "1.0.1", "1.0a", Greater);
        assert_order(Scheme::Generic, "1.0", "1a", Less);
    }

    #[test]
    fn generic_ignores_trailing_zeros_case_and_separators() {
        for same in ["1.2", "1.2.0", "1.2.0.0", "1.2.00", "1_2", "1.2 ", " 1.2"] {
            assert_order(Scheme::Generic, same, "1.2", Equal);
        }
        assert_order(Scheme::Generic, "1.0A", "1.0a", Equal);
        assert_order(Scheme::Generic, "5.0-Beta", "5.0.beta", Equal);
        assert_order(Scheme::Generic, "", "0", Equal);
        assert_order(Scheme::Generic, "", "0.0.0", Equal);
        // Zeros inside a version count; only a zero tail is dropped, which keeps the order transitive.
        assert_order(Scheme::Generic, "1.0.1", "1.1", Less);
        assert_increasing(Scheme::Generic, &["1", "1.0a", "1.0.0a"]);
        assert_order(Scheme::Generic, "1.0.0", "1.0a", Less);
        let big = "9".repeat(100);
        assert_order(Scheme::Generic, &format!("1.{big}"), &format!("1.0{big}.0"), Equal);
        assert_order(Scheme::Generic, &format!("1.{big}"), &format!("1.1{}", "0".repeat(100)), Less);
    }

    /// Strings nobody should send, which must still compare.
    fn hostile_versions() -> Vec<String> {
        let mut versions: Vec<String> = [
            "",
            " ",
            "::::",
            "---",
            "~~~~",
            "^^^^",
            ":",
            "-",
            "~",
            "^",
            ".",
            "1:",
            ":1",
            "1-",
            "-1",
            "0:0:0-0-0",
            "\0",
            "\u{7}1.0",
            "版本1.0",
            "１２３",
            "é",
            "1.0é",
            "🦀:🦀-🦀",
            "\u{202e}1.0",
            "..1..",
            "+-~^:",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        versions.push("1.".repeat(5_000));
        versions.push("~".repeat(10_000));
        versions.push("9".repeat(100));
        versions.push(format!("{}:{}-{}", "9".repeat(100), "0".repeat(100), "1".repeat(100)));
        versions.push("a1-".repeat(3_400));
        versions
    }

    #[test]
    fn compare_never_panics_on_hostile_input() {
        let versions = hostile_versions();
        for scheme in [Scheme::Dpkg, Scheme::Rpm, Scheme::Generic] {
            for a in &versions {
                assert_eq!(compare(scheme, a, a), Equal, "{scheme:?}: {a:?}");
                for b in &versions {
                    assert_eq!(compare(scheme, a, b), compare(scheme, b, a).reverse(), "{scheme:?}: {a:?} {b:?}");
                }
            }
            let mut sorted = versions.clone();
            sorted.sort_by(|a, b| compare(scheme, a, b));
        }
    }

    #[test]
    fn range_parses_operators_and_prints_canonically() {
        let cases = [
            ("<2.0", "<2.0"),
            ("<=2.0", "<=2.0"),
            (">1", ">1"),
            (">=1.4.2,<1.5", ">=1.4.2,<1.5"),
            ("  >= 1.4.2 ,  < 1.5  ", ">=1.4.2,<1.5"),
            ("=1.2.3", "=1.2.3"),
            ("==1.2.3", "=1.2.3"),
            ("1.2.3", "=1.2.3"),
            ("!=1.2", "!=1.2"),
            ("1:2.0-1~bpo1+b2", "=1:2.0-1~bpo1+b2"),
            ("<1.0^git1", "<1.0^git1"),
            ("::::", "=::::"),
        ];
        for (raw, canonical) in cases {
            let range = VersionRange::parse(raw).unwrap_or_else(|err| panic!("`{raw}`: {err}"));
            assert_eq!(range.to_string(), canonical, "`{raw}`");
            assert_eq!(canonical.parse::<VersionRange>(), Ok(range), "`{raw}`");
        }
        let limit = ["<9"; MAX_RANGE_CLAUSES].join(",");
        assert!(VersionRange::parse(&limit).is_ok());
        assert!(VersionRange::parse(&"1".repeat(MAX_RANGE_CHARS)).is_ok());
    }

    #[test]
    fn range_errors_name_what_is_wrong() {
        let cases = [
            ("", RangeError::Empty, "version range is empty"),
            (" \t ", RangeError::Empty, "version range is empty"),
            (
                ">=1,,<2",
                RangeError::EmptyClause { range: ">=1,,<2".into() },
                "version range `>=1,,<2` has an empty clause",
            ),
            (">=1,", RangeError::EmptyClause { range: ">=1,".into() }, "version range `>=1,` has an empty clause"),
            (">=", RangeError::MissingVersion { clause: ">=".into() }, "clause `>=` has an operator but no version"),
            (
                "<1, != ",
                RangeError::MissingVersion { clause: "!=".into() },
                "clause `!=` has an operator but no version",
            ),
            (
                "<1.0 2",
                RangeError::InvalidCharacter { version: "1.0 2".into(), character: ' ' },
                "version `1.0 2` contains ` `: a version is printable ASCII without whitespace, `,`, `<`, `>`, `=` or \
                 `!`",
            ),
            (
                "<<1",
                RangeError::InvalidCharacter { version: "<1".into(), character: '<' },
                "version `<1` contains `<`: a version is printable ASCII without whitespace, `,`, `<`, `>`, `=` or `!`",
            ),
            (
                "=>1",
                RangeError::InvalidCharacter { version: ">1".into(), character: '>' },
                "version `>1` contains `>`: a version is printable ASCII without whitespace, `,`, `<`, `>`, `=` or `!`",
            ),
            (
                "~>1.2",
                RangeError::InvalidCharacter { version: "~>1.2".into(), character: '>' },
                "version `~>1.2` contains `>`: a version is printable ASCII without whitespace, `,`, `<`, `>`, `=` or \
                 `!`",
            ),
            (
                "<1.0é",
                RangeError::InvalidCharacter { version: "1.0é".into(), character: 'é' },
                "version `1.0é` contains `é`: a version is printable ASCII without whitespace, `,`, `<`, `>`, `=` or \
                 `!`",
            ),
            (
                "<1\u{0}",
                RangeError::InvalidCharacter { version: "1\u{0}".into(), character: '\u{0}' },
                "version `1\\0` contains `\\0`: a version is printable ASCII without whitespace, `,`, `<`, `>`, `=` \
                 or `!`",
            ),
        ];
        for (raw, error, message) in cases {
            assert_eq!(VersionRange::parse(raw), Err(error), "`{raw}`");
            assert_eq!(VersionRange::parse(raw).unwrap_err().to_string(), message, "`{raw}`");
        }

        let many = ["<9"; MAX_RANGE_CLAUSES + 1].join(",");
        let err = VersionRange::parse(&many).unwrap_err();
        assert_eq!(err, RangeError::TooManyClauses { range: many.clone(), clauses: 9 });
        assert_eq!(err.to_string(), format!("version range `{many}` has 9 clauses, more than 8"));

        let long = "1".repeat(MAX_RANGE_CHARS + 1);
        let err = VersionRange::parse(&long).unwrap_err();
        assert_eq!(err, RangeError::TooLong { chars: 257 });
        assert_eq!(err.to_string(), "version range is 257 characters long, more than 256");
        // Characters, not bytes: 200 two-byte characters are within the limit and fail on the character instead.
        assert!(matches!(VersionRange::parse(&"é".repeat(200)), Err(RangeError::InvalidCharacter { .. })));
    }

    #[test]
    fn range_parse_never_panics_on_hostile_input() {
        let mut inputs = hostile_versions();
        inputs.extend(
            [",", ",,,,,,,,,,,,", "<", "=", "!", "!!", "<=>", "\u{feff}<1", "<1,\u{0}", " , "].map(String::from),
        );
        inputs.push("é".repeat(10_000));
        for raw in &inputs {
            if let Ok(range) = VersionRange::parse(raw) {
                assert_eq!(VersionRange::parse(&range.to_string()), Ok(range.clone()), "{raw:?}");
                for scheme in [Scheme::Dpkg, Scheme::Rpm, Scheme::Generic] {
                    for version in &inputs {
                        let _ = range.matches(scheme, version);
                    }
                }
            }
        }
    }

    #[test]
    fn range_matches_each_operator() {
        let matching = |raw: &str, scheme: Scheme, versions: &[&str]| -> Vec<bool> {
            let range = VersionRange::parse(raw).unwrap();
            versions.iter().map(|v| range.matches(scheme, v)).collect()
        };
        let versions = ["1.9", "2.0", "2.0.0", "2.1"];
        assert_eq!(matching("<2.0", Scheme::Generic, &versions), [true, false, false, false]);
        assert_eq!(matching("<=2.0", Scheme::Generic, &versions), [true, true, true, false]);
        assert_eq!(matching(">2.0", Scheme::Generic, &versions), [false, false, false, true]);
        assert_eq!(matching(">=2.0", Scheme::Generic, &versions), [false, true, true, true]);
        assert_eq!(matching("=2.0", Scheme::Generic, &versions), [false, true, true, false]);
        assert_eq!(matching("2.0", Scheme::Generic, &versions), [false, true, true, false]);
        assert_eq!(matching("!=2.0", Scheme::Generic, &versions), [true, false, false, true]);
        assert_eq!(
            matching(">=1.4.2,<1.5", Scheme::Generic, &["1.4.1", "1.4.2", "1.4.10", "1.5", "1.5.0.1"]),
            [false, true, true, false, false]
        );
        // Every clause must hold: a contradiction matches nothing.
        assert_eq!(matching(">2,<1", Scheme::Generic, &versions), [false; 4]);
        let openssl = ["1.1.1w-0+deb11u1", "3.0~alpha1-1", "3.0.2-0ubuntu1.10", "3.0.11-1~deb12u2"];
        assert_eq!(matching("<3.0", Scheme::Dpkg, &openssl), [true, true, false, false]);
        assert_eq!(matching("<3.0.3", Scheme::Dpkg, &openssl), [true, true, true, false]);
    }

    #[test]
    fn rpm_range_without_a_release_matches_every_release_as_rpm_does() {
        let range = |raw: &str| VersionRange::parse(raw).unwrap();
        assert!(range("=1.0").matches(Scheme::Rpm, "1.0-5.el9"));
        assert!(range("<=1.0").matches(Scheme::Rpm, "1.0-5.el9"));
        assert!(range(">=1.0").matches(Scheme::Rpm, "1.0-5.el9"));
        assert!(!range("<1.0").matches(Scheme::Rpm, "1.0-5.el9"));
        assert!(!range(">1.0").matches(Scheme::Rpm, "1.0-5.el9"));
        assert!(!range("!=1.0").matches(Scheme::Rpm, "1.0-5.el9"));
        assert!(range("<1.0-6").matches(Scheme::Rpm, "1.0-5.el9"));
        assert!(!range("<1.0-5").matches(Scheme::Rpm, "1.0-5.el9"));
        assert!(range("=1:1.0").matches(Scheme::Rpm, "1:1.0-5"));
        assert!(!range("=1.0").matches(Scheme::Rpm, "1:1.0-5"));
        assert!(range("<3.0.7-27.el9,>=3.0").matches(Scheme::Rpm, "3.0.7-25.el9"));
        // dpkg has no such rule: its versions compare whole.
        assert!(!range("<=3.0.2").matches(Scheme::Dpkg, "3.0.2-1"));
        assert!(!range("=3.0.2").matches(Scheme::Dpkg, "3.0.2-1"));
    }

    /// Short strings over the characters that mean something to some scheme, so that equal and near-equal
    /// versions come up often.
    fn small_version() -> impl Strategy<Value = String> {
        "[0-2ab.~+:^_-]{0,7}"
    }

    fn any_scheme() -> impl Strategy<Value = Scheme> {
        prop_oneof![Just(Scheme::Dpkg), Just(Scheme::Rpm), Just(Scheme::Generic)]
    }

    fn operator() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["<", "<=", ">", ">=", "=", "==", "!=", ""])
    }

    proptest! {
        #[test]
        fn compare_is_antisymmetric_and_reflexive(scheme in any_scheme(), a in any::<String>(), b in any::<String>()) {
            prop_assert_eq!(compare(scheme, &a, &a), Equal);
            prop_assert_eq!(compare(scheme, &a, &b), compare(scheme, &b, &a).reverse());
        }

        #[test]
        fn compare_is_antisymmetric_on_near_versions(
            scheme in any_scheme(),
            a in small_version(),
            b in small_version(),
        ) {
            prop_assert_eq!(compare(scheme, &a, &b), compare(scheme, &b, &a).reverse());
        }

        #[test]
        fn compare_is_transitive(
            scheme in any_scheme(),
            a in small_version(),
            b in small_version(),
            c in small_version(),
        ) {
            for (x, y, z) in [(&a, &b, &c), (&a, &c, &b), (&b, &a, &c), (&b, &c, &a), (&c, &a, &b), (&c, &b, &a)] {
                if compare(scheme, x, y) != Greater && compare(scheme, y, z) != Greater {
                    prop_assert_ne!(compare(scheme, x, z), Greater, "{:?}: {:?} <= {:?} <= {:?}", scheme, x, y, z);
                }
                if compare(scheme, x, y) == Equal && compare(scheme, y, z) == Equal {
                    prop_assert_eq!(compare(scheme, x, z), Equal, "{:?}: {:?} = {:?} = {:?}", scheme, x, y, z);
                }
            }
        }

        #[test]
        fn sorting_by_compare_is_consistent(
            scheme in any_scheme(),
            mut versions in prop::collection::vec(small_version(), 0..40),
        ) {
            // Rust's sort may panic on an order that is not total; a sorted list must also be pairwise in order.
            versions.sort_by(|a, b| compare(scheme, a, b));
            for pair in versions.windows(2) {
                prop_assert_ne!(compare(scheme, &pair[0], &pair[1]), Greater, "{:?}: {:?}", scheme, pair);
            }
        }

        #[test]
        fn a_range_prints_and_parses_back(
            clauses in prop::collection::vec((operator(), "[0-9a-zA-Z.~+:^_-]{1,12}"), 1..=MAX_RANGE_CLAUSES),
        ) {
            let raw = clauses.iter().map(|(op, version)| format!(" {op} {version} ")).collect::<Vec<_>>().join(",");
            let range = VersionRange::parse(&raw).unwrap();
            let canonical = range.to_string();
            prop_assert_eq!(VersionRange::parse(&canonical), Ok(range));
            prop_assert!(!canonical.contains(' '));
        }

        #[test]
        fn a_one_clause_range_agrees_with_compare(
            scheme in any_scheme(),
            op in operator(),
            // No `-` and no `,`: rpm ranges ignore releases by design, and a `,` would split the clause.
            bound in "[0-2ab.~+:^_]{1,7}",
            version in "[0-2ab.~+:^_]{0,7}",
        ) {
            let range = VersionRange::parse(&format!("{op}{bound}")).unwrap();
            let order = compare(scheme, &version, &bound);
            let expected = match op {
                "<" => order == Less,
                "<=" => order != Greater,
                ">" => order == Greater,
                ">=" => order != Less,
                "!=" => order != Equal,
                _ => order == Equal,
            };
            prop_assert_eq!(range.matches(scheme, &version), expected);
        }
    }
}
