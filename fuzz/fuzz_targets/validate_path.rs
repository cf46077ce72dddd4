//! Arbitrary text through the path validator: the pure rules of all three platforms, and the
//! host's validator on the real file system (which only ever reads). Any panic is a bug.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use session_manager::paths::{PathPolicy, Platform, PolicyOptions, Rules};

struct Targets {
    rules: [Rules; 3],
    policy: PathPolicy,
}

fn targets() -> &'static Targets {
    static TARGETS: OnceLock<Targets> = OnceLock::new();
    TARGETS.get_or_init(|| Targets {
        rules: [Platform::Linux, Platform::MacOs, Platform::Windows]
            .map(|platform| Rules::new(platform, ["/srv/secret", r"D:\Secret"], ["/tmp", r"C:\Work"])),
        policy: PathPolicy::new(PolicyOptions {
            home: Some("/tmp/fuzz-home".into()),
            restricted: vec!["/srv/secret".into()],
            allowed_roots: Vec::new(),
            ..PolicyOptions::default()
        }),
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let targets = targets();
    for rules in &targets.rules {
        let home = if rules.platform() == Platform::Windows { r"C:\Users\fuzz" } else { "/home/fuzz" };
        let checks = rules.check(&text, Some(home));
        let _ = rules.check(&text, None);
        assert!(checks.iter().all(|check| !check.message.is_empty()));
    }
    let validation = targets.policy.validate_blocking(&text);
    assert_eq!(validation.valid, validation.validation_errors.is_empty());
});
