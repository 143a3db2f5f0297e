//! The hub's TOML config: arbitrary UTF-8 parses to a config or a one-line typed error, and
//! merging a parsed config with the defaults never panics.
#![no_main]

use agentdb_cli::commands::hub::{check_config, parse_config};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_config(text) {
        Ok(_) => {
            let _ = check_config(text).map_err(|e| format!("{e:#}"));
        }
        Err(e) => {
            let line = e.to_string();
            assert!(!line.contains('\n'), "a config error spans lines: {line:?}");
            if let Some((l, c)) = e.position {
                assert!(l >= 1 && c >= 1);
                assert!(l <= text.split('\n').count(), "line {l} is past the end");
            }
            assert!(check_config(text).is_err());
        }
    }
});
