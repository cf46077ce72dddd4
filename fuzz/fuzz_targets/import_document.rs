//! Arbitrary bytes as the `session_data` of POST /sessions/import: parsed as JSON, then
//! checked as a snapshot by `parse_import`; an accepted snapshot must survive a round trip
//! through its own serialization. Any panic is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use session_manager::session::parse_import;

fuzz_target!(|data: &[u8]| {
    let Ok(document) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    match parse_import(&document) {
        Ok(snapshot) => {
            let again = serde_json::to_value(&snapshot).expect("a snapshot serializes");
            parse_import(&again).expect("an accepted snapshot is accepted again");
        }
        Err(error) => assert!(!error.to_string().is_empty()),
    }
});
