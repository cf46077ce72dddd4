//! The server's layers, enforced: every file under `src/` may import only from its own layer
//! or a lower one, and no set of modules may import each other in a circle.
//!
//! Why a test and not crate boundaries: the server is one package, and splitting it into a
//! crate per layer would cost build time and public APIs for no user. Reading the sources is
//! enough, because the server names its own modules in only three ways: `crate::x` paths
//! (alone or in `use crate::{x, y::z}` groups), `super::x` where `super` reaches the crate
//! root, and `session_manager::x` in `main.rs`. The scanner strips comments and literals
//! first, so a doc link or a string holding `crate::` is not an import.
//!
//! The table (bottom → top) lives in [`LAYERS`], with why each layer sits where it does;
//! `ARCHITECTURE.md` ("Layers") describes it for readers.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

/// One layer: its level (higher may import lower), its modules, and why it sits there.
struct Layer {
    level: i8,
    modules: &'static [&'static str],
    why: &'static str,
}

/// The layer table, bottom first. `lib` and `main` are the crate roots: they declare and wire
/// everything, so they sit on top.
const LAYERS: &[Layer] = &[
    Layer {
        level: -1,
        modules: &["supervision"],
        why:
            "the embeddable crate (crates/supervision), re-exported; it knows nothing of the server",
    },
    Layer {
        level: 0,
        modules: &["names", "rules", "logfile", "storage"],
        why: "leaves: text rules, the agent catalog and field rules, the rotating log writer, \
              persistence behind a backend-neutral API",
    },
    Layer {
        level: 1,
        modules: &["config"],
        why: "the settings tree every part reads; built from leaves only",
    },
    Layer {
        level: 2,
        modules: &["telemetry", "paths"],
        why: "logging and path policy: configured by settings, used by agents and sessions",
    },
    Layer {
        level: 3,
        modules: &["agent"],
        why: "agents as supervised OS processes; they know no session",
    },
    Layer {
        level: 4,
        modules: &["session"],
        why: "sessions own agent groups, persist through storage, publish on their bus",
    },
    Layer {
        level: 5,
        modules: &["monitor", "claude"],
        why: "samples, alerts and Claude Code activity over the sessions read through the registry's handle",
    },
    Layer {
        level: 6,
        modules: &["api"],
        why: "HTTP and JSON wire shapes over sessions and the monitor",
    },
    Layer {
        level: 7,
        modules: &["server", "hook", "cli", "lib", "main"],
        why: "the running server, the hook client and the command line: what wires the rest",
    },
];

/// A use of another top-level module: where it is and what it names.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Import {
    line: usize,
    module: String,
}

/// One broken rule, printed as `file:line: what`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Violation {
    file: String,
    line: usize,
    message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

#[test]
fn no_import_runs_up_the_layers_or_closes_a_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect_rust_files(&src, &mut files);
    assert!(
        files.len() > 50,
        "found only {} files under {}",
        files.len(),
        src.display()
    );
    let sources: Vec<SourceFile> = files
        .iter()
        .map(|path| {
            let relative = path.strip_prefix(&src).expect("a file under src/");
            let text = fs::read_to_string(path)
                .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
            SourceFile::new(relative, text)
        })
        .collect();
    let violations = check(&sources);
    assert!(
        violations.is_empty(),
        "{} import(s) break the layers (tests/layers.rs, ARCHITECTURE.md \"Layers\"):\n{}",
        violations.len(),
        violations
            .iter()
            .map(|v| format!("  src/{v}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Every `.rs` file under `dir`, recursively, in a stable order.
fn collect_rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect_rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// A source file as the check sees it: its name under `src/`, its top-level module, how deep
/// in the module tree it sits, and its text.
struct SourceFile {
    name: String,
    module: String,
    depth: usize,
    text: String,
}

impl SourceFile {
    /// `relative` is the path under `src/`: `config.rs` is module `config` at depth 1,
    /// `session/registry/tests.rs` is `session` at depth 3, `lib.rs` and `main.rs` are roots.
    fn new(relative: &Path, text: String) -> SourceFile {
        let parts: Vec<String> = relative
            .iter()
            .map(|part| part.to_string_lossy().into_owned())
            .collect();
        let first = parts[0].trim_end_matches(".rs").to_string();
        let depth = if parts.len() == 1 && (first == "lib" || first == "main") {
            0
        } else {
            parts.len()
        };
        SourceFile {
            name: parts.join("/"),
            module: first,
            depth,
            text,
        }
    }
}

/// The layer of a top-level module, if the table has it.
fn layer_of(module: &str) -> Option<&'static Layer> {
    LAYERS.iter().find(|layer| layer.modules.contains(&module))
}

fn level_of(module: &str) -> Option<i8> {
    layer_of(module).map(|layer| layer.level)
}

/// Every broken rule in `files`: a module in no layer, an import up the layers, a cycle.
fn check(files: &[SourceFile]) -> Vec<Violation> {
    let mut violations = Vec::new();
    // module → imported module → the first place it is imported.
    let mut edges: BTreeMap<String, BTreeMap<String, (String, usize)>> = BTreeMap::new();
    for file in files {
        let Some(level) = level_of(&file.module) else {
            violations.push(Violation {
                file: file.name.clone(),
                line: 1,
                message: format!(
                    "module `{}` is in no layer: add it to LAYERS in tests/layers.rs and to \
                     ARCHITECTURE.md",
                    file.module
                ),
            });
            continue;
        };
        let roots_prefix = if file.module == "main" {
            &["crate", "session_manager"][..]
        } else {
            &["crate"][..]
        };
        for import in imports(&file.text, file.depth, roots_prefix) {
            if import.module == file.module {
                continue;
            }
            match level_of(&import.module) {
                None => violations.push(Violation {
                    file: file.name.clone(),
                    line: import.line,
                    message: format!("imports `{}`, which is in no layer", import.module),
                }),
                Some(theirs) if theirs > level => violations.push(Violation {
                    file: file.name.clone(),
                    line: import.line,
                    message: format!(
                        "`{}` (L{level}) imports `{}` (L{theirs}): an import may only go down \
                         the layers or stay in its own (L{theirs}: {})",
                        file.module,
                        import.module,
                        layer_of(&import.module).map_or("", |layer| layer.why)
                    ),
                }),
                Some(_) => {
                    edges
                        .entry(file.module.clone())
                        .or_default()
                        .entry(import.module.clone())
                        .or_insert((file.name.clone(), import.line));
                }
            }
        }
    }
    violations.extend(cycles(&edges));
    violations.sort();
    violations.dedup();
    violations
}

/// One violation per cycle among the non-upward edges, naming every step with the
/// file and line that makes it. Only modules of one layer can still form one.
fn cycles(edges: &BTreeMap<String, BTreeMap<String, (String, usize)>>) -> Vec<Violation> {
    let mut found = Vec::new();
    let mut seen_cycles: BTreeSet<BTreeSet<String>> = BTreeSet::new();
    for start in edges.keys() {
        let mut path = vec![start.clone()];
        walk(start, edges, &mut path, &mut |cycle| {
            let members: BTreeSet<String> = cycle.iter().cloned().collect();
            if seen_cycles.insert(members) {
                found.push(describe_cycle(cycle, edges));
            }
        });
    }
    found
}

/// Depth-first from the last module of `path`; calls `report` with each cycle back to
/// `path[0]`. The graph has a dozen nodes, so the exhaustive walk is cheap.
fn walk(
    at: &str,
    edges: &BTreeMap<String, BTreeMap<String, (String, usize)>>,
    path: &mut Vec<String>,
    report: &mut dyn FnMut(&[String]),
) {
    let Some(next) = edges.get(at) else { return };
    for to in next.keys() {
        if *to == path[0] {
            report(path);
        } else if !path.contains(to) {
            path.push(to.clone());
            walk(to, edges, path, report);
            path.pop();
        }
    }
}

fn describe_cycle(
    cycle: &[String],
    edges: &BTreeMap<String, BTreeMap<String, (String, usize)>>,
) -> Violation {
    let steps: Vec<String> = cycle
        .iter()
        .enumerate()
        .map(|(i, from)| {
            let to = &cycle[(i + 1) % cycle.len()];
            let (file, line) = &edges[from][to];
            format!("`{from}` → `{to}` (src/{file}:{line})")
        })
        .collect();
    let (file, line) = &edges[&cycle[0]][&cycle[1 % cycle.len()]];
    Violation {
        file: file.clone(),
        line: *line,
        message: format!("import cycle: {}", steps.join(", ")),
    }
}

/// The top-level modules `text` names, with their lines. `depth` is the file's depth in the
/// module tree (0 for a crate root), for `super::`; `roots` the names that start a path at the
/// crate root (`crate`, and `session_manager` in `main.rs`).
fn imports(text: &str, depth: usize, roots: &[&str]) -> Vec<Import> {
    let tokens = tokenize(text);
    let mut out = Vec::new();
    // Brace depths at which inline `mod name {` blocks opened: each adds a level for `super`.
    let mut inline_mods: Vec<usize> = Vec::new();
    let mut braces = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        let token = &tokens[i];
        match &token.kind {
            Kind::Open('{') => {
                braces += 1;
                if i >= 2 && tokens[i - 2].is_ident("mod") && tokens[i - 1].ident().is_some() {
                    inline_mods.push(braces);
                }
            }
            Kind::Close('}') => {
                if inline_mods.last() == Some(&braces) {
                    inline_mods.pop();
                }
                braces = braces.saturating_sub(1);
            }
            Kind::Ident(word) if starts_path(&tokens, i) => {
                if roots.contains(&word.as_str())
                    && tokens.get(i + 1).map(|t| &t.kind) == Some(&Kind::PathSep)
                {
                    heads(&tokens, i + 2, &mut out);
                } else if word == "super" {
                    let mut supers = 0;
                    let mut j = i;
                    while tokens.get(j).is_some_and(|t| t.is_ident("super"))
                        && tokens.get(j + 1).map(|t| &t.kind) == Some(&Kind::PathSep)
                    {
                        supers += 1;
                        j += 2;
                    }
                    if supers > 0 && depth + inline_mods.len() == supers {
                        heads(&tokens, j, &mut out);
                    }
                    i = j.max(i + 1);
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Whether the identifier at `i` begins a path (is not itself after `::` or `$`).
fn starts_path(tokens: &[Token], i: usize) -> bool {
    i == 0 || !matches!(tokens[i - 1].kind, Kind::PathSep | Kind::Other('$'))
}

/// The first segment(s) of a path at the crate root, from `tokens[at]`: one identifier, or
/// each item's first identifier of a `{ … }` group (`self` names the root, not a module).
fn heads(tokens: &[Token], at: usize, out: &mut Vec<Import>) {
    match tokens.get(at).map(|t| &t.kind) {
        Some(Kind::Ident(word)) if word != "self" => out.push(Import {
            line: tokens[at].line,
            module: word.clone(),
        }),
        Some(Kind::Open('{')) => {
            let mut depth = 0usize;
            let mut item_start = true;
            for token in &tokens[at..] {
                match &token.kind {
                    Kind::Open(_) => {
                        depth += 1;
                        item_start = depth == 1;
                    }
                    Kind::Close(_) => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    Kind::Other(',') if depth == 1 => item_start = true,
                    Kind::Ident(word) if depth == 1 && item_start => {
                        item_start = false;
                        if word != "self" {
                            out.push(Import {
                                line: token.line,
                                module: word.clone(),
                            });
                        }
                    }
                    _ => item_start = false,
                }
            }
        }
        _ => {}
    }
}

/// A token of Rust as far as paths need: identifiers, `::`, brackets, any other character.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Ident(String),
    PathSep,
    Open(char),
    Close(char),
    Other(char),
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    line: usize,
}

impl Token {
    fn ident(&self) -> Option<&str> {
        match &self.kind {
            Kind::Ident(word) => Some(word),
            _ => None,
        }
    }

    fn is_ident(&self, word: &str) -> bool {
        self.ident() == Some(word)
    }
}

/// Tokens of `text` with comments (line, nested block, doc), string literals (plain, byte,
/// raw with any number of `#`), char literals and lifetimes left out.
fn tokenize(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    line += usize::from(chars[i] == '\n');
                    i += 1;
                }
            }
        } else if c == '"' {
            i = skip_string(&chars, i + 1, &mut line);
        } else if let Some(end) = raw_string_end(&chars, i, &mut line) {
            i = end;
        } else if c == '\'' {
            i = skip_char_or_lifetime(&chars, i);
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(Token {
                kind: Kind::Ident(chars[start..i].iter().collect()),
                line,
            });
        } else if c == ':' && at(i + 1) == ':' {
            tokens.push(Token {
                kind: Kind::PathSep,
                line,
            });
            i += 2;
        } else {
            let kind = match c {
                '{' | '(' | '[' => Kind::Open(c),
                '}' | ')' | ']' => Kind::Close(c),
                _ => Kind::Other(c),
            };
            tokens.push(Token { kind, line });
            i += 1;
        }
    }
    tokens
}

/// Past the closing quote of a string whose body starts at `i` (escapes honoured).
fn skip_string(chars: &[char], mut i: usize, line: &mut usize) -> usize {
    while i < chars.len() {
        match chars[i] {
            '\\' => {
                *line += usize::from(chars.get(i + 1) == Some(&'\n'));
                i += 2;
            }
            '"' => return i + 1,
            c => {
                *line += usize::from(c == '\n');
                i += 1;
            }
        }
    }
    i
}

/// If a raw string (`r"…"`, `r#"…"#`, `br##"…"##`) starts at `i`, the index past its end.
fn raw_string_end(chars: &[char], i: usize, line: &mut usize) -> Option<usize> {
    let after_ident = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
    let mut j = match (chars[i], chars.get(i + 1)) {
        ('r', _) if !after_ident => i + 1,
        ('b', Some('r')) if !after_ident => i + 2,
        _ => return None,
    };
    let hashes = chars[j..].iter().take_while(|&&c| c == '#').count();
    j += hashes;
    if chars.get(j) != Some(&'"') {
        return None;
    }
    j += 1;
    while j < chars.len() {
        if chars[j] == '"'
            && chars[j + 1..]
                .iter()
                .take(hashes)
                .filter(|&&c| c == '#')
                .count()
                == hashes
        {
            return Some(j + 1 + hashes);
        }
        *line += usize::from(chars[j] == '\n');
        j += 1;
    }
    Some(j)
}

/// Past a char literal (`'x'`, `'\n'`, `'\''`, `'\u{1F600}'`) or a lifetime's quote.
fn skip_char_or_lifetime(chars: &[char], i: usize) -> usize {
    if chars.get(i + 1) == Some(&'\\') {
        let mut j = i + 3;
        while j < chars.len() && chars[j] != '\'' {
            j += 1;
        }
        j + 1
    } else if chars.get(i + 2) == Some(&'\'') {
        i + 3
    } else {
        i + 1
    }
}

/// The parser on the inputs that would fool a grep.
mod parser {
    use super::*;

    fn modules(text: &str, depth: usize) -> Vec<(usize, String)> {
        imports(text, depth, &["crate"])
            .into_iter()
            .map(|import| (import.line, import.module))
            .collect()
    }

    fn owned(expected: &[(usize, &str)]) -> Vec<(usize, String)> {
        expected
            .iter()
            .map(|(line, module)| (*line, module.to_string()))
            .collect()
    }

    #[test]
    fn plain_paths_and_groups() {
        let text = "use crate::config::Settings;\n\
                    use crate::{agent, paths::{PathPolicy, Validation}, storage::{self, Storage}};\n\
                    fn f() -> crate::names::Rule { crate::logfile::open() }\n";
        assert_eq!(
            modules(text, 1),
            owned(&[
                (1, "config"),
                (2, "agent"),
                (2, "paths"),
                (2, "storage"),
                (3, "names"),
                (3, "logfile"),
            ])
        );
    }

    #[test]
    fn nested_groups_and_self_items() {
        let text = "use crate::{\n    self,\n    session::{self, model::{A, B}},\n    api::{errors, dto::{x, y}},\n};\n\
                    use crate::monitor::{self, Monitor};\n";
        assert_eq!(
            modules(text, 1),
            owned(&[(3, "session"), (4, "api"), (6, "monitor")])
        );
    }

    #[test]
    fn comments_and_literals_are_not_imports() {
        let text = r##"// use crate::api;
/// See [`Thing`](crate::api::Thing).
/* a block /* nested crate::api */ still a comment crate::api */
const A: &str = "crate::api::x";
const B: &str = r#"crate::api "quoted" crate::api"#;
const C: &[u8] = br"crate::api";
const D: char = '"';
const E: char = '\'';
fn f<'a>(x: &'a str) -> &'a str { let _ = "escaped \" crate::api"; x }
use crate::storage::Storage;
"##;
        assert_eq!(modules(text, 1), owned(&[(10, "storage")]));
    }

    #[test]
    fn lines_count_inside_multiline_literals_and_comments() {
        let text = "const A: &str = \"one\ntwo\";\n/* three\nfour */\nuse crate::names;\n";
        assert_eq!(modules(text, 1), owned(&[(5, "names")]));
    }

    #[test]
    fn pub_crate_and_macro_crate_are_not_paths_up() {
        let text = "pub(crate) fn f() {}\npub(crate) struct S;\nmacro_rules! m { () => { $crate::x::y() } }\n";
        assert!(modules(text, 1).is_empty());
    }

    #[test]
    fn super_reaches_the_root_only_from_the_right_depth() {
        // In a top-level module file, `super::x` is the crate's module x; inside its inline
        // `mod tests`, `super::` is the file's own module.
        let top = "use super::config::Settings;\nmod tests {\n    use super::*;\n    use super::super::agent;\n}\n";
        assert_eq!(modules(top, 1), owned(&[(1, "config"), (4, "agent")]));
        // Two files deep (src/api/dto/requests.rs), `super::super::` is still inside api.
        let deep = "use super::super::body;\nuse super::super::super::session;\n";
        assert_eq!(modules(deep, 3), owned(&[(2, "session")]));
    }

    #[test]
    fn main_names_the_library_by_its_crate_name() {
        let text = "use session_manager::{cli::Cli, server::App};\nuse clap::Parser;\n";
        assert_eq!(
            imports(text, 0, &["crate", "session_manager"])
                .into_iter()
                .map(|import| import.module)
                .collect::<Vec<_>>(),
            vec!["cli", "server"]
        );
    }

    fn file(name: &str, text: &str) -> SourceFile {
        SourceFile::new(Path::new(name), text.to_string())
    }

    #[test]
    fn an_upward_import_is_named_with_its_file_and_line() {
        let files = [
            file("storage/sessions.rs", "//! x\n\nuse crate::api::dto;\n"),
            file("api.rs", "use crate::storage::Storage;\n"),
        ];
        let violations = check(&files);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!(violations[0].file, "storage/sessions.rs");
        assert_eq!(violations[0].line, 3);
        assert!(violations[0]
            .message
            .contains("`storage` (L0) imports `api` (L6)"));
    }

    #[test]
    fn a_cycle_within_a_layer_is_named_with_every_step() {
        let files = [
            file("telemetry.rs", "use crate::paths;\n"),
            file("paths/open.rs", "\n\nuse crate::telemetry::init;\n"),
        ];
        let violations = check(&files);
        assert_eq!(violations.len(), 1, "{violations:?}");
        let message = &violations[0].message;
        assert!(message.contains("import cycle"), "{message}");
        assert!(message.contains("src/paths/open.rs:3"), "{message}");
        assert!(message.contains("src/telemetry.rs:1"), "{message}");
    }

    #[test]
    fn an_upward_import_and_an_unknown_module_are_refused() {
        let files = [
            file("config.rs", "use crate::agent::AgentType;\n"),
            file("agent/config.rs", "use crate::config::Settings;\n"),
            file("gadgets.rs", "use crate::names;\n"),
        ];
        let violations = check(&files[2..]);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(violations[0].message.contains("`gadgets` is in no layer"));
        let upward = check(&files[..2]);
        assert_eq!(upward.len(), 1, "{upward:?}");
        assert!(upward[0]
            .message
            .contains("`config` (L1) imports `agent` (L3)"));
    }
}
