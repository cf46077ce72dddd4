//! One finding of the validator: a stable code, a level and a message for people.
//!
//! The codes are the contract: clients match on them, so a code is never renamed and its
//! meaning never changes; new findings get new codes. The full list, with levels, is
//! [`CheckCode`]'s documentation and `ARCHITECTURE.md`.

use serde::{Serialize, Serializer};

/// How much a finding weighs: any `Error` makes the path invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    /// The path cannot be used.
    Error,
    /// The path can be used but something about it is suspicious or will soon be a problem.
    Warning,
    /// Worth knowing, not a problem (e.g. where a symlink leads).
    Info,
}

impl Level {
    /// The wire spelling: `error`, `warning` or `info`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Info => "info",
        }
    }
}

/// The stable code of a finding. The level each one is raised with is given in brackets;
/// a few depend on the platform's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CheckCode {
    /// `empty_path` (error): nothing but white space was given.
    EmptyPath,
    /// `nul_byte` (error): no OS accepts a NUL inside a path.
    NulByte,
    /// `control_characters` (error): C0/C1 control characters, e.g. a newline, break scripts
    /// and logs that print the path.
    ControlCharacters,
    /// `bidi_control_characters` (warning): Unicode direction overrides, isolates and marks
    /// (`names::is_bidi_control`) make a path read differently from what it is.
    BidiControlCharacters,
    /// `shell_metacharacters` (warning): characters a shell would interpret.
    ShellMetacharacters,
    /// `tilde_user` (error): `~user` is not expanded; only `~` (the server's home) is.
    TildeUser,
    /// `home_unknown` (error): the path starts with `~` but the home directory is unknown.
    HomeUnknown,
    /// `relative_path` (error): a relative path would depend on the server's current
    /// directory, which no client can see; paths must be absolute or start with `~`.
    RelativePath,
    /// `traversal` (warning): the path contains `..`; it is resolved before any check.
    Traversal,
    /// `trailing_space_or_dot` (warning; error on Windows, which strips them silently): a
    /// component ends with a space or a dot.
    TrailingSpaceOrDot,
    /// `name_too_long` (error, Linux and macOS): a component is longer than 255 bytes.
    NameTooLong,
    /// `path_too_long` (error, Linux and macOS): longer than the OS accepts (`PATH_MAX`).
    PathTooLong,
    /// `windows_invalid_character` (error, Windows): one of `<>:"|?*` outside a drive prefix.
    WindowsInvalidCharacter,
    /// `windows_reserved_name` (error, Windows): a component is a device name such as `CON`,
    /// `NUL`, `COM1` or `LPT1`, with or without an extension.
    WindowsReservedName,
    /// `windows_path_too_long` (error, Windows): more than 250 UTF-16 units.
    WindowsPathTooLong,
    /// `root_directory` (error): the root directory itself is never a working directory.
    RootDirectory,
    /// `restricted_root` (error): the path is, or is under, a restricted root.
    RestrictedRoot,
    /// `outside_allowed_roots` (error): `paths.allowed_roots` is set and the path is under
    /// none of them.
    OutsideAllowedRoots,
    /// `symlink_escape` (error): the path as written passes, but a symlink leads it into a
    /// restricted root or outside the allowed roots.
    SymlinkEscape,
    /// `symlink_resolved` (info): the path goes through a symlink; the message says where
    /// it leads.
    SymlinkResolved,
    /// `broken_symlink` (error): a component is a symlink whose target does not exist.
    BrokenSymlink,
    /// `symlink_loop` (error): symlinks lead round in a circle.
    SymlinkLoop,
    /// `permission_denied` (error): a directory on the way cannot be searched, so the path
    /// cannot even be looked at.
    PermissionDenied,
    /// `not_a_directory` (error): the path, or a component on the way, is not a directory.
    NotADirectory,
    /// `does_not_exist` (warning): the path is missing but can be created. (An error from
    /// `PathPolicy::open_directory`: an agent's directory must exist when it starts.)
    DoesNotExist,
    /// `not_readable` (error): the server's user cannot list the directory.
    NotReadable,
    /// `not_writable` (error): the server's user cannot create files in the directory.
    NotWritable,
    /// `not_searchable` (error): the server's user cannot enter the directory.
    NotSearchable,
    /// `parent_not_writable` (error): the path is missing and its nearest existing ancestor
    /// does not let the server's user create it.
    ParentNotWritable,
    /// `disk_space_low` (warning): less than the low threshold (1 GB by default) is free.
    DiskSpaceLow,
    /// `disk_space_critical` (error): less than the critical threshold (100 MB) is free.
    DiskSpaceCritical,
    /// `disk_space_unknown` (warning): the free space could not be read.
    DiskSpaceUnknown,
    /// `non_utf8_path` (error): the canonical path is not valid UTF-8, so it cannot be
    /// reported or passed on faithfully.
    NonUtf8Path,
    /// `git_unreadable` (warning): the path is in a git repository that could not be read.
    GitUnreadable,
    /// `io_error` (error): the file system answered with another error; the message says which.
    IoError,
    /// `validation_incomplete` (error): the validation task did not finish (the server is
    /// shutting down); nothing is known, so nothing is allowed.
    ValidationIncomplete,
    /// `timed_out` (error): the file system (or the repository in it) did not answer within
    /// `paths.deadline_ms`: a hung or very slow mount. Nothing is known, so nothing is
    /// allowed; the reading goes on in the background and a later request asks again.
    TimedOut,
}

impl CheckCode {
    /// The stable snake_case spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            CheckCode::EmptyPath => "empty_path",
            CheckCode::NulByte => "nul_byte",
            CheckCode::ControlCharacters => "control_characters",
            CheckCode::BidiControlCharacters => "bidi_control_characters",
            CheckCode::ShellMetacharacters => "shell_metacharacters",
            CheckCode::TildeUser => "tilde_user",
            CheckCode::HomeUnknown => "home_unknown",
            CheckCode::RelativePath => "relative_path",
            CheckCode::Traversal => "traversal",
            CheckCode::TrailingSpaceOrDot => "trailing_space_or_dot",
            CheckCode::NameTooLong => "name_too_long",
            CheckCode::PathTooLong => "path_too_long",
            CheckCode::WindowsInvalidCharacter => "windows_invalid_character",
            CheckCode::WindowsReservedName => "windows_reserved_name",
            CheckCode::WindowsPathTooLong => "windows_path_too_long",
            CheckCode::RootDirectory => "root_directory",
            CheckCode::RestrictedRoot => "restricted_root",
            CheckCode::OutsideAllowedRoots => "outside_allowed_roots",
            CheckCode::SymlinkEscape => "symlink_escape",
            CheckCode::SymlinkResolved => "symlink_resolved",
            CheckCode::BrokenSymlink => "broken_symlink",
            CheckCode::SymlinkLoop => "symlink_loop",
            CheckCode::PermissionDenied => "permission_denied",
            CheckCode::NotADirectory => "not_a_directory",
            CheckCode::DoesNotExist => "does_not_exist",
            CheckCode::NotReadable => "not_readable",
            CheckCode::NotWritable => "not_writable",
            CheckCode::NotSearchable => "not_searchable",
            CheckCode::ParentNotWritable => "parent_not_writable",
            CheckCode::DiskSpaceLow => "disk_space_low",
            CheckCode::DiskSpaceCritical => "disk_space_critical",
            CheckCode::DiskSpaceUnknown => "disk_space_unknown",
            CheckCode::NonUtf8Path => "non_utf8_path",
            CheckCode::GitUnreadable => "git_unreadable",
            CheckCode::IoError => "io_error",
            CheckCode::ValidationIncomplete => "validation_incomplete",
            CheckCode::TimedOut => "timed_out",
        }
    }
}

/// One finding: `{code, level, message}` on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was found; stable.
    pub code: CheckCode,
    /// How much it weighs.
    pub level: Level,
    /// For people; names the paths involved. Not stable: match on `code`.
    pub message: String,
}

impl Check {
    /// An error: the path is refused.
    pub fn error(code: CheckCode, message: impl Into<String>) -> Check {
        Check {
            code,
            level: Level::Error,
            message: message.into(),
        }
    }

    /// A warning: the path is usable.
    pub fn warning(code: CheckCode, message: impl Into<String>) -> Check {
        Check {
            code,
            level: Level::Warning,
            message: message.into(),
        }
    }

    /// Information only.
    pub fn info(code: CheckCode, message: impl Into<String>) -> Check {
        Check {
            code,
            level: Level::Info,
            message: message.into(),
        }
    }

    /// Whether this finding refuses the path.
    pub fn is_error(&self) -> bool {
        self.level == Level::Error
    }
}

impl Serialize for Level {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl Serialize for CheckCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}
