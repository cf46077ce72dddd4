//! Arbitrary bytes as the JSON body of every route that takes one, through the API's own
//! parsing and the conversion each route applies before the registry
//! (`session_manager::api::fuzzing`, the `fuzzing` feature); a refusal must render as a 4xx
//! envelope. Any panic is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = session_manager::api::fuzzing::request_body(data);
});
