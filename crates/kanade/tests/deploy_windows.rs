//! `deploy/windows/*.ps1`, `deploy/windows/Kanade.Deploy.psm1` and `deploy/install-agent.ps1`, checked as text.
//! PowerShell does not run here, so no test executes any of them: what this file checks is what reading can check.
//! A small lexer (comments, quoted strings, `$(...)` inside strings; here-strings are refused) lets it look at code
//! apart from comments and strings, and it checks that:
//! - every script is ASCII (Windows PowerShell 5.1 reads a file without a BOM as ANSI) and opens with comment-based
//!   help with `.SYNOPSIS`; none uses syntax newer than Windows PowerShell 5.1 (`&&`, `||`, `??`, `?.`, a ternary)
//!   or the `"$name:"` that 5.1 reads as a drive-qualified variable;
//! - each `param(` block declares the parameters the documents promise, with their types and defaults, and
//!   `install-agent.ps1` forwards only parameters `deploy-agent.ps1` takes;
//! - every call of a function of the module (or of the script itself) names only parameters that function declares;
//! - the services, executables, event sources, firewall rules and registry keys are the contract's, and agree with
//!   the Rust side (`kanade_agent::platform::SERVICE_NAME`, the backend's service name, `kanade-service`'s registry
//!   path and event source, the variables the components read);
//! - no secret parameter reaches an sc.exe / icacls / New-Service command line, a console line, an error message or a
//!   config file's text, and no example (in the scripts' help or docs/INSTALL.md) types a token out, which
//!   PSReadLine would keep in its history file;
//! - the fixes of past review findings stay: nats-server's startup delay in its service environment, a service
//!   marked for deletion or still starting does not abort a run, a token-mode backend upgrades with `-Binary`
//!   alone, and undeploy refuses a folder that is not the role's own;
//! - the files named by a path relative to a script exist, and each line a script replaces in a shipped example is
//!   in that example exactly once;
//! - every `-Parameter` docs/INSTALL.md passes to a Windows script is one that script declares.
//!
//! None of this shows that the scripts work on Windows: that is verified only by running them there.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo().join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// Every PowerShell file this test reads, by its path in the repository.
const SCRIPTS: [&str; 7] = [
    "deploy/windows/Kanade.Deploy.psm1",
    "deploy/windows/deploy-agent.ps1",
    "deploy/windows/deploy-backend.ps1",
    "deploy/windows/deploy-nats.ps1",
    "deploy/windows/deploy-client.ps1",
    "deploy/windows/undeploy.ps1",
    "deploy/install-agent.ps1",
];

const MODULE: &str = "deploy/windows/Kanade.Deploy.psm1";

/// The parameters whose values are secrets.
const SECRET_PARAMETERS: [&str; 4] = ["NatsToken", "Token", "StaticToken", "EnrollToken"];

// ---------------------------------------------------------------------------------------------------------------
// A PowerShell lexer, just enough for these scripts.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Code,
    Comment,
    Single,
    Double,
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Code; `sub` is a `$(...)` inside a double-quoted string, which ends when its parentheses close.
    Code {
        sub: bool,
        depth: usize,
    },
    Single,
    Double,
    LineComment,
    BlockComment,
}

/// The kind of every byte of `text`: code, comment, or inside a single- or double-quoted string (the code of a
/// `$(...)` inside a double-quoted string, with its parentheses, is code). Here-strings are not understood;
/// `no_script_uses_here_strings` makes sure there are none.
fn classify(text: &str) -> Vec<Kind> {
    let b = text.as_bytes();
    let mut kinds = vec![Kind::Code; b.len()];
    let mut stack = vec![Mode::Code { sub: false, depth: 0 }];
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        let mode = *stack.last().expect("the outermost code never ends");
        match mode {
            Mode::Code { sub, depth } => {
                kinds[i] = Kind::Code;
                match c {
                    b'`' => {
                        i += 2;
                        continue;
                    }
                    b'<' if next == Some(b'#') => {
                        kinds[i] = Kind::Comment;
                        kinds[i + 1] = Kind::Comment;
                        stack.push(Mode::BlockComment);
                        i += 2;
                        continue;
                    }
                    b'#' => {
                        kinds[i] = Kind::Comment;
                        stack.push(Mode::LineComment);
                    }
                    b'\'' => {
                        kinds[i] = Kind::Single;
                        stack.push(Mode::Single);
                    }
                    b'"' => {
                        kinds[i] = Kind::Double;
                        stack.push(Mode::Double);
                    }
                    b'(' => *stack.last_mut().unwrap() = Mode::Code { sub, depth: depth + 1 },
                    b')' if sub && depth == 1 => {
                        stack.pop();
                    }
                    b')' => *stack.last_mut().unwrap() = Mode::Code { sub, depth: depth.saturating_sub(1) },
                    _ => {}
                }
            }
            Mode::Single => {
                kinds[i] = Kind::Single;
                if c == b'\'' {
                    if next == Some(b'\'') {
                        kinds[i + 1] = Kind::Single;
                        i += 2;
                        continue;
                    }
                    stack.pop();
                }
            }
            Mode::Double => {
                kinds[i] = Kind::Double;
                match c {
                    b'`' => {
                        if i + 1 < b.len() {
                            kinds[i + 1] = Kind::Double;
                        }
                        i += 2;
                        continue;
                    }
                    b'"' if next == Some(b'"') => {
                        kinds[i + 1] = Kind::Double;
                        i += 2;
                        continue;
                    }
                    b'"' => {
                        stack.pop();
                    }
                    b'$' if next == Some(b'(') => {
                        // The parentheses are code, so that brackets balance in code.
                        kinds[i + 1] = Kind::Code;
                        stack.push(Mode::Code { sub: true, depth: 1 });
                        i += 2;
                        continue;
                    }
                    _ => {}
                }
            }
            Mode::LineComment => {
                if c == b'\n' {
                    stack.pop();
                } else {
                    kinds[i] = Kind::Comment;
                }
            }
            Mode::BlockComment => {
                kinds[i] = Kind::Comment;
                if c == b'#' && next == Some(b'>') {
                    kinds[i + 1] = Kind::Comment;
                    stack.pop();
                    i += 2;
                    continue;
                }
            }
        }
        i += 1;
    }
    kinds
}

/// A script lexed: its text with comments blanked (line breaks kept), and each byte's kind.
struct Script {
    name: String,
    text: String,
    kinds: Vec<Kind>,
}

impl Script {
    fn parse(name: &str, source: &str) -> Self {
        let kinds = classify(source);
        let text: String = source
            .bytes()
            .zip(&kinds)
            .map(|(c, k)| if *k == Kind::Comment && c != b'\n' { ' ' } else { c as char })
            .collect();
        Self { name: name.to_owned(), text, kinds }
    }

    fn load(relative: &str) -> Self {
        Self::parse(relative, &read(relative))
    }

    fn is_code(&self, at: usize) -> bool {
        self.kinds.get(at) == Some(&Kind::Code)
    }

    /// The code alone: comments and the insides of strings blanked.
    fn code(&self) -> String {
        self.text.bytes().zip(&self.kinds).map(|(c, k)| if *k == Kind::Code { c as char } else { ' ' }).collect()
    }

    /// The contents of every quoted string, in order (for a double-quoted one, the runs around any `$(...)`).
    fn strings(&self) -> Vec<String> {
        let b = self.text.as_bytes();
        let mut found = Vec::new();
        let mut i = 0;
        while i < b.len() {
            let kind = self.kinds[i];
            if kind == Kind::Single || kind == Kind::Double {
                let start = i;
                while i < b.len() && self.kinds[i] == kind {
                    i += 1;
                }
                let run = &self.text[start..i];
                let quote = if kind == Kind::Single { '\'' } else { '"' };
                found.push(run.trim_start_matches(quote).trim_end_matches(quote).to_owned());
            } else {
                i += 1;
            }
        }
        found
    }

    /// The contents of double-quoted strings (where PowerShell expands variables).
    fn expanding_strings(&self) -> Vec<String> {
        let b = self.text.as_bytes();
        let mut found = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if self.kinds[i] == Kind::Double {
                let start = i;
                while i < b.len() && self.kinds[i] == Kind::Double {
                    i += 1;
                }
                found.push(self.text[start..i].to_owned());
            } else {
                i += 1;
            }
        }
        found
    }

    /// The statements: split at line ends (unless the line ends in a backtick or a `(`, `[` or `@{` is open), at
    /// `;`, and at the braces of script blocks, so `if (...) {` and each line of its body are statements of their own.
    fn statements(&self) -> Vec<String> {
        let b = self.text.as_bytes();
        let mut statements = Vec::new();
        let mut current = String::new();
        let mut groups: Vec<u8> = Vec::new();
        let open = |groups: &[u8]| groups.iter().any(|g| *g != b'{');
        let mut flush = |current: &mut String| {
            let statement = current.split_whitespace().collect::<Vec<_>>().join(" ");
            if !statement.is_empty() {
                statements.push(statement);
            }
            current.clear();
        };
        for (i, &c) in b.iter().enumerate() {
            if !self.is_code(i) {
                current.push(c as char);
                continue;
            }
            match c {
                b'(' | b'[' => groups.push(c),
                b'{' if i > 0 && b[i - 1] == b'@' => groups.push(b'@'),
                b'{' => {
                    groups.push(b'{');
                    if !open(&groups) {
                        flush(&mut current);
                        continue;
                    }
                }
                b')' | b']' => {
                    groups.pop();
                }
                b'}' => {
                    let closed = groups.pop();
                    if closed == Some(b'{') && !open(&groups) {
                        flush(&mut current);
                        continue;
                    }
                }
                b'\n' if !open(&groups) && !current.trim_end().ends_with('`') => {
                    flush(&mut current);
                    continue;
                }
                b';' if !open(&groups) => {
                    flush(&mut current);
                    continue;
                }
                _ => {}
            }
            current.push(c as char);
        }
        flush(&mut current);
        statements
    }

    /// The index just past the `)` matching the `(` at `open`, counting only code.
    fn closing(&self, open: usize) -> usize {
        let b = self.text.as_bytes();
        let mut depth = 0usize;
        for (i, &c) in b.iter().enumerate().skip(open) {
            if !self.is_code(i) {
                continue;
            }
            match c {
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' | b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        return i + 1;
                    }
                }
                _ => {}
            }
        }
        panic!("{}: unbalanced brackets from byte {open}", self.name)
    }

    /// Where `word` starts in code, as a whole word (case-insensitive), from `from` on.
    fn find_word(&self, word: &str, from: usize) -> Option<usize> {
        let lower = self.text.to_ascii_lowercase();
        let word = word.to_ascii_lowercase();
        let mut at = from;
        while let Some(found) = lower[at..].find(&word).map(|f| f + at) {
            let before = found.checked_sub(1).map(|i| lower.as_bytes()[i]);
            let after = lower.as_bytes().get(found + word.len()).copied();
            let bounded = |c: Option<u8>| !c.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
            let whole = bounded(before) && (word.ends_with('(') || bounded(after));
            if self.is_code(found) && whole {
                return Some(found);
            }
            at = found + 1;
        }
        None
    }

    /// The parameters of the `param(` block at or after `from`, and where the block ends.
    fn param_block(&self, from: usize) -> Option<(Vec<Param>, usize)> {
        let start = self.find_word("param(", from)?;
        let open = start + "param".len();
        let close = self.closing(open);
        let b = self.text.as_bytes();
        let mut entries = Vec::new();
        let mut depth = 0usize;
        let mut entry_start = open + 1;
        for (i, &c) in b.iter().enumerate().take(close - 1).skip(open + 1) {
            if !self.is_code(i) {
                continue;
            }
            match c {
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' | b'}' => depth -= 1,
                b',' if depth == 0 => {
                    entries.push((entry_start, i));
                    entry_start = i + 1;
                }
                _ => {}
            }
        }
        entries.push((entry_start, close - 1));
        let params = entries.into_iter().filter_map(|(s, e)| self.param(s, e)).collect();
        Some((params, close))
    }

    /// One entry of a `param(` block: its name is the first `$name` in code that is not `$scope:name`.
    fn param(&self, start: usize, end: usize) -> Option<Param> {
        let b = self.text.as_bytes();
        let mut i = start;
        while i < end {
            if b[i] == b'$' && self.is_code(i) {
                let name_end = (i + 1..end).find(|&j| !(b[j].is_ascii_alphanumeric() || b[j] == b'_')).unwrap_or(end);
                if name_end > i + 1 && b.get(name_end) != Some(&b':') {
                    let attributes = self.text[start..i].split_whitespace().collect::<Vec<_>>().join(" ");
                    let default = self.text[name_end..end].trim();
                    return Some(Param {
                        name: self.text[i + 1..name_end].to_owned(),
                        ty: declared_type(&attributes),
                        attributes,
                        default: default.strip_prefix('=').map(|d| d.trim().to_owned()),
                    });
                }
            }
            i += 1;
        }
        None
    }

    /// The functions this file defines, with their parameters (`None`: no `param(` block, e.g. one using `$args`).
    fn functions(&self) -> BTreeMap<String, Option<Vec<Param>>> {
        let code = self.code();
        let mut found = BTreeMap::new();
        let mut at = 0;
        while let Some(f) = self.find_word("function", at) {
            let rest = &code[f + "function".len()..];
            let name: String =
                rest.trim_start().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
            let body = code[f..].find('{').map(|o| f + o + 1).expect("a function has a body");
            let mut first = code[body..].trim_start();
            // `[CmdletBinding(...)]` may come before the `param(` block.
            if first.to_ascii_lowercase().starts_with("[cmdletbinding") {
                let attribute = code.len() - first.len();
                first = code[self.closing(attribute)..].trim_start();
            }
            let params = if first.to_ascii_lowercase().starts_with("param(") {
                self.param_block(body).map(|(p, _)| p)
            } else {
                None
            };
            found.insert(name, params);
            at = body;
        }
        found
    }

    /// For each call of `function` in code: the `-Parameter` names it passes (arguments in brackets skipped).
    fn calls(&self, function: &str) -> Vec<Vec<String>> {
        let b = self.text.as_bytes();
        let mut calls = Vec::new();
        let mut at = 0;
        while let Some(found) = self.find_word(function, at) {
            at = found + function.len();
            if self.text[..found].trim_end().to_ascii_lowercase().ends_with("function") {
                continue;
            }
            let mut names = Vec::new();
            let mut depth = 0usize;
            let mut i = at;
            while i < b.len() {
                if !self.is_code(i) {
                    i += 1;
                    continue;
                }
                match b[i] {
                    b'(' | b'[' | b'{' => depth += 1,
                    b')' | b']' | b'}' if depth == 0 => break,
                    b')' | b']' | b'}' => depth -= 1,
                    b'|' | b';' if depth == 0 => break,
                    b'\n' if depth == 0 && !self.text[at..i].trim_end().ends_with('`') => break,
                    b'-' if depth == 0 && b[i - 1].is_ascii_whitespace() => {
                        let name: String =
                            self.text[i + 1..].chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
                        if name.starts_with(|c: char| c.is_ascii_alphabetic()) {
                            i += name.len();
                            names.push(name);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            calls.push(names);
        }
        calls
    }
}

/// The last `[type]` of a parameter's attributes: `[string[]]` is `string[]`.
fn declared_type(attributes: &str) -> Option<String> {
    let (base, array) = match attributes.strip_suffix("[]]") {
        Some(base) => (base, "[]"),
        None => (attributes.strip_suffix(']')?, ""),
    };
    base.rsplit_once('[').map(|(_, t)| format!("{t}{array}"))
}

#[derive(Debug, Clone)]
struct Param {
    name: String,
    /// The last type in brackets before the name: `string`, `string[]`, `switch`, `int`.
    ty: Option<String>,
    /// Everything before the name (attributes and type), whitespace collapsed.
    attributes: String,
    default: Option<String>,
}

/// A script's own `param(` block (the first in the file, after its help).
fn script_params(script: &Script) -> BTreeMap<String, Param> {
    let (params, _) = script.param_block(0).unwrap_or_else(|| panic!("{}: no param( block", script.name));
    params.into_iter().map(|p| (p.name.clone(), p)).collect()
}

/// A statement's secret parameters, as `$Name` references (PowerShell names are case-insensitive).
fn secret_references(statement: &str) -> Vec<&'static str> {
    let lower = statement.to_ascii_lowercase();
    SECRET_PARAMETERS
        .into_iter()
        .filter(|name| {
            let needle = format!("${}", name.to_ascii_lowercase());
            lower.match_indices(&needle).any(|(at, _)| {
                !lower.as_bytes().get(at + needle.len()).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
            })
        })
        .collect()
}

/// What a statement must not hand a secret to: a program's command line, the service's registration, the console,
/// an error message, a config file's text.
const SECRET_SINKS: [&str; 23] = [
    "sc.exe",
    "invoke-sc ",
    "icacls",
    "invoke-icacls",
    "new-service",
    "-binarypathname",
    "$commandline",
    "invoke-cimmethod",
    "start-process",
    "cmd.exe",
    "write-host",
    "write-kanadestep",
    "write-warning",
    "write-output",
    "write-verbose",
    "write-error",
    "throw",
    "$lines",
    "$configtext",
    "$text",
    "set-content",
    "add-content",
    "out-file",
];

fn secret_leaks(script: &Script) -> Vec<String> {
    script
        .statements()
        .into_iter()
        .filter(|s| {
            let lower = s.to_ascii_lowercase();
            !secret_references(s).is_empty() && SECRET_SINKS.iter().any(|sink| lower.contains(sink))
        })
        .collect()
}

/// `"$name:"` in a double-quoted string: Windows PowerShell reads `$name:` as a drive-qualified variable and fails
/// to parse the script ("Variable reference is not valid"). `${name}:` is the way to write it.
fn scope_mistakes(script: &Script) -> Vec<String> {
    const SCOPES: [&str; 9] = ["env", "script", "global", "local", "private", "using", "variable", "function", "alias"];
    let mut found = Vec::new();
    for s in script.expanding_strings() {
        let b = s.as_bytes();
        for (i, _) in s.match_indices('$') {
            let name: String = s[i + 1..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !name.is_empty() && b.get(i + 1 + name.len()) == Some(&b':') && !SCOPES.contains(&name.as_str()) {
                found.push(format!("{}: \"{s}\"", script.name));
            }
        }
    }
    found
}

/// Syntax newer than Windows PowerShell 5.1, in code.
fn newer_syntax(script: &Script) -> Vec<String> {
    let code = script.code();
    let mut found = Vec::new();
    for (number, line) in code.lines().enumerate() {
        for token in ["&&", "||", "??", "?.", "?[", " ? "] {
            if line.contains(token) {
                found.push(format!("{}:{}: `{token}`: {}", script.name, number + 1, line.trim()));
            }
        }
    }
    found
}

/// Secret parameters given a value typed out (`-EnrollToken kanade_enroll_...`) in `command`, rather than a
/// variable or a subexpression (`-EnrollToken $token`, `-EnrollToken (Get-Content .\token.txt)`). Typed at Windows
/// PowerShell 5.1's prompt, PSReadLine 2.0 keeps the whole line in ConsoleHost_history.txt.
fn typed_secrets(command: &str) -> Vec<String> {
    let words: Vec<&str> = command.split_whitespace().filter(|w| *w != "`").collect();
    let mut found = Vec::new();
    for (i, word) in words.iter().enumerate() {
        let (name, inline) = match word.split_once(':') {
            Some((name, value)) => (name, Some(value)),
            None => (*word, None),
        };
        let Some(name) = name.strip_prefix('-') else { continue };
        if !SECRET_PARAMETERS.iter().any(|s| s.eq_ignore_ascii_case(name)) {
            continue;
        }
        let value = inline.or_else(|| words.get(i + 1).copied()).unwrap_or_default();
        if !(value.starts_with('$') || value.starts_with('(')) {
            found.push(format!("{word} {value}"));
        }
    }
    found
}

/// The text of every `.EXAMPLE` of a script's comment-based help.
fn help_examples(source: &str) -> Vec<String> {
    let help = &source[..source.find("#>").unwrap_or_default()];
    let mut examples: Vec<String> = Vec::new();
    let mut inside = false;
    for line in help.lines() {
        let trimmed = line.trim();
        // A keyword such as `.EXAMPLE`, not a line of an example such as `.\deploy-nats.ps1 ...`.
        let keyword =
            trimmed.strip_prefix('.').is_some_and(|k| !k.is_empty() && k.bytes().all(|c| c.is_ascii_uppercase()));
        if keyword {
            inside = trimmed == ".EXAMPLE";
            if inside {
                examples.push(String::new());
            }
            continue;
        }
        if inside {
            let example = examples.last_mut().expect("an example has begun");
            example.push_str(line);
            example.push('\n');
        }
    }
    examples
}

/// docs/INSTALL.md's section "6. Windows".
fn install_md_windows_section() -> String {
    let doc = read("docs/INSTALL.md");
    let section =
        doc.split("\n## ").find(|s| s.starts_with("6. Windows")).expect("docs/INSTALL.md has a Windows section");
    section.to_owned()
}

/// The commands of the code blocks of a Markdown text, continuation lines (ending in a backtick) joined.
fn code_block_commands(markdown: &str) -> Vec<String> {
    let mut in_code = false;
    let mut commands = Vec::new();
    let mut current = String::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if !in_code {
            continue;
        }
        current.push_str(line.trim_end().trim_end_matches('`'));
        current.push(' ');
        if !line.trim_end().ends_with('`') {
            commands.push(std::mem::take(&mut current));
        }
    }
    commands
}

/// The text of function `name` in a script (comments blanked), up to the next function.
fn function_body<'a>(script: &'a Script, name: &str) -> &'a str {
    let text = &script.text;
    let start = text.find(&format!("function {name} {{")).unwrap_or_else(|| panic!("{}: no {name}", script.name));
    let end = text[start + 1..].find("\nfunction ").map_or(text.len(), |e| start + 1 + e);
    &text[start..end]
}

// ---------------------------------------------------------------------------------------------------------------
// The checker itself: each check finds what it is for.

#[test]
fn the_checks_find_what_they_look_for() {
    let leaky = Script::parse(
        "leaky.ps1",
        "param([string] $NatsToken)\n\
         Write-Host \"token: $NatsToken\"\n\
         Invoke-Sc create x binPath= \"a b $natstoken\"\n\
         $commandLine = \"`\"$exe`\" --token $NatsToken\"\n\
         # Write-Host $NatsToken (a comment)\n\
         Set-KanadeSecrets -Role agent -Values @{\n    KANADE_NATS_TOKEN = $NatsToken\n}\n\
         Write-Host \"$NatsTokenLength\"\n",
    );
    assert_eq!(secret_leaks(&leaky).len(), 3, "{:?}", secret_leaks(&leaky));

    let gotcha = Script::parse("gotcha.ps1", "Write-Host \"config $path: kept ${path}: $env:TEMP '$x'\"\n");
    assert_eq!(scope_mistakes(&gotcha).len(), 1);

    let newer = Script::parse("newer.ps1", "$a = $b ?? 'c'\nif ($x) { 'a && b' }\n# a || b\n$c = $d ? 1 : 2\n");
    assert_eq!(newer_syntax(&newer).len(), 2, "{:?}", newer_syntax(&newer));

    let typed = ".\\deploy-agent.ps1 -EnrollToken kanade_enroll_x -NatsToken $t -StaticToken (Get-Content a) \
                 -token:abc -Token:$t -Binary x";
    assert_eq!(typed_secrets(typed), ["-EnrollToken kanade_enroll_x", "-token:abc abc"]);
    let help = "<#\n.SYNOPSIS\n    x -NatsToken a\n.EXAMPLE\n    .\\a -EnrollToken b `\n        -Binary c\n\
                .EXAMPLE\n    d\n.NOTES\n    e\n#>\nf";
    assert_eq!(help_examples(help), ["    .\\a -EnrollToken b `\n        -Binary c\n", "    d\n"]);
    let markdown = "text -NatsToken x\n```powershell\na `\n  -b c\nd\n```\nmore\n";
    assert_eq!(code_block_commands(markdown), ["a    -b c ", "d "]);

    let cmdlet = Script::parse(
        "cmdlet.ps1",
        "function Invoke-X {\n    [CmdletBinding(PositionalBinding = $false)]\n    param([string[]] $Rest, [int] $Code)\n}\n",
    );
    let names: Vec<String> = cmdlet.functions()["Invoke-X"].as_ref().unwrap().iter().map(|p| p.name.clone()).collect();
    assert_eq!(names, ["Rest", "Code"]);

    let params = Script::parse(
        "params.ps1",
        "<# help, param( in a comment #>\n[CmdletBinding()]\nparam(\n    # a comment, with a comma\n    \
         [Parameter(Mandatory)] [ValidateSet('a', 'b')] [string] $Role,\n    [string[]] $Groups = @('x', 'y'),\n    \
         [string] $Dir = (Join-Path $env:ProgramFiles 'kanade'),\n    [switch] $Purge\n)\nfunction Get-Thing {\n    \
         param([string] $Name, [switch] $All)\n}\nGet-Thing -Name (Get-Other -Bogus 1) -All:$true | Out-Null\n",
    );
    let p = script_params(&params);
    assert_eq!(p.keys().cloned().collect::<Vec<_>>(), ["Dir", "Groups", "Purge", "Role"]);
    assert_eq!(p["Groups"].ty.as_deref(), Some("string[]"));
    assert_eq!(p["Purge"].ty.as_deref(), Some("switch"));
    assert!(p["Role"].attributes.contains("Mandatory") && p["Role"].attributes.contains("ValidateSet('a', 'b')"));
    assert_eq!(p["Groups"].default.as_deref(), Some("@('x', 'y')"));
    let functions = params.functions();
    let names: Vec<String> = functions["Get-Thing"].as_ref().unwrap().iter().map(|p| p.name.clone()).collect();
    assert_eq!(names, ["Name", "All"]);
    assert_eq!(params.calls("Get-Thing"), [vec!["Name".to_owned(), "All".to_owned()]]);
}

// ---------------------------------------------------------------------------------------------------------------
// The scripts.

#[test]
fn every_script_is_ascii_and_opens_with_comment_based_help() {
    // A new script in deploy/windows is checked too, or this fails.
    for entry in std::fs::read_dir(repo().join("deploy/windows")).unwrap().flatten() {
        let name = format!("deploy/windows/{}", entry.file_name().to_string_lossy());
        assert!(SCRIPTS.contains(&name.as_str()), "{name} is not in this test's SCRIPTS");
    }
    for name in SCRIPTS {
        let bytes = std::fs::read(repo().join(name)).unwrap();
        if let Some(at) = bytes.iter().position(|b| !b.is_ascii()) {
            let line = bytes[..at].iter().filter(|b| **b == b'\n').count() + 1;
            panic!("{name}:{line}: not ASCII; Windows PowerShell 5.1 reads a file without a BOM as ANSI");
        }
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("<#"), "{name}: does not open with comment-based help");
        let help = &text[..text.find("#>").unwrap_or_else(|| panic!("{name}: help never closes"))];
        let synopsis = help.split(".SYNOPSIS").nth(1).unwrap_or_else(|| panic!("{name}: no .SYNOPSIS"));
        let first = synopsis.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or_default();
        assert!(!first.starts_with('.') && first.len() > 20, "{name}: .SYNOPSIS has no sentence: {first:?}");
        assert!(help.contains(".DESCRIPTION"), "{name}: no .DESCRIPTION");
        assert!(help.contains("text only"), "{name}: help does not say the tests check it as text only");
        let script = Script::load(name);
        assert!(script.text.contains("$ErrorActionPreference = 'Stop'"), "{name}: errors do not stop it");
        if name.ends_with(".ps1") {
            assert!(help.contains(".EXAMPLE"), "{name}: no .EXAMPLE");
            let code = script.code();
            let binding = code.find("[CmdletBinding()]").unwrap_or_else(|| panic!("{name}: no [CmdletBinding()]"));
            let param = script.find_word("param(", 0).unwrap();
            assert!(binding < param && code[binding..param].trim() == "[CmdletBinding()]", "{name}: param( placement");
        }
    }
}

#[test]
fn no_script_uses_syntax_windows_powershell_5_1_lacks() {
    let mut found = Vec::new();
    for name in SCRIPTS {
        let script = Script::load(name);
        found.extend(newer_syntax(&script));
        found.extend(scope_mistakes(&script));
    }
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn no_script_uses_here_strings() {
    for name in SCRIPTS {
        let text = read(name);
        for (number, line) in text.lines().enumerate() {
            let line = line.trim_end();
            assert!(
                !(line.ends_with("@'") || line.ends_with("@\"")),
                "{name}:{}: a here-string, which this test's lexer does not understand",
                number + 1
            );
        }
    }
}

/// What each script must declare: name, type, and a piece of its attributes or default when it matters.
fn required_parameters(name: &str) -> Vec<(&'static str, &'static str, Option<&'static str>)> {
    let deploy = [
        ("Binary", "string", Some("Mandatory")),
        ("Config", "string", None),
        ("NatsToken", "string", None),
        ("InstallDir", "string", None),
        ("DataDir", "string", None),
        ("ForceConfig", "switch", None),
        ("Recreate", "switch", None),
        ("NoStart", "switch", None),
    ];
    let mut wanted: Vec<_> = match name {
        "deploy-agent.ps1" => deploy.to_vec(),
        "deploy-backend.ps1" | "deploy-nats.ps1" => {
            let mut v = deploy.to_vec();
            v.push(("SecurityDir", "string", None));
            v
        }
        _ => Vec::new(),
    };
    match name {
        "deploy-agent.ps1" => wanted.extend([
            ("NatsToken", "string", Some("Alias('Token')")),
            ("NatsUrl", "string", None),
            ("CaFile", "string", None),
            ("BootstrapCreds", "string", None),
            ("EnrollToken", "string", None),
            ("TrustRoot", "string", None),
            ("Groups", "string[]", None),
            ("ServiceName", "string", Some("'kanade-agent'")),
        ]),
        "deploy-backend.ps1" => wanted.extend([
            ("StaticToken", "string", None),
            ("Port", "int", Some("8080")),
            ("RemoteAddress", "string[]", None),
        ]),
        "deploy-nats.ps1" => wanted.extend([
            ("MonitorRemoteAddress", "string[]", Some("'LocalSubnet'")),
            ("ClientRemoteAddress", "string[]", None),
        ]),
        "deploy-client.ps1" => {
            wanted.extend([("Binary", "string", Some("Mandatory")), ("InstallDir", "string", None)]);
        }
        "undeploy.ps1" => wanted.extend([
            ("Role", "string", Some("ValidateSet('agent', 'backend', 'nats', 'client')")),
            ("Role", "string", Some("Mandatory")),
            ("Purge", "switch", None),
            ("KeepFirewall", "switch", None),
            ("KeepSecrets", "switch", None),
            ("InstallDir", "string", None),
            ("DataDir", "string", None),
        ]),
        "install-agent.ps1" => wanted.extend([
            ("Binary", "string", Some("Mandatory")),
            ("Config", "string", None),
            ("NatsUrl", "string", None),
            ("Token", "string", None),
            ("CaFile", "string", None),
            ("BootstrapCreds", "string", None),
            ("EnrollToken", "string", None),
            ("TrustRoot", "string", None),
            ("Groups", "string[]", None),
            ("InstallDir", "string", None),
            ("DataDir", "string", None),
            ("ServiceName", "string", None),
            ("ForceConfig", "switch", None),
            ("Recreate", "switch", None),
        ]),
        _ => {}
    }
    wanted
}

#[test]
fn the_param_blocks_declare_what_the_documents_promise() {
    for name in SCRIPTS.iter().filter(|n| n.ends_with(".ps1")) {
        let params = script_params(&Script::load(name));
        let file = name.rsplit('/').next().unwrap();
        for (param, ty, detail) in required_parameters(file) {
            let declared = params.get(param).unwrap_or_else(|| panic!("{name}: no -{param}"));
            assert_eq!(declared.ty.as_deref(), Some(ty), "{name}: -{param}'s type");
            if let Some(detail) = detail {
                let said = format!("{} = {}", declared.attributes, declared.default.clone().unwrap_or_default());
                assert!(said.contains(detail), "{name}: -{param} lacks {detail}: {said}");
            }
        }
        // A secret is a plain string: never a default, never a SecureString that would need converting on the way.
        for secret in SECRET_PARAMETERS {
            if let Some(p) = params.get(secret) {
                assert!(p.default.is_none(), "{name}: -{secret} has a default");
            }
        }
    }
    // The wrapper forwards what it was given: every parameter of it must be one deploy-agent.ps1 takes, by name or
    // alias, of the same type.
    let wrapper = script_params(&Script::load("deploy/install-agent.ps1"));
    let agent = script_params(&Script::load("deploy/windows/deploy-agent.ps1"));
    for (name, p) in &wrapper {
        let target = agent
            .values()
            .find(|a| a.name == *name || a.attributes.contains(&format!("Alias('{name}')")))
            .unwrap_or_else(|| panic!("install-agent.ps1 forwards -{name}, which deploy-agent.ps1 does not take"));
        assert_eq!(p.ty, target.ty, "-{name}: install-agent.ps1 and deploy-agent.ps1 disagree on its type");
    }
    let wrapper_code = Script::load("deploy/install-agent.ps1").code();
    assert!(wrapper_code.contains("@PSBoundParameters"), "install-agent.ps1 does not forward its parameters");
}

#[test]
fn every_call_names_parameters_its_function_declares() {
    let module = Script::load(MODULE);
    let exported = module.functions();
    for name in SCRIPTS {
        let script = Script::load(name);
        let mut functions = exported.clone();
        functions.extend(script.functions());
        // Every module function a script calls exists (a typo would only fail on Windows).
        let code = script.code();
        for word in code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')) {
            if word.contains("-Kanade") && !word.starts_with('-') {
                assert!(functions.contains_key(word), "{name}: calls {word}, which nothing defines");
            }
        }
        for (function, params) in &functions {
            let Some(params) = params else { continue };
            let declared: BTreeSet<String> = params.iter().map(|p| p.name.to_ascii_lowercase()).collect();
            for call in script.calls(function) {
                for passed in call {
                    assert!(
                        declared.contains(&passed.to_ascii_lowercase()),
                        "{name}: {function} is called with -{passed}, which it does not declare"
                    );
                }
            }
        }
    }
    // What the scripts call from the module is exported by it.
    let module_code = module.code();
    assert!(module_code.contains("Export-ModuleMember -Function *-Kanade*, Invoke-Sc, Invoke-Icacls"));
    for function in exported.keys() {
        assert!(
            function.contains("-Kanade") || ["Invoke-Sc", "Invoke-Icacls"].contains(&function.as_str()),
            "{function} is defined by the module but not exported"
        );
    }
}

/// One row of the module's table of components.
#[derive(Debug, PartialEq, Eq)]
struct Component {
    service: Option<String>,
    exe: String,
    event_source: Option<String>,
    firewall_rules: Vec<String>,
}

impl Component {
    fn new(service: Option<&str>, exe: &str, event_source: Option<&str>, firewall_rules: &[&str]) -> Self {
        Self {
            service: service.map(str::to_owned),
            exe: exe.to_owned(),
            event_source: event_source.map(str::to_owned),
            firewall_rules: firewall_rules.iter().map(|r| (*r).to_owned()).collect(),
        }
    }
}

/// The module's table of components, by role: `$script:Components = @{ <role> = @{ Service = ...; ... } ... }`.
fn component_table() -> BTreeMap<String, Component> {
    let module = Script::load(MODULE);
    let statements = module.statements();
    let table = statements.iter().find(|s| s.starts_with("$script:Components = @{")).expect("the components' table");
    let mut components = BTreeMap::new();
    for role in ["agent", "backend", "nats", "client"] {
        let row = table.split(&format!(" {role} = @{{")).nth(1).unwrap_or_else(|| panic!("no {role} in {table}"));
        let row = row.split('}').next().unwrap();
        let value = |key: &str| -> Option<String> {
            let rest = row.split(&format!("{key} = ")).nth(1).unwrap_or_else(|| panic!("no {key} in {row}"));
            rest.strip_prefix('\'').map(|r| r.split('\'').next().unwrap().to_owned())
        };
        let rules = row.split("FirewallRules = @(").nth(1).unwrap().split(')').next().unwrap();
        let firewall_rules =
            rules.split(',').map(|r| r.trim().trim_matches('\'').to_owned()).filter(|r| !r.is_empty()).collect();
        let component = Component {
            service: value("Service"),
            exe: value("Exe").unwrap(),
            event_source: value("EventSource"),
            firewall_rules,
        };
        components.insert(role.to_owned(), component);
    }
    components
}

#[test]
fn services_executables_event_sources_and_firewall_rules_are_the_contracts() {
    let table = component_table();
    let agent = Component::new(Some("kanade-agent"), "kanade-agent.exe", Some("kanade-agent"), &[]);
    let backend =
        Component::new(Some("kanade-backend"), "kanade-backend.exe", Some("kanade-backend"), &["kanade-backend-http"]);
    let nats = Component::new(
        Some("nats-server"),
        "nats-server.exe",
        None,
        &["kanade-nats-clients", "kanade-nats-monitoring"],
    );
    let client = Component::new(None, "kanade-client.exe", None, &[]);
    assert_eq!(
        [&table["agent"], &table["backend"], &table["nats"], &table["client"]],
        [&agent, &backend, &nats, &client]
    );

    // The Rust side knows the services by the same names.
    assert_eq!(kanade_agent::platform::SERVICE_NAME, "kanade-agent");
    assert!(read("crates/kanade-backend/src/main.rs").contains("kanade_service::run(\"kanade-backend\""));
    let event_log = read("crates/kanade-service/src/event_log.rs");
    let module = Script::load(MODULE);
    let module_code = module.text.clone();
    for (expected, in_module) in [
        (
            r"HKLM\SYSTEM\CurrentControlSet\Services\EventLog\Application\<name>",
            r"$script:EventLogRoot = 'HKLM:\SYSTEM\CurrentControlSet\Services\EventLog\Application'",
        ),
        (
            r"%SystemRoot%\Microsoft.NET\Framework64\v4.0.30319\EventLogMessages.dll",
            r"$script:EventMessageFile = '%SystemRoot%\Microsoft.NET\Framework64\v4.0.30319\EventLogMessages.dll'",
        ),
        ("`TypesSupported` (REG_DWORD) = 7", "-Name TypesSupported -PropertyType DWord -Value 7"),
        ("`EventMessageFile` (REG_EXPAND_SZ)", "-Name EventMessageFile -PropertyType ExpandString"),
    ] {
        assert!(event_log.contains(expected), "kanade-service's event_log.rs no longer says {expected}");
        assert!(module_code.contains(in_module), "the module does not have {in_module}");
    }

    // Each deploy script is its own role, and opens the firewall for exactly that role's rules.
    for (role, file) in [("agent", "agent"), ("backend", "backend"), ("nats", "nats"), ("client", "client")] {
        let name = format!("deploy/windows/deploy-{file}.ps1");
        let script = Script::load(&name);
        let roles: Vec<String> = script
            .statements()
            .iter()
            .filter_map(|s| s.split("Get-KanadeComponent -Role ").nth(1))
            .map(|r| r.to_owned())
            .collect();
        assert_eq!(roles, [role], "{name}: Get-KanadeComponent");
        let mut opened: Vec<String> = script
            .statements()
            .iter()
            .filter_map(|s| s.split("Set-KanadeFirewallRule -Name '").nth(1))
            .map(|r| r.split('\'').next().unwrap().to_owned())
            .collect();
        opened.sort();
        assert_eq!(opened, table[role].firewall_rules, "{name}: firewall rules");
    }
    let nats = Script::load("deploy/windows/deploy-nats.ps1").statements();
    let rule = |name: &str| nats.iter().find(|s| s.contains(&format!("-Name '{name}'"))).unwrap().clone();
    assert!(rule("kanade-nats-clients").contains("-Port 4222"));
    let monitoring = rule("kanade-nats-monitoring");
    assert!(monitoring.contains("-Port 8222") && monitoring.contains("-RemoteAddress $MonitorRemoteAddress"));
    let backend = Script::load("deploy/windows/deploy-backend.ps1").statements();
    assert!(backend.iter().any(|s| s.contains("-Name 'kanade-backend-http'") && s.contains("-Port $Port")));

    // The services' command lines, start types and failure actions.
    for (file, command, delayed) in [
        ("agent", "service --config `\"$configPath`\" --log-dir `\"$logDir`\"", true),
        ("backend", "service --config `\"$configPath`\"", false),
        ("nats", "-c `\"$configPath`\"", false),
    ] {
        let statements = Script::load(&format!("deploy/windows/deploy-{file}.ps1")).statements();
        let line = statements.iter().find(|s| s.starts_with("$commandLine = ")).unwrap();
        assert!(line.contains(command), "deploy-{file}.ps1: {line}");
        let register = statements.iter().find(|s| s.starts_with("Register-KanadeService ")).unwrap();
        assert_eq!(register.contains("-DelayedStart"), delayed, "deploy-{file}.ps1: {register}");
        assert!(register.contains("-Recreate:$Recreate"), "deploy-{file}.ps1: -Recreate is not passed on");
    }
    for expected in [
        "$script:FailureActions = 'restart/2000/restart/2000/restart/10000'",
        "Invoke-Sc failure $Name reset= 86400 actions= $script:FailureActions",
        "Invoke-Sc failureflag $Name 1",
        "Invoke-Sc config $Name start= delayed-auto",
        "Invoke-Sc config $Name start= auto",
    ] {
        assert!(module_code.contains(expected), "the module does not have {expected}");
    }
    // sc.exe and icacls.exe only through the helpers that check their exit codes.
    for name in SCRIPTS {
        let code = Script::load(name).code().to_ascii_lowercase();
        let expected = usize::from(name == MODULE);
        assert_eq!(code.matches("sc.exe").count(), expected, "{name}: sc.exe outside Invoke-Sc");
        assert_eq!(code.matches("icacls.exe").count(), expected, "{name}: icacls.exe outside Invoke-Icacls");
    }
    assert!(module_code.contains("if ($LASTEXITCODE -ne 0)"));
}

#[test]
fn secrets_go_to_the_registry_keys_of_the_contract_and_nowhere_else() {
    let module = Script::load(MODULE);
    let code = module.text.clone();
    assert!(code.contains(r"$script:SecretsRoot = 'HKLM:\SOFTWARE\Kanade'"));
    assert!(code.contains(r#"SecretsKey    = "$script:SecretsRoot\$Role""#));
    assert!(code.contains(r#"$key = "$script:SecretsRoot\$Role""#));
    // kanade-service reads the same key, and values of the type written here.
    let reader = read("crates/kanade-service/src/secrets.rs");
    assert!(reader.contains(r#"format!(r"SOFTWARE\Kanade\{role}")"#) && reader.contains("REG_SZ"));
    assert!(code.contains("New-ItemProperty -LiteralPath $key -Name $name -PropertyType String"));
    // The key's ACL: protected, SYSTEM and Administrators by SID, set before any value goes in.
    for expected in [
        "$script:SystemSid = 'S-1-5-18'",
        "$script:AdministratorsSid = 'S-1-5-32-544'",
        "$acl.SetAccessRuleProtection($true, $false)",
        "Security.AccessControl.RegistryAccessRule",
        "New-Object Security.Principal.SecurityIdentifier $sid",
        "Set-Acl -LiteralPath $Path -AclObject $acl",
    ] {
        assert!(code.contains(expected), "the module does not have {expected}");
    }
    let body =
        &code[code.find("function Set-KanadeSecrets").unwrap()..code.find("function Remove-KanadeSecrets").unwrap()];
    let protect = body.rfind("Protect-KanadeRegistryKey -Path $key").unwrap();
    assert!(protect < body.find("New-ItemProperty").unwrap(), "values go in before the key is protected");
    for localised in ["Administrators:", "SYSTEM:", "Administrators\"", "'SYSTEM'"] {
        assert!(!module.code().contains(localised) && !module.strings().iter().any(|s| s.contains(localised)));
    }

    // Which values each role's script writes, from which parameters (nats and client: none).
    let expected: [(&str, &[(&str, &str)]); 4] = [
        ("agent", &[("KANADE_NATS_TOKEN", "$NatsToken"), ("KANADE_ENROLL_TOKEN", "$EnrollToken")]),
        ("backend", &[("KANADE_NATS_TOKEN", "$NatsToken"), ("KANADE_AUTH_STATIC_TOKEN", "$StaticToken")]),
        ("nats", &[]),
        ("client", &[]),
    ];
    for (role, pairs) in expected {
        let name = format!("deploy/windows/deploy-{role}.ps1");
        let statements = Script::load(&name).statements();
        let calls: Vec<&String> = statements.iter().filter(|s| s.contains("Set-KanadeSecrets")).collect();
        if pairs.is_empty() {
            assert!(calls.is_empty(), "{name}: writes registry secrets");
            continue;
        }
        let values: BTreeMap<&str, &str> = pairs.iter().copied().collect();
        assert_eq!(calls.len(), 1, "{name}: {calls:?}");
        let call = calls[0];
        assert!(call.contains(&format!("-Role {role} ")), "{name}: {call}");
        let table = call.split("@{").nth(1).unwrap().trim_end_matches('}');
        let written: BTreeMap<&str, &str> = table
            .split_whitespace()
            .collect::<Vec<_>>()
            .chunks(3)
            .map(|c| {
                assert_eq!(c.get(1), Some(&"="), "{name}: {table}");
                (c[0], c[2])
            })
            .collect();
        assert_eq!(written, values, "{name}");
    }
    // The components read these variables.
    let shared = read("crates/kanade-shared/src/config.rs");
    let backend = read("crates/kanade-backend/src/config.rs");
    for variable in ["\"KANADE_NATS_TOKEN\"", "\"KANADE_ENROLL_TOKEN\""] {
        assert!(shared.contains(variable), "kanade-shared no longer reads {variable}");
    }
    assert!(backend.contains("\"KANADE_AUTH_STATIC_TOKEN\""), "the backend no longer reads KANADE_AUTH_STATIC_TOKEN");
    assert!(read("crates/kanade-agent/src/main.rs").contains("machine_secrets(\"agent\")"));
    assert!(read("crates/kanade-backend/src/main.rs").contains("machine_secrets(\"backend\")"));

    // Every registry path a script names is one of the contract's.
    let allowed = [
        r"HKLM:\SOFTWARE\Kanade",
        r"HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Run",
        r"HKLM:\SYSTEM\CurrentControlSet\Services\EventLog\Application",
        r"HKLM:\SYSTEM\CurrentControlSet\Services\nats-server",
    ];
    for name in SCRIPTS {
        for s in Script::load(name).strings() {
            if s.to_ascii_uppercase().starts_with("HKLM:") || s.to_ascii_uppercase().starts_with("HKCU:") {
                assert!(allowed.contains(&s.as_str()), "{name}: names the registry path {s}");
            }
        }
    }
    // The client starts at sign-in from the Run key's value kanade-client, which undeploy removes.
    for name in ["deploy/windows/deploy-client.ps1", "deploy/windows/undeploy.ps1"] {
        let statements = Script::load(name).statements();
        assert!(statements.iter().any(|s| s.contains("-Name 'kanade-client'")), "{name}");
    }
    let undeploy = Script::load("deploy/windows/undeploy.ps1").code();
    assert!(undeploy.contains("Remove-KanadeSecrets -Role $Role"));
}

#[test]
fn no_secret_reaches_a_command_line_the_console_or_a_config_file() {
    let mut leaks = Vec::new();
    for name in SCRIPTS {
        let script = Script::load(name);
        leaks.extend(secret_leaks(&script).into_iter().map(|s| format!("{name}: {s}")));
    }
    assert!(leaks.is_empty(), "{leaks:#?}");
    // The module is handed secrets as `$Value` / `$Values`: no statement that shows or runs anything has them.
    let module = Script::load(MODULE);
    for statement in module.statements() {
        let lower = statement.to_ascii_lowercase();
        let holds_value = lower.contains("$value ") || lower.contains("$value)") || lower.contains("$values");
        let holds_value = holds_value || lower.ends_with("$value") || lower.contains("$value.");
        if holds_value && SECRET_SINKS.iter().any(|sink| lower.contains(sink)) {
            panic!("the module shows or runs a value it was handed: {statement}");
        }
    }
    // The broker's token is the only secret written to a file, through -Secret (SYSTEM and Administrators only).
    let nats = Script::load("deploy/windows/deploy-nats.ps1").statements();
    let writes: Vec<&String> = nats.iter().filter(|s| s.contains("$authInclude -Text $authText")).collect();
    assert!(writes.len() == 1 && writes[0].contains("-Secret"), "{writes:?}");
}

#[test]
fn relative_paths_name_files_that_exist_and_replaced_lines_are_in_the_examples() {
    for name in SCRIPTS {
        let script = Script::load(name);
        let folder = repo().join(name).parent().unwrap().to_owned();
        let mut referenced = Vec::new();
        for statement in script.statements() {
            for part in statement.split("Join-Path $PSScriptRoot '").skip(1) {
                let relative = part.split('\'').next().unwrap().replace('\\', "/");
                assert!(folder.join(&relative).is_file(), "{name}: names {relative}, which is not in the repository");
                referenced.push(relative);
            }
        }
        if name != MODULE {
            let wanted =
                if name.ends_with("install-agent.ps1") { "windows/deploy-agent.ps1" } else { "Kanade.Deploy.psm1" };
            assert!(referenced.iter().any(|r| r == wanted), "{name}: does not use {wanted}: {referenced:?}");
        }
    }
    for (file, example) in [("backend", "deploy/backend.example.toml"), ("nats", "deploy/nats-server.conf")] {
        let name = format!("deploy/windows/deploy-{file}.ps1");
        let statements = Script::load(&name).statements();
        let anchors: Vec<String> = statements
            .iter()
            .filter(|s| s.contains("Set-KanadeConfigLine"))
            .filter_map(|s| s.split("-Line '").nth(1))
            .map(|a| a.split('\'').next().unwrap().to_owned())
            .collect();
        assert!(anchors.len() >= 2, "{name}: {anchors:?}");
        let text = read(example);
        for anchor in anchors {
            let count = text.lines().filter(|l| l.trim() == anchor).count();
            assert_eq!(count, 1, "{example} holds the line `{anchor}` {count} times; {name} replaces it once");
        }
    }
    // The backend's and the broker's files of `kanade security init`: the same as deploy/linux copies, and never the
    // trust root's private key.
    let list = |statements: &[String], variable: &str| -> Vec<String> {
        let s = statements.iter().find(|s| s.starts_with(&format!("{variable} = @("))).unwrap();
        s.split("@(")
            .nth(1)
            .unwrap()
            .trim_end_matches(')')
            .split(',')
            .map(|f| f.trim().trim_matches('\'').to_owned())
            .collect()
    };
    let backend = Script::load("deploy/windows/deploy-backend.ps1").statements();
    let secrets = list(&backend, "$securitySecrets");
    assert_eq!(secrets.len() + list(&backend, "$securityPublic").len(), 8);
    assert!(read("deploy/linux/deploy-backend.sh").contains(&format!("for f in {}; do", secrets.join(" "))));
    assert_eq!(list(&backend, "$securityPublic"), ["ca.pem", "trust-root.pub"]);
    let nats = Script::load("deploy/windows/deploy-nats.ps1").statements();
    let mut broker = list(&nats, "$brokerSecrets");
    broker.extend(list(&nats, "$brokerPublic"));
    broker.sort();
    assert_eq!(broker, ["nats-security.conf", "nats-server-key.pem", "nats-server.pem", "operator.jwt"]);
    for name in SCRIPTS {
        assert!(!Script::load(name).strings().iter().any(|s| s.contains("trust-root.key")), "{name}: trust-root.key");
    }
}

#[test]
fn install_md_passes_the_windows_scripts_only_parameters_they_declare() {
    let mut checked = 0;
    for command in code_block_commands(&install_md_windows_section()) {
        let words: Vec<&str> = command.split_whitespace().collect();
        let Some(first) = words.iter().position(|w| w.ends_with(".ps1")) else { continue };
        if first > 0 && !["&", "-File"].contains(&words[first - 1]) {
            continue;
        }
        let file = words[first].replace('\\', "/");
        let file = file.rsplit('/').next().unwrap();
        let path = if file == "install-agent.ps1" {
            "deploy/install-agent.ps1".to_owned()
        } else {
            format!("deploy/windows/{file}")
        };
        assert!(repo().join(&path).is_file(), "docs/INSTALL.md runs {file}, which is not in deploy/windows");
        let params = script_params(&Script::load(&path));
        let mut depth = 0i32;
        for word in &words[first + 1..] {
            if depth == 0 && word.starts_with('-') && word[1..].starts_with(|c: char| c.is_ascii_alphabetic()) {
                let name: String = word[1..].chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
                let known = params
                    .values()
                    .any(|p| p.name.eq_ignore_ascii_case(&name) || p.attributes.contains(&format!("Alias('{name}')")));
                assert!(known, "docs/INSTALL.md passes -{name} to {file}, which does not declare it: {command}");
                checked += 1;
            }
            depth += word.matches('(').count() as i32 - word.matches(')').count() as i32;
        }
    }
    assert!(checked >= 10, "docs/INSTALL.md's Windows section runs the scripts with only {checked} parameters");
}

// ---------------------------------------------------------------------------------------------------------------
// Regressions: each test pins the fix of a review finding.

#[test]
fn nats_service_gets_a_startup_delay_long_enough_for_jetstream_recovery() {
    // nats-server's server/service_windows.go reads NATS_STARTUP_DELAY with time.ParseDuration (default 10s) and fails
    // the service when the server does not accept connections within it; JetStream recovers its store before that.
    let nats = Script::load("deploy/windows/deploy-nats.ps1");
    let statements = nats.statements();
    let position = |needle: &str| {
        statements.iter().position(|s| s.contains(needle)).unwrap_or_else(|| panic!("deploy-nats.ps1: no {needle}"))
    };
    let service = table_service("nats");
    assert!(statements.contains(&format!(r"$serviceKey = 'HKLM:\SYSTEM\CurrentControlSet\Services\{service}'")));
    let delay = statements
        .iter()
        .find_map(|s| s.strip_prefix("$startupDelay = 'NATS_STARTUP_DELAY="))
        .expect("deploy-nats.ps1 sets NATS_STARTUP_DELAY")
        .trim_end_matches('\'');
    // A Go duration in whole minutes ("5m"), at least five of them.
    let minutes: u64 = delay.strip_suffix('m').and_then(|m| m.parse().ok()).unwrap_or_else(|| panic!("{delay}"));
    assert!(minutes >= 5, "NATS_STARTUP_DELAY={delay}");
    let write = &statements[position("-Name Environment")];
    for expected in
        ["New-ItemProperty -LiteralPath $serviceKey", "-PropertyType MultiString", "$startupDelay", "-Force"]
    {
        assert!(write.contains(expected), "deploy-nats.ps1: {write}");
    }
    // Other entries of the value are kept; an older NATS_STARTUP_DELAY is not.
    assert!(statements[position("$environment = @(")].contains("-notlike 'NATS_STARTUP_DELAY=*'"));
    // Written once the service is registered (its key exists), before it starts; the start waits at least as long.
    assert!(position("Register-KanadeService ") < position("-Name Environment"));
    let start = &statements[position("Start-KanadeService ")];
    assert!(position("-Name Environment") < position("Start-KanadeService "));
    let timeout: u64 = start
        .split("-TimeoutSeconds ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("deploy-nats.ps1 starts the service without -TimeoutSeconds: {start}"));
    assert!(timeout > minutes * 60, "deploy-nats.ps1 waits {timeout} s for a startup delay of {delay}");
    // Start-KanadeService bounds its wait by -TimeoutSeconds itself: Start-Service would wait without end.
    let module = Script::load(MODULE);
    let body = function_body(&module, "Start-KanadeService");
    assert!(body.contains("[int] $TimeoutSeconds = 60") && body.contains("-gt $TimeoutSeconds"), "{body}");
    assert!(!module.code().contains("Start-Service -Name"), "the module waits in Start-Service");
}

/// The service name of a role in the module's table.
fn table_service(role: &str) -> String {
    component_table()[role].service.clone().unwrap()
}

#[test]
fn remove_service_goes_on_when_the_service_is_already_marked_for_deletion() {
    // A rerun after a first run that timed out waiting: sc.exe delete exits with 1072.
    let module = Script::load(MODULE);
    let invoke = function_body(&module, "Invoke-Sc");
    assert!(invoke.contains("[int[]] $SuccessCode = @(0)"), "{invoke}");
    assert!(invoke.contains("if ($SuccessCode -notcontains $LASTEXITCODE)"), "{invoke}");
    let remove = function_body(&module, "Remove-KanadeService");
    let delete = remove.find("Invoke-Sc delete $Name -SuccessCode 0, 1072").expect("1072 is not accepted");
    assert!(delete < remove.find("while (Get-Service -Name $Name").unwrap(), "the wait comes after the delete");
    assert_eq!(module.code().matches("Invoke-Sc delete").count(), 1);
}

#[test]
fn stopping_a_service_that_is_still_starting_does_not_abort_the_run() {
    // Stop-Service fails with 1061 while a service is starting; under 'Stop' that ended the deploy.
    let module = Script::load(MODULE);
    let stop = function_body(&module, "Stop-KanadeService");
    let code: String = Script::parse("stop", stop).statements().join("\n");
    for line in code.lines().filter(|l| l.contains("Stop-Service")) {
        assert!(line.contains("-ErrorAction SilentlyContinue") && line.contains("-NoWait"), "{line}");
    }
    for expected in [
        "if ($waited -gt 30) { break }",
        "Invoke-Sc config $Name start= disabled",
        "Get-CimInstance -ClassName Win32_Service -Filter \"Name='$Name'\").ProcessId",
        "Stop-Process -Id $processId -Force",
        "Wait-Process -Id $processId",
        "$service.WaitForStatus('Stopped'",
    ] {
        assert!(stop.contains(expected), "Stop-KanadeService does not have {expected}");
    }
    // The kill path leaves the service disabled, so its failure actions do not start it again; every deploy script
    // that stops its service registers it afterwards, which sets the start type back.
    let register = function_body(&module, "Register-KanadeService");
    assert!(register.contains("Invoke-Sc config $Name start= auto"));
    for role in ["agent", "backend", "nats"] {
        let statements = Script::load(&format!("deploy/windows/deploy-{role}.ps1")).statements();
        let stops = statements.iter().position(|s| s.starts_with("Stop-KanadeService ")).unwrap();
        let registers = statements.iter().position(|s| s.starts_with("Register-KanadeService ")).unwrap();
        assert!(stops < registers, "deploy-{role}.ps1: does not register the service after stopping it");
    }
}

#[test]
fn token_mode_backend_upgrades_with_binary_alone() {
    // "no ...\backend.creds yet" was thrown at a backend that authenticates by token and was upgraded with -Binary.
    let statements = Script::load("deploy/windows/deploy-backend.ps1").statements();
    let position = |needle: &str| statements.iter().position(|s| s.starts_with(needle)).unwrap();
    let token_mode = &statements[position("elseif ($NatsToken")];
    assert!(token_mode.contains("(Test-KanadeSecret -Role backend -Name 'KANADE_NATS_TOKEN')"), "{token_mode}");
    assert!(token_mode.contains("-not $writeConfig"), "{token_mode}");
    assert!(position("$writeConfig = ") < position("elseif ($NatsToken"));
    let module = Script::load(MODULE);
    let test = function_body(&module, "Test-KanadeSecret");
    assert!(test.contains(r#"$key = "$script:SecretsRoot\$Role""#) && test.contains("GetValueNames()"), "{test}");
}

#[test]
fn no_example_types_a_token() {
    let mut found = Vec::new();
    for name in SCRIPTS.iter().filter(|n| n.starts_with("deploy/windows/")) {
        for example in help_examples(&read(name)) {
            found.extend(typed_secrets(&example).into_iter().map(|t| format!("{name}: {t}")));
        }
    }
    let commands = code_block_commands(&install_md_windows_section());
    let with_tokens = commands.iter().filter(|c| !typed_secrets(c).is_empty() || c.contains("Token ")).count();
    assert!(with_tokens >= 3, "docs/INSTALL.md's Windows section passes tokens {with_tokens} times");
    for command in &commands {
        found.extend(typed_secrets(command).into_iter().map(|t| format!("docs/INSTALL.md: {t}")));
    }
    assert!(found.is_empty(), "tokens typed out, which PSReadLine keeps in its history: {found:#?}");
    // The documents say what is true: the services' command lines never hold a token, the deploy command's does.
    let section = install_md_windows_section();
    assert!(!section.contains("Tokens never go on a command line"));
    assert!(section.contains("ConsoleHost_history.txt"));
}

#[test]
fn undeploy_refuses_a_folder_that_is_not_the_roles_own() {
    // `-Purge -DataDir C:\ProgramData\kanade` would have removed every role's data.
    let statements = Script::load("deploy/windows/undeploy.ps1").statements();
    let position = |needle: &str| {
        statements.iter().position(|s| s.starts_with(needle)).unwrap_or_else(|| panic!("undeploy.ps1: no {needle}"))
    };
    let first_removal = ["Remove-KanadeService ", "Stop-KanadeProcesses ", "Remove-KanadePath "]
        .iter()
        .filter_map(|n| statements.iter().position(|s| s.starts_with(n)))
        .min()
        .unwrap();
    for (variable, what) in [("$InstallDir", "-InstallDir"), ("$DataDir", "-DataDir")] {
        let check = position(&format!("Assert-KanadeRoleFolder -Role $Role -Path {variable} -What '{what}'"));
        assert!(
            position(&format!("{variable} = Resolve-KanadeTargetPath")) < check,
            "{variable} is checked unresolved"
        );
        assert!(check < first_removal, "undeploy.ps1 removes something before checking {what}");
    }
    let module = Script::load(MODULE);
    let assert = function_body(&module, "Assert-KanadeRoleFolder");
    for expected in [
        r#"@($Role, "kanade-$Role") -notcontains $leaf"#,
        "foreach ($root in @($env:ProgramData, $env:ProgramFiles))",
        "$shared = Join-Path $root 'kanade'",
        "$script:Components.Keys | Where-Object { $_ -ne $Role }",
        r#"$protected.StartsWith("$full\", [StringComparison]::OrdinalIgnoreCase)"#,
        "$protected.Equals($full, [StringComparison]::OrdinalIgnoreCase)",
    ] {
        assert!(assert.contains(expected), "Assert-KanadeRoleFolder does not have {expected}");
    }
    // The help says the rule.
    let help = read("deploy/windows/undeploy.ps1");
    let data_dir = help.split(".PARAMETER DataDir").nth(1).unwrap().split(".EXAMPLE").next().unwrap();
    assert!(data_dir.contains("kanade-<role>") && data_dir.contains("refused"), "{data_dir}");
}

/// The installer jobs' Windows script (jobs/scripts/install-kanade.ps1): ASCII, Windows PowerShell 5.1 syntax, and
/// the same knobs, in the same order, as its Linux twin (which runs end to end in kanade-faults/tests/install.rs).
#[test]
fn the_installer_script_is_5_1_and_has_its_twin_s_knobs() {
    // build-release.ps1 (the documents' `build-release -Roles`) is held to the same syntax rules.
    for name in ["jobs/scripts/install-kanade.ps1", "build-release.ps1"] {
        let text = read(name);
        assert!(text.is_ascii(), "{name}: not ASCII; Windows PowerShell 5.1 reads a file without a BOM as ANSI");
        let script = Script::load(name);
        let mut found = newer_syntax(&script);
        found.extend(scope_mistakes(&script));
        assert!(found.is_empty(), "{found:#?}");
    }
    let name = "jobs/scripts/install-kanade.ps1";
    let text = read(name);
    assert!(text.contains("$ErrorActionPreference = 'Stop'"));
    let knobs = |text: &str, prefix: &str| -> Vec<String> {
        text.lines()
            .take_while(|l| !l.starts_with("set -eu") && !l.starts_with("$ErrorActionPreference"))
            .filter_map(|l| l.strip_prefix(prefix)?.split([' ', '=']).next().map(str::to_owned))
            .filter(|k| k.chars().next().is_some_and(|c| c.is_ascii_uppercase()))
            .collect()
    };
    let windows = knobs(&text, "$");
    let linux: Vec<String> =
        knobs(&read("jobs/scripts/install-kanade.sh"), "").into_iter().filter(|k| k != "AgentSourceCaFile").collect();
    assert_eq!(windows, linux, "the knobs of the two installer scripts");
    for knob in ["Component", "AgentSourceUrl", "AgentSourceVersion", "AgentSourceSha256", "AgentSourceAuthToken"] {
        assert!(windows.iter().any(|k| k == knob), "{knob} missing");
    }
    // The token never goes into output or onto a command line: only into the BITS header.
    let uses: Vec<&str> = text.lines().filter(|l| l.contains("$AgentSourceAuthToken")).map(str::trim).collect();
    assert!(
        uses.iter()
            .all(|l| l.starts_with("$AgentSourceAuthToken =") || l.starts_with("if (") || l.contains("-CustomHeaders")),
        "{uses:#?}"
    );
}
