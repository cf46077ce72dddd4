//! The pure rules on every platform: a table of paths and the checks each must raise.

use super::*;

fn codes(platform: Platform, raw: &str) -> Vec<&'static str> {
    let rules = Rules::new(platform, ["/srv/secret", r"D:\Secret"], [] as [&str; 0]);
    let mut codes: Vec<_> = rules
        .check(
            raw,
            Some(if platform == Platform::Windows {
                r"C:\Users\me"
            } else {
                "/home/me"
            }),
        )
        .iter()
        .map(|check| check.code.as_str())
        .collect();
    codes.sort_unstable();
    codes
}

#[test]
fn comparison_is_by_component() {
    assert_eq!(codes(Platform::Linux, "/library"), Vec::<&str>::new());
    assert_eq!(codes(Platform::Linux, "/lib"), ["restricted_root"]);
    assert_eq!(codes(Platform::Linux, "/lib/x86_64"), ["restricted_root"]);
    assert_eq!(codes(Platform::Linux, "/etcetera/x"), Vec::<&str>::new());
    assert_eq!(codes(Platform::Linux, "/srv/secretive"), Vec::<&str>::new());
    assert_eq!(codes(Platform::Linux, "/srv/secret/x"), ["restricted_root"]);
}

#[test]
fn each_platform_has_its_own_roots() {
    assert_eq!(
        codes(Platform::Linux, "/System/Library"),
        Vec::<&str>::new()
    );
    assert_eq!(
        codes(Platform::MacOs, "/System/Library"),
        ["restricted_root"]
    );
    assert_eq!(
        codes(Platform::MacOs, "/private/etc/hosts"),
        ["restricted_root"]
    );
    assert_eq!(codes(Platform::MacOs, "/proc"), Vec::<&str>::new());
    assert_eq!(codes(Platform::Linux, "/proc/1"), ["restricted_root"]);
    assert_eq!(
        codes(Platform::Windows, r"C:\Windows\System32"),
        ["restricted_root"]
    );
    assert_eq!(
        codes(Platform::Windows, r"C:\Program Files (x86)\App"),
        ["restricted_root"]
    );
    assert_eq!(
        codes(Platform::Windows, r"C:\Program Files Extra"),
        Vec::<&str>::new()
    );
    assert_eq!(
        codes(Platform::Windows, r"D:\secret\x"),
        ["restricted_root"]
    );
}

#[test]
fn case_is_ignored_where_the_file_system_ignores_it() {
    assert_eq!(
        codes(Platform::Windows, r"c:\WINDOWS\temp"),
        ["restricted_root"]
    );
    assert_eq!(
        codes(Platform::Windows, "c:/programdata/x"),
        ["restricted_root"]
    );
    assert_eq!(
        codes(Platform::Windows, r"C:\$RECYCLE.BIN"),
        ["restricted_root", "shell_metacharacters"]
    );
    assert_eq!(
        codes(Platform::MacOs, "/system/library"),
        ["restricted_root"]
    );
    assert_eq!(codes(Platform::Linux, "/ETC"), Vec::<&str>::new());
}

#[test]
fn windows_name_rules() {
    assert_eq!(
        codes(Platform::Windows, r"C:\work\a<b"),
        ["windows_invalid_character"]
    );
    assert_eq!(
        codes(Platform::Windows, r"C:\work\what?"),
        ["windows_invalid_character"]
    );
    assert_eq!(
        codes(Platform::Windows, r"C:\work\a:b"),
        ["windows_invalid_character"]
    );
    assert_eq!(
        codes(Platform::Windows, r"C:\work\CON"),
        ["windows_reserved_name"]
    );
    assert_eq!(
        codes(Platform::Windows, r"C:\work\nul.txt"),
        ["windows_reserved_name"]
    );
    assert_eq!(
        codes(Platform::Windows, r"C:\work\com1"),
        ["windows_reserved_name"]
    );
    assert_eq!(
        codes(Platform::Windows, r"C:\work\console"),
        Vec::<&str>::new()
    );
    assert_eq!(
        codes(Platform::Windows, r"C:\work\dir."),
        ["trailing_space_or_dot"]
    );
    assert_eq!(
        codes(Platform::Windows, r"C:\work\dir "),
        ["trailing_space_or_dot"]
    );
    let long = format!(r"C:\{}", "a".repeat(248));
    assert_eq!(long.len(), 251);
    assert_eq!(codes(Platform::Windows, &long), ["windows_path_too_long"]);
    assert_eq!(codes(Platform::Windows, &long[..250]), Vec::<&str>::new());
    // The same names mean nothing special on Linux.
    assert_eq!(codes(Platform::Linux, "/work/CON"), Vec::<&str>::new());
    assert_eq!(codes(Platform::Linux, "/work/a:b"), Vec::<&str>::new());
}

#[test]
fn windows_prefixes() {
    assert_eq!(codes(Platform::Windows, r"C:\"), ["root_directory"]);
    assert_eq!(
        codes(Platform::Windows, r"\\server\share\work"),
        Vec::<&str>::new()
    );
    assert_eq!(
        codes(Platform::Windows, r"\\server\share"),
        ["root_directory"]
    );
    assert_eq!(codes(Platform::Windows, r"C:work"), ["relative_path"]);
    assert_eq!(codes(Platform::Windows, r"\work"), ["relative_path"]);
    assert_eq!(codes(Platform::Windows, r"~\proj"), Vec::<&str>::new());
    assert_eq!(
        codes(Platform::Linux, r"C:\work"),
        ["relative_path", "shell_metacharacters"]
    );
}

#[test]
fn suspicious_text() {
    assert_eq!(codes(Platform::Linux, ""), ["empty_path"]);
    assert_eq!(codes(Platform::Linux, "  "), ["empty_path"]);
    assert_eq!(codes(Platform::Linux, "/tmp/a\0b"), ["nul_byte"]);
    assert_eq!(codes(Platform::Linux, "/tmp/a\nb"), ["control_characters"]);
    assert_eq!(
        codes(Platform::Linux, "/tmp/a\u{202e}b"),
        ["bidi_control_characters"]
    );
    assert_eq!(
        codes(Platform::Linux, "/tmp/$(reboot)"),
        ["shell_metacharacters"]
    );
    assert_eq!(
        codes(Platform::Linux, "/tmp/dir "),
        ["trailing_space_or_dot"]
    );
    assert_eq!(codes(Platform::Linux, "~root/x"), ["tilde_user"]);
    assert_eq!(codes(Platform::Linux, "~/proj"), Vec::<&str>::new());
    assert_eq!(codes(Platform::Linux, "/home/~/x"), Vec::<&str>::new());
    assert_eq!(codes(Platform::Linux, "proj"), ["relative_path"]);
    assert_eq!(codes(Platform::Linux, "./proj"), ["relative_path"]);
    assert_eq!(codes(Platform::Linux, "/"), ["root_directory"]);
    assert_eq!(
        codes(Platform::Linux, "/tmp/../etc"),
        ["restricted_root", "traversal"]
    );
    assert_eq!(codes(Platform::Linux, "/../../tmp"), ["traversal"]);
    assert_eq!(
        codes(Platform::Linux, "/tmp/.."),
        ["root_directory", "traversal"]
    );
    assert_eq!(codes(Platform::Linux, "/tmp/日本語/ü"), Vec::<&str>::new());
    let name = "n".repeat(256);
    assert_eq!(
        codes(Platform::Linux, &format!("/tmp/{name}")),
        ["name_too_long"]
    );
    let deep = "/abc".repeat(1100);
    assert_eq!(codes(Platform::Linux, &deep), ["path_too_long"]);
    assert_eq!(
        codes(Platform::MacOs, &"/abc".repeat(300)),
        ["path_too_long"]
    );
}

#[test]
fn home_must_be_known_for_tilde() {
    let rules = Rules::new(Platform::Linux, [] as [&str; 0], [] as [&str; 0]);
    let checks = rules.check("~/x", None);
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0].code, CheckCode::HomeUnknown);
    let evaluation = rules.evaluate("~/x/../y", Some("/home/me"));
    assert_eq!(evaluation.expanded.as_deref(), Some("/home/me/x/../y"));
    assert_eq!(
        evaluation.path.map(|path| path.to_string()).as_deref(),
        Some("/home/me/y")
    );
}

#[test]
fn allowed_roots_and_escapes() {
    let rules = Rules::new(Platform::Linux, [] as [&str; 0], ["/data"]);
    let parse = |text| NormalPath::parse(Platform::Linux, text);
    let code = |written, canonical| -> Vec<&'static str> {
        rules
            .locate(&parse(written), &parse(canonical))
            .iter()
            .map(|check| check.code.as_str())
            .collect()
    };
    assert_eq!(code("/data/p", "/data/p"), Vec::<&str>::new());
    assert_eq!(code("/database", "/database"), ["outside_allowed_roots"]);
    assert_eq!(code("/data/link", "/srv/x"), ["symlink_escape"]);
    assert_eq!(
        code("/data/link", "/etc/x"),
        ["symlink_escape", "symlink_escape"]
    );
    assert_eq!(code("/home/me/p", "/data/p"), Vec::<&str>::new());
    assert_eq!(
        code("/data/link", "/"),
        ["root_directory", "symlink_escape"]
    );
    let windows = Rules::new(Platform::Windows, [] as [&str; 0], [r"D:\Work"]);
    let w = |text| NormalPath::parse(Platform::Windows, text);
    assert!(windows
        .locate(&w(r"d:\work\x"), &w(r"d:\work\x"))
        .is_empty());
    assert_eq!(
        windows.locate(&w(r"D:\Work\link"), &w(r"C:\Windows\x"))[0].code,
        CheckCode::SymlinkEscape
    );
}

#[test]
fn display_is_the_platform_spelling() {
    assert_eq!(
        NormalPath::parse(Platform::Linux, "//a/./b/../c/").to_string(),
        "/a/c"
    );
    assert_eq!(
        NormalPath::parse(Platform::Windows, "c:/a/b/..").to_string(),
        r"C:\a"
    );
    assert_eq!(
        NormalPath::parse(Platform::Windows, r"\\srv\share\x").to_string(),
        r"\\srv\share\x"
    );
}
