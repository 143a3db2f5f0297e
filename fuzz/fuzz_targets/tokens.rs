//! Token verification against fixed HS256 and EdDSA verifiers.
//!
//! Input: one mode byte, then
//! - mode 0: an arbitrary string presented as a token: refused with a typed error unless it is
//!   exactly one of the two valid tokens;
//! - mode 1: edits applied to a valid token: the result verifies only if it is identical;
//! - mode 2: an arbitrary header and payload (split at the first 0xFF byte), correctly signed:
//!   whatever the claims, an accepted token satisfies every rule the verifier promises.
//!
//! The mode byte's second bit picks EdDSA over HS256.
#![no_main]

use agentdb_fuzz::{assert_acceptable, tokens, NOW};
use agentdb_security::token::VerifyError;
use libfuzzer_sys::fuzz_target;

fn check_error(e: &VerifyError) {
    let code = e.code();
    assert!(
        matches!(
            code,
            "token_expired" | "token_not_yet_valid" | "unauthenticated"
        ),
        "{code}"
    );
    let text = e.to_string();
    assert!(!text.is_empty());
}

/// Applies edits (op, position, byte) to `token`: replace, insert, delete or truncate.
fn mutate(token: &str, edits: &[u8]) -> Vec<u8> {
    let mut bytes = token.as_bytes().to_vec();
    for edit in edits.chunks_exact(3) {
        let (op, pos, value) = (
            edit[0],
            usize::from(edit[1]) | usize::from(edit[0] >> 2) << 8,
            edit[2],
        );
        let len = bytes.len();
        match op & 3 {
            0 if len > 0 => bytes[pos % len] = value,
            1 => bytes.insert(pos % (len + 1), value),
            2 if len > 0 => {
                bytes.remove(pos % len);
            }
            3 => bytes.truncate(pos % (len + 1)),
            _ => {}
        }
    }
    bytes
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let t = tokens();
    let eddsa = mode & 2 != 0;
    let verifier = t.verifier(eddsa);
    match mode % 3 {
        0 => {
            let text = String::from_utf8_lossy(rest);
            for eddsa in [false, true] {
                match t.verifier(eddsa).verify(&text, NOW) {
                    Ok(claims) => {
                        assert_eq!(text, t.token(eddsa), "an arbitrary string was accepted");
                        assert_eq!(claims, t.claims);
                    }
                    Err(e) => check_error(&e),
                }
            }
        }
        1 => {
            let original = t.token(eddsa);
            let mutated = mutate(original, rest);
            let Ok(text) = std::str::from_utf8(&mutated) else {
                return;
            };
            match verifier.verify(text, NOW) {
                Ok(claims) => {
                    assert_eq!(text, original, "a modified token was accepted");
                    assert_eq!(claims, t.claims);
                }
                Err(e) => {
                    assert_ne!(text, original, "the valid token was refused: {e}");
                    check_error(&e);
                }
            }
        }
        _ => {
            let (header, payload) = match rest.iter().position(|&b| b == 0xFF) {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (&br#"{"alg":"HS256","typ":"JWT"}"#[..], rest),
            };
            let token = t.sign_raw(header, payload, eddsa);
            for at in [NOW, 0, u64::MAX] {
                match verifier.verify(&token, at) {
                    Ok(claims) => assert_acceptable(&claims, at),
                    Err(e) => check_error(&e),
                }
            }
        }
    }
});
