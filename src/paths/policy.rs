//! The pure rules of the path policy: no file system, no system calls, so every platform's
//! rules can be tested — and fuzzed — on any host.
//!
//! Two steps. [`Rules::evaluate`] reads the text as given (suspicious characters, `~`,
//! relative paths, the platform's name rules) and normalises it lexically;
//! [`Rules::locate`] then compares a path component by component against the restricted
//! and allowed roots. The validator calls `locate` with both the path as written and the
//! canonical path the file system resolved it to, which is how a symlink escape is told
//! apart from a path that is plainly restricted.

use std::fmt;

use super::check::{Check, CheckCode};

/// Whose path rules apply. The validator always uses the host's ([`Platform::current`]);
/// the others exist so their rules are testable anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Platform {
    /// Linux: `/`-separated, case-sensitive.
    Linux,
    /// macOS: `/`-separated; compared case-insensitively because its default file system is.
    MacOs,
    /// Windows: drive or UNC prefix, `\` or `/` separators, case-insensitive.
    Windows,
}

const LINUX_RESTRICTED: [&str; 14] = [
    "/bin",
    "/sbin",
    "/usr/bin",
    "/usr/sbin",
    "/lib",
    "/lib64",
    "/usr/lib",
    // The same directory as `/lib64` on merged-/usr systems: refusing one and not the other
    // would only depend on how the client spelled it.
    "/usr/lib64",
    "/etc",
    "/sys",
    "/proc",
    "/dev",
    "/boot",
    "/run",
];

const MACOS_RESTRICTED: [&str; 7] = [
    "/System",
    "/bin",
    "/sbin",
    "/usr/bin",
    "/usr/sbin",
    "/private/etc",
    "/private/var/db",
];

const WINDOWS_RESTRICTED: [&str; 6] = [
    r"C:\Windows",
    r"C:\Program Files",
    r"C:\Program Files (x86)",
    r"C:\ProgramData",
    r"C:\Users\Default",
    r"C:\$Recycle.Bin",
];

/// Device names Windows reserves in every directory, with or without an extension.
const WINDOWS_RESERVED: [&str; 28] = [
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
    "COM9", "COM¹", "COM²", "COM³", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8",
    "LPT9", "LPT¹", "LPT²", "LPT³",
];

const WINDOWS_INVALID: [char; 7] = ['<', '>', ':', '"', '|', '?', '*'];

/// Characters a POSIX shell would interpret; harmless to us (agents get their directory
/// directly, never through a shell) but a trap for scripts that paste the path.
const SHELL_METACHARACTERS: [char; 17] = [
    '`', '$', ';', '&', '|', '<', '>', '(', ')', '{', '}', '*', '?', '!', '\'', '"', '\\',
];

/// The same for cmd and PowerShell, less what Windows forbids anyway (`windows_invalid_character`)
/// and the parentheses of `Program Files (x86)`.
const WINDOWS_SHELL_METACHARACTERS: [char; 7] = ['`', '$', ';', '&', '%', '^', '!'];

/// Windows paths longer than this are refused: the classic `MAX_PATH` (260) minus room for
/// the files a session creates inside.
pub const WINDOWS_MAX_PATH: usize = 250;

/// The longest component Linux and macOS file systems accept, in bytes.
pub const UNIX_NAME_MAX: usize = 255;

impl Platform {
    /// The platform this binary was built for.
    pub const fn current() -> Platform {
        if cfg!(windows) {
            Platform::Windows
        } else if cfg!(target_os = "macos") {
            Platform::MacOs
        } else {
            Platform::Linux
        }
    }

    /// The built-in restricted roots of DESIGN.md's path policy.
    pub fn restricted_roots(self) -> &'static [&'static str] {
        match self {
            Platform::Linux => &LINUX_RESTRICTED,
            Platform::MacOs => &MACOS_RESTRICTED,
            Platform::Windows => &WINDOWS_RESTRICTED,
        }
    }

    /// The longest path the OS accepts, in bytes (`PATH_MAX` less its NUL), or UTF-16 units
    /// on Windows (our own, stricter limit).
    pub const fn max_path(self) -> usize {
        match self {
            Platform::Linux => 4095,
            Platform::MacOs => 1023,
            Platform::Windows => WINDOWS_MAX_PATH,
        }
    }

    const fn case_insensitive(self) -> bool {
        matches!(self, Platform::MacOs | Platform::Windows)
    }

    fn is_separator(self, c: char) -> bool {
        c == '/' || (self == Platform::Windows && c == '\\')
    }
}

/// A path split into components with `.` and `..` resolved lexically, in a platform's
/// syntax. Lexical resolution is only right where no symlink is involved, which is why the
/// validator also resolves the path on the file system and checks both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalPath {
    platform: Platform,
    /// `C:` or `\\server\share` on Windows; empty elsewhere.
    prefix: String,
    /// Starts at a root (`/`, or `\` after a Windows prefix).
    rooted: bool,
    parts: Vec<String>,
}

impl NormalPath {
    /// Splits `text` by `platform`'s rules. `..` at the root stays at the root, as the OS
    /// does; in a relative path it is kept.
    pub fn parse(platform: Platform, text: &str) -> NormalPath {
        let (prefix, rest) = match platform {
            Platform::Windows => split_windows_prefix(text),
            Platform::Linux | Platform::MacOs => (String::new(), text),
        };
        let rooted = rest.starts_with(|c| platform.is_separator(c))
            || prefix.starts_with(|c| platform.is_separator(c));
        let mut parts: Vec<String> = Vec::new();
        for part in rest.split(|c| platform.is_separator(c)) {
            match part {
                "" | "." => {}
                ".." => match parts.last() {
                    Some(last) if last != ".." => {
                        parts.pop();
                    }
                    _ if rooted => {}
                    _ => parts.push(part.to_owned()),
                },
                _ => parts.push(part.to_owned()),
            }
        }
        NormalPath {
            platform,
            prefix,
            rooted,
            parts,
        }
    }

    /// Absolute: rooted, and on Windows with a drive or UNC prefix too (`\x` and `C:x`
    /// depend on the current drive or directory).
    pub fn is_absolute(&self) -> bool {
        self.rooted && (self.platform != Platform::Windows || !self.prefix.is_empty())
    }

    /// The root directory of its file system (`/`, `C:\`, `\\server\share\`).
    pub fn is_root(&self) -> bool {
        self.is_absolute() && self.parts.is_empty()
    }

    /// Component-wise: `/library` does not start with `/lib`. Case-insensitive where the
    /// platform's file system is.
    pub fn starts_with(&self, root: &NormalPath) -> bool {
        let same = |a: &str, b: &str| {
            if self.platform.case_insensitive() {
                eq_ignore_case(a, b)
            } else {
                a == b
            }
        };
        self.rooted == root.rooted
            && same(&self.prefix, &root.prefix)
            && root.parts.len() <= self.parts.len()
            && root.parts.iter().zip(&self.parts).all(|(r, p)| same(r, p))
    }
}

impl fmt::Display for NormalPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let separator = if self.platform == Platform::Windows {
            "\\"
        } else {
            "/"
        };
        f.write_str(&self.prefix)?;
        if self.rooted {
            f.write_str(separator)?;
        }
        f.write_str(&self.parts.join(separator))
    }
}

fn eq_ignore_case(a: &str, b: &str) -> bool {
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}

/// `C:` (drive) or `\\server\share` (UNC) and the rest of the text.
fn split_windows_prefix(text: &str) -> (String, &str) {
    let mut chars = text.chars();
    if let (Some(letter), Some(':')) = (chars.next(), chars.next()) {
        if letter.is_ascii_alphabetic() {
            return (format!("{}:", letter.to_ascii_uppercase()), &text[2..]);
        }
    }
    let is_sep = |c: char| c == '\\' || c == '/';
    let mut leading = text.chars();
    if leading.next().is_some_and(is_sep) && leading.next().is_some_and(is_sep) {
        let body = &text[2..];
        let mut fields = body.splitn(3, is_sep);
        let server = fields.next().unwrap_or_default();
        let share = fields.next().unwrap_or_default();
        let rest_start = 2 + server.len() + share.len() + usize::from(!share.is_empty());
        let rest = text.get(rest_start..).unwrap_or_default();
        return (format!(r"\\{server}\{share}"), rest);
    }
    (String::new(), text)
}

/// The outcome of reading the text alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// Findings about the text.
    pub checks: Vec<Check>,
    /// The text with a leading `~` replaced by the home directory; `None` when the text
    /// cannot name a path at all (empty, NUL, `~user`, relative, unknown home).
    pub expanded: Option<String>,
    /// `expanded`, normalised lexically.
    pub path: Option<NormalPath>,
}

/// The restricted and allowed roots of one platform.
#[derive(Debug, Clone)]
pub struct Rules {
    platform: Platform,
    restricted: Vec<NormalPath>,
    allowed: Vec<NormalPath>,
}

impl Rules {
    /// The platform's built-in restricted roots plus `extra_restricted`; `allowed_roots`
    /// empty means no allow-list. Roots are taken as written (no `~`, no symlinks: the
    /// file-system aware [`super::PathPolicy`] adds those forms).
    pub fn new<R, A>(platform: Platform, extra_restricted: R, allowed_roots: A) -> Rules
    where
        R: IntoIterator,
        R::Item: AsRef<str>,
        A: IntoIterator,
        A::Item: AsRef<str>,
    {
        let restricted = platform
            .restricted_roots()
            .iter()
            .map(|root| NormalPath::parse(platform, root))
            .chain(
                extra_restricted
                    .into_iter()
                    .map(|root| NormalPath::parse(platform, root.as_ref())),
            )
            .collect();
        let allowed = allowed_roots
            .into_iter()
            .map(|root| NormalPath::parse(platform, root.as_ref()))
            .collect();
        Rules {
            platform,
            restricted,
            allowed,
        }
    }

    /// Whose rules these are.
    pub fn platform(&self) -> Platform {
        self.platform
    }

    pub(crate) fn add_restricted(&mut self, root: &str) {
        let root = NormalPath::parse(self.platform, root);
        if !self.restricted.contains(&root) {
            self.restricted.push(root);
        }
    }

    pub(crate) fn add_allowed(&mut self, root: &str) {
        let root = NormalPath::parse(self.platform, root);
        if !self.allowed.contains(&root) {
            self.allowed.push(root);
        }
    }

    /// Reads `raw` as a path of this platform: what is suspicious about the text, and the
    /// absolute path it names (`~` is `home`).
    pub fn evaluate(&self, raw: &str, home: Option<&str>) -> Evaluation {
        let platform = self.platform;
        let mut checks = Vec::new();
        let refused = |checks: Vec<Check>| Evaluation {
            checks,
            expanded: None,
            path: None,
        };
        if raw.trim().is_empty() {
            return refused(vec![Check::error(
                CheckCode::EmptyPath,
                "the path is empty",
            )]);
        }
        if raw.contains('\0') {
            return refused(vec![Check::error(
                CheckCode::NulByte,
                "the path contains a NUL byte",
            )]);
        }
        character_checks(platform, raw, &mut checks);

        let expanded = match expand_tilde(platform, raw, home) {
            Ok(expanded) => expanded,
            Err(check) => {
                checks.push(check);
                return refused(checks);
            }
        };
        let path = NormalPath::parse(platform, &expanded);
        if !path.is_absolute() {
            checks.push(Check::error(
                CheckCode::RelativePath,
                format!("`{raw}` is relative; give an absolute path or one starting with `~`"),
            ));
            return refused(checks);
        }
        component_checks(platform, &expanded, &mut checks);
        if expanded
            .split(|c| platform.is_separator(c))
            .any(|part| part == "..")
        {
            checks.push(Check::warning(
                CheckCode::Traversal,
                format!("`{raw}` contains `..`; it was resolved to {path} before any check"),
            ));
        }
        Evaluation {
            checks,
            expanded: Some(expanded),
            path: Some(path),
        }
    }

    /// Where the path lies against the roots. `written` is the path as the client wrote it,
    /// `canonical` where the file system says it leads (the same path when no file system
    /// is involved). Either being restricted refuses the path; only `canonical` must be
    /// inside the allowed roots.
    pub fn locate(&self, written: &NormalPath, canonical: &NormalPath) -> Vec<Check> {
        let mut checks = Vec::new();
        let moved = written != canonical;
        if written.is_root() || canonical.is_root() {
            checks.push(Check::error(
                CheckCode::RootDirectory,
                if canonical.is_root() && moved {
                    format!("{written} leads to the root directory {canonical}, which cannot be a working directory")
                } else {
                    format!("the root directory {written} cannot be a working directory")
                },
            ));
        }
        match (
            self.restricted_root(written),
            self.restricted_root(canonical),
        ) {
            (Some(root), _) => checks.push(Check::error(
                CheckCode::RestrictedRoot,
                format!("{written} is inside the restricted system directory {root}"),
            )),
            (None, Some(root)) => checks.push(Check::error(
                CheckCode::SymlinkEscape,
                format!(
                    "{written} leads to {canonical}, inside the restricted system directory {root}"
                ),
            )),
            (None, None) => {}
        }
        if !self.allowed.is_empty() && !self.is_allowed(canonical) {
            checks.push(if moved && self.is_allowed(written) {
                Check::error(
                    CheckCode::SymlinkEscape,
                    format!("{written} leads to {canonical}, outside the allowed roots"),
                )
            } else {
                Check::error(
                    CheckCode::OutsideAllowedRoots,
                    format!("{canonical} is outside the allowed roots"),
                )
            });
        }
        checks
    }

    /// [`evaluate`](Rules::evaluate) and [`locate`](Rules::locate) without a file system:
    /// the verdict on the text alone.
    pub fn check(&self, raw: &str, home: Option<&str>) -> Vec<Check> {
        let Evaluation {
            mut checks, path, ..
        } = self.evaluate(raw, home);
        if let Some(path) = path {
            checks.extend(self.locate(&path, &path));
        }
        checks
    }

    fn restricted_root(&self, path: &NormalPath) -> Option<&NormalPath> {
        self.restricted.iter().find(|root| path.starts_with(root))
    }

    fn is_allowed(&self, path: &NormalPath) -> bool {
        self.allowed.iter().any(|root| path.starts_with(root))
    }
}

/// `~` and `~/…` are the home directory; `~user` is refused rather than guessed.
fn expand_tilde(platform: Platform, raw: &str, home: Option<&str>) -> Result<String, Check> {
    let Some(after) = raw.strip_prefix('~') else {
        return Ok(raw.to_owned());
    };
    let end = after
        .find(|c| platform.is_separator(c))
        .unwrap_or(after.len());
    if end > 0 {
        let user = &after[..end];
        return Err(Check::error(
            CheckCode::TildeUser,
            format!("`~{user}` (another user's home) is not expanded; give an absolute path"),
        ));
    }
    match home {
        Some(home) => Ok(format!("{home}{after}")),
        None => Err(Check::error(
            CheckCode::HomeUnknown,
            format!("`{raw}` starts with `~` but the server's home directory is unknown"),
        )),
    }
}

fn character_checks(platform: Platform, raw: &str, checks: &mut Vec<Check>) {
    if let Some(c) = raw.chars().find(|c| c.is_control()) {
        checks.push(Check::error(
            CheckCode::ControlCharacters,
            format!(
                "the path contains the control character {}",
                c.escape_unicode()
            ),
        ));
    }
    if let Some(c) = raw.chars().find(|&c| crate::names::is_bidi_control(c)) {
        checks.push(Check::warning(
            CheckCode::BidiControlCharacters,
            format!(
                "the path contains the text-direction override {}, so it may not read as it is",
                c.escape_unicode()
            ),
        ));
    }
    let windows = platform == Platform::Windows;
    if windows {
        let drive_colon = usize::from(split_windows_prefix(raw).0.ends_with(':')) * 2;
        let invalid: String = raw
            .char_indices()
            .filter(|&(at, c)| WINDOWS_INVALID.contains(&c) && !(c == ':' && at + 1 == drive_colon))
            .map(|(_, c)| c)
            .collect();
        if !invalid.is_empty() {
            checks.push(Check::error(
                CheckCode::WindowsInvalidCharacter,
                format!("Windows does not allow `{}` in a path", distinct(&invalid)),
            ));
        }
    }
    let metacharacters: &[char] = if windows {
        &WINDOWS_SHELL_METACHARACTERS
    } else {
        &SHELL_METACHARACTERS
    };
    let shell: String = raw.chars().filter(|c| metacharacters.contains(c)).collect();
    if !shell.is_empty() {
        checks.push(Check::warning(
            CheckCode::ShellMetacharacters,
            format!(
                "the path contains `{}`, which a shell would interpret; quote it in scripts",
                distinct(&shell)
            ),
        ));
    }
}

fn component_checks(platform: Platform, expanded: &str, checks: &mut Vec<Check>) {
    let parts = || {
        expanded
            .split(|c| platform.is_separator(c))
            .filter(|part| !part.is_empty() && *part != "." && *part != "..")
    };
    if let Some(part) = parts().find(|part| part.ends_with([' ', '.'])) {
        let message = format!("the component `{part}` ends with a space or a dot");
        checks.push(if platform == Platform::Windows {
            Check::error(
                CheckCode::TrailingSpaceOrDot,
                format!("{message}, which Windows strips silently"),
            )
        } else {
            Check::warning(CheckCode::TrailingSpaceOrDot, message)
        });
    }
    match platform {
        Platform::Windows => {
            if let Some(part) = parts().find(|part| is_windows_reserved(part)) {
                checks.push(Check::error(
                    CheckCode::WindowsReservedName,
                    format!("`{part}` is a device name Windows reserves"),
                ));
            }
            let units = expanded.encode_utf16().count();
            if units > WINDOWS_MAX_PATH {
                checks.push(Check::error(
                    CheckCode::WindowsPathTooLong,
                    format!("the path is {units} characters long; Windows paths may have at most {WINDOWS_MAX_PATH}"),
                ));
            }
        }
        Platform::Linux | Platform::MacOs => {
            if let Some(part) = parts().find(|part| part.len() > UNIX_NAME_MAX) {
                checks.push(Check::error(
                    CheckCode::NameTooLong,
                    format!(
                        "a component is {} bytes long; at most {UNIX_NAME_MAX} are allowed",
                        part.len()
                    ),
                ));
            }
            if expanded.len() > platform.max_path() {
                checks.push(Check::error(
                    CheckCode::PathTooLong,
                    format!(
                        "the path is {} bytes long; at most {} are allowed",
                        expanded.len(),
                        platform.max_path()
                    ),
                ));
            }
        }
    }
}

/// `CON`, `con.txt`, `NUL .tar.gz`: the part before the first dot, trailing spaces ignored.
fn is_windows_reserved(part: &str) -> bool {
    let stem = part.split('.').next().unwrap_or(part).trim_end_matches(' ');
    WINDOWS_RESERVED
        .iter()
        .any(|reserved| eq_ignore_case(stem, reserved))
}

/// Each character once, in order of first appearance.
fn distinct(chars: &str) -> String {
    let mut seen = String::new();
    for c in chars.chars() {
        if !seen.contains(c) {
            seen.push(c);
        }
    }
    seen
}

#[cfg(test)]
mod tests;
