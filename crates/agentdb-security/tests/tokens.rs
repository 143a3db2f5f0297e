//! Tokens through the public API: round trips for both algorithms, and each way a token can be
//! wrong rejected with its own error.

#![allow(clippy::unwrap_used)]

use agentdb_core::{AgentId, TenantId};
use agentdb_security::token::{
    Claims, Ed25519KeyPem, Scope, TokenAlgorithm, TokenIssuer, TokenKeys, TokenRequest,
    TokenVerifier, VerifyError, DEFAULT_AUDIENCE, DEFAULT_ISSUER, DEFAULT_TTL_SECS,
    MAX_CLOCK_SKEW_SECS, MAX_TOKEN_LEN,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;

const NOW: u64 = 1_750_000_000;
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-compat";

struct Pair {
    issuer: TokenIssuer,
    verifier: TokenVerifier,
    public_pem: Option<String>,
}

fn eddsa() -> Pair {
    let keys = Ed25519KeyPem::generate().expect("keygen");
    Pair {
        issuer: TokenIssuer::from_ed25519_pem(keys.private_pem.as_bytes()).expect("issuer"),
        verifier: TokenVerifier::from_ed25519_public_pem(keys.public_pem.as_bytes())
            .expect("verifier"),
        public_pem: Some(keys.public_pem),
    }
}

fn hs256() -> Pair {
    Pair {
        issuer: TokenIssuer::from_hs256_secret(SECRET).expect("issuer"),
        verifier: TokenVerifier::from_hs256_secret(SECRET).expect("verifier"),
        public_pem: None,
    }
}

fn request() -> TokenRequest {
    TokenRequest::new(
        TenantId::new("acme").expect("valid"),
        AgentId::new("agent-1").expect("valid"),
    )
}

fn b64(json: &serde_json::Value) -> String {
    B64URL.encode(serde_json::to_vec(json).expect("json"))
}

/// Replaces part `index` (0 header, 1 payload, 2 signature) of a token.
fn replace_part(token: &str, index: usize, part: &str) -> String {
    let mut parts: Vec<&str> = token.split('.').collect();
    parts[index] = part;
    parts.join(".")
}

fn payload(token: &str) -> serde_json::Value {
    let part = token.split('.').nth(1).expect("payload");
    serde_json::from_slice(&B64URL.decode(part).expect("base64")).expect("json")
}

#[test]
fn round_trip_keeps_agent_tenant_scopes_and_lifetime() {
    for (pair, alg) in [
        (eddsa(), TokenAlgorithm::EdDsa),
        (hs256(), TokenAlgorithm::Hs256),
    ] {
        assert_eq!(pair.issuer.algorithm(), alg);
        assert_eq!(pair.verifier.algorithm(), alg);
        for (scopes, ttl) in [
            (Scope::DEFAULT.to_vec(), DEFAULT_TTL_SECS),
            (vec![Scope::Admin, Scope::Erase], 60),
            (Scope::ALL.to_vec(), 900),
        ] {
            let req = request().scopes(scopes.clone()).ttl_secs(ttl);
            let token = pair.issuer.issue(&req, NOW).expect("issue");
            let claims = pair.verifier.verify(&token, NOW + 1).expect("verify");
            assert_eq!(claims.sub.as_str(), "agent-1");
            assert_eq!(claims.tenant.as_str(), "acme");
            let mut expected = scopes.clone();
            expected.sort();
            assert_eq!(claims.scope, expected);
            assert_eq!(claims.iat, NOW);
            assert_eq!(claims.exp - claims.iat, ttl);
            assert_eq!(claims.iss, DEFAULT_ISSUER);
            assert_eq!(claims.aud, DEFAULT_AUDIENCE);
            assert!(!claims.jti.is_empty());
        }
    }
}

#[test]
fn claims_are_seconds_and_scopes_are_a_lowercase_list() {
    let pair = eddsa();
    let token = pair.issuer.issue(&request(), NOW).expect("issue");
    let json = payload(&token);
    assert_eq!(json["iat"], NOW);
    assert_eq!(json["exp"], NOW + DEFAULT_TTL_SECS);
    assert_eq!(json["scope"], serde_json::json!(["read", "write", "sync"]));
    assert_eq!(json["sub"], "agent-1");
    assert_eq!(json["tenant"], "acme");
    let header: serde_json::Value = serde_json::from_slice(
        &B64URL
            .decode(token.split('.').next().expect("header"))
            .expect("base64"),
    )
    .expect("json");
    assert_eq!(header["alg"], "EdDSA");
}

#[test]
fn expired_tokens_are_rejected_but_skew_is_tolerated() {
    for pair in [eddsa(), hs256()] {
        let token = pair
            .issuer
            .issue(&request().ttl_secs(300), NOW - 1000)
            .expect("issue");
        assert_eq!(
            pair.verifier.verify(&token, NOW),
            Err(VerifyError::Expired {
                exp: NOW - 700,
                now: NOW
            })
        );
        assert_eq!(
            pair.verifier
                .verify(&token, NOW)
                .expect_err("expired")
                .code(),
            "token_expired"
        );

        // Ten seconds past expiry is within the allowed clock skew.
        let token = pair
            .issuer
            .issue(&request().ttl_secs(300), NOW - 310)
            .expect("issue");
        assert!(pair.verifier.verify(&token, NOW).is_ok());
        // Beyond the skew it is not.
        let token = pair
            .issuer
            .issue(&request().ttl_secs(300), NOW - 300 - MAX_CLOCK_SKEW_SECS)
            .expect("issue");
        assert!(matches!(
            pair.verifier.verify(&token, NOW),
            Err(VerifyError::Expired { .. })
        ));
    }
}

#[test]
fn tokens_from_the_future_are_rejected() {
    let pair = eddsa();
    let token = pair.issuer.issue(&request(), NOW + 120).expect("issue");
    assert_eq!(
        pair.verifier.verify(&token, NOW),
        Err(VerifyError::NotYetValid {
            valid_from: NOW + 120,
            now: NOW
        })
    );
    let slightly = pair.issuer.issue(&request(), NOW + 20).expect("issue");
    assert!(pair.verifier.verify(&slightly, NOW).is_ok());
}

#[test]
fn tampered_payload_is_a_bad_signature() {
    for pair in [eddsa(), hs256()] {
        let token = pair.issuer.issue(&request(), NOW).expect("issue");
        let mut claims = payload(&token);
        claims["tenant"] = "someone-else".into();
        let forged = replace_part(&token, 1, &b64(&claims));
        assert_eq!(
            pair.verifier.verify(&forged, NOW),
            Err(VerifyError::BadSignature)
        );
        let mut claims = payload(&token);
        claims["scope"] = serde_json::json!(["read", "write", "sync", "admin", "erase"]);
        let forged = replace_part(&token, 1, &b64(&claims));
        assert_eq!(
            pair.verifier.verify(&forged, NOW),
            Err(VerifyError::BadSignature)
        );
    }
}

#[test]
fn tampered_signature_is_a_bad_signature() {
    for pair in [eddsa(), hs256()] {
        let token = pair.issuer.issue(&request(), NOW).expect("issue");
        let signature = token.split('.').nth(2).expect("signature");
        let mut bytes = B64URL.decode(signature).expect("base64");
        bytes[0] ^= 0x01;
        let forged = replace_part(&token, 2, &B64URL.encode(&bytes));
        assert_eq!(
            pair.verifier.verify(&forged, NOW),
            Err(VerifyError::BadSignature)
        );
        let stripped = replace_part(&token, 2, "");
        assert_eq!(
            pair.verifier.verify(&stripped, NOW),
            Err(VerifyError::BadSignature)
        );
    }
}

#[test]
fn wrong_key_is_a_bad_signature() {
    let a = eddsa();
    let b = eddsa();
    let token = a.issuer.issue(&request(), NOW).expect("issue");
    assert_eq!(
        b.verifier.verify(&token, NOW),
        Err(VerifyError::BadSignature)
    );

    let other_secret =
        TokenVerifier::from_hs256_secret(b"another secret that is also long enough").expect("v");
    let token = hs256().issuer.issue(&request(), NOW).expect("issue");
    assert_eq!(
        other_secret.verify(&token, NOW),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn wrong_audience_and_issuer_are_rejected() {
    let pair = eddsa();
    let token = pair
        .issuer
        .issue(&request().audience("some-other-service"), NOW)
        .expect("issue");
    assert_eq!(
        pair.verifier.verify(&token, NOW),
        Err(VerifyError::WrongAudience {
            expected: DEFAULT_AUDIENCE.to_owned()
        })
    );
    // A verifier configured for that audience accepts it.
    let keys = Ed25519KeyPem::generate().expect("keygen");
    let issuer = TokenIssuer::from_ed25519_pem(keys.private_pem.as_bytes())
        .expect("issuer")
        .with_issuer("someone-else");
    let verifier =
        TokenVerifier::from_ed25519_public_pem(keys.public_pem.as_bytes()).expect("verifier");
    let token = issuer.issue(&request(), NOW).expect("issue");
    assert_eq!(
        verifier.verify(&token, NOW),
        Err(VerifyError::WrongIssuer {
            expected: DEFAULT_ISSUER.to_owned()
        })
    );
    let verifier = verifier.with_issuer("someone-else").with_audience("hub-eu");
    let token = issuer
        .issue(&request().audience("hub-eu"), NOW)
        .expect("issue");
    assert!(verifier.verify(&token, NOW).is_ok());
}

#[test]
fn alg_none_is_rejected() {
    for pair in [eddsa(), hs256()] {
        let token = pair.issuer.issue(&request(), NOW).expect("issue");
        let header = b64(&serde_json::json!({"alg": "none", "typ": "JWT"}));
        let unsigned = format!("{header}.{}.", token.split('.').nth(1).expect("payload"));
        assert_eq!(
            pair.verifier.verify(&unsigned, NOW),
            Err(VerifyError::WrongAlgorithm {
                found: "none".to_owned(),
                expected: pair.verifier.algorithm()
            })
        );
        for variant in ["None", "NONE", "nOnE"] {
            let header = b64(&serde_json::json!({"alg": variant}));
            let unsigned = format!("{header}.{}.", token.split('.').nth(1).expect("payload"));
            assert!(matches!(
                pair.verifier.verify(&unsigned, NOW),
                Err(VerifyError::WrongAlgorithm { .. })
            ));
        }
    }
}

#[test]
fn hs256_signed_with_the_public_key_is_rejected_by_the_eddsa_verifier() {
    let pair = eddsa();
    let public_pem = pair.public_pem.expect("EdDSA pair has a public key");
    // The classic confusion attack: sign with HS256, using the public key as the secret.
    let claims: Claims = pair
        .issuer
        .claims(&request().scopes(Scope::ALL), NOW)
        .expect("claims");
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(public_pem.as_bytes()),
    )
    .expect("encode");
    assert_eq!(
        pair.verifier.verify(&forged, NOW),
        Err(VerifyError::WrongAlgorithm {
            found: "HS256".to_owned(),
            expected: TokenAlgorithm::EdDsa
        })
    );
    // And the reverse: an EdDSA token shown to an HS256 verifier.
    let token = pair.issuer.issue(&request(), NOW).expect("issue");
    assert_eq!(
        hs256().verifier.verify(&token, NOW),
        Err(VerifyError::WrongAlgorithm {
            found: "EdDSA".to_owned(),
            expected: TokenAlgorithm::Hs256
        })
    );
}

#[test]
fn garbage_is_malformed() {
    let pair = eddsa();
    let valid_header = b64(&serde_json::json!({"alg": "EdDSA"}));
    for garbage in [
        String::new(),
        "garbage".to_owned(),
        "a.b".to_owned(),
        "a.b.c.d".to_owned(),
        "....".to_owned(),
        "!!!.###.$$$".to_owned(),
        format!("{}.e30.", b64(&serde_json::json!(["not", "an", "object"]))),
        format!("{}.e30.", b64(&serde_json::json!({"typ": "JWT"}))),
        format!("{}.e30.", b64(&serde_json::json!({"alg": 7}))),
        format!("{valid_header}.!!!.AAAA"),
        "x".repeat(10_000),
    ] {
        let result = pair.verifier.verify(&garbage, NOW);
        assert!(
            matches!(result, Err(VerifyError::Malformed { .. })),
            "{garbage:.40}: {result:?}"
        );
        assert_eq!(result.expect_err("rejected").code(), "unauthenticated");
    }
}

#[test]
fn validly_signed_tokens_missing_claims_are_malformed() {
    let issuer = hs256().issuer;
    let verifier = hs256().verifier;
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET);
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    let full = serde_json::to_value(issuer.claims(&request(), NOW).expect("claims")).expect("json");
    for missing in ["exp", "iat", "jti", "tenant", "sub", "scope"] {
        let mut claims = full.clone();
        claims
            .as_object_mut()
            .expect("object")
            .remove(missing)
            .expect("present");
        let token = jsonwebtoken::encode(&header, &claims, &key).expect("encode");
        let result = verifier.verify(&token, NOW);
        assert!(
            matches!(result, Err(VerifyError::Malformed { .. })),
            "without {missing}: {result:?}"
        );
    }
    for (claim, value) in [
        ("scope", serde_json::json!(["read", "superuser"])),
        ("scope", serde_json::json!([])),
        ("scope", serde_json::json!("read write")),
        ("tenant", serde_json::json!("a/b")),
        ("exp", serde_json::json!("soon")),
        ("exp", serde_json::json!(NOW - 1)),
        ("jti", serde_json::json!("")),
    ] {
        let mut claims = full.clone();
        claims[claim] = value.clone();
        let token = jsonwebtoken::encode(&header, &claims, &key).expect("encode");
        let result = verifier.verify(&token, NOW);
        assert!(
            matches!(result, Err(VerifyError::Malformed { .. })),
            "{claim} = {value}: {result:?}"
        );
    }
}

/// Two EdDSA key pairs named `old` and `new`, and the key set that holds both verifiers with
/// `old` as the default.
fn rotating() -> (TokenIssuer, TokenIssuer, TokenKeys) {
    let (old, new) = (eddsa(), eddsa());
    let keys =
        TokenKeys::new(old.verifier.with_key_id("old")).with(new.verifier.with_key_id("new"));
    (
        old.issuer.with_key_id("old"),
        new.issuer.with_key_id("new"),
        keys,
    )
}

fn header(token: &str) -> serde_json::Value {
    let part = token.split('.').next().expect("header");
    serde_json::from_slice(&B64URL.decode(part).expect("base64")).expect("json")
}

#[test]
fn key_ids_are_written_into_the_header_and_select_the_verifier() {
    let (old, new, keys) = rotating();
    assert_eq!(old.key_id(), Some("old"));
    assert_eq!(keys.default_verifier().key_id(), Some("old"));
    let by_new = new.issue(&request(), NOW).expect("issue");
    assert_eq!(header(&by_new)["kid"], "new");
    assert_eq!(header(&by_new)["alg"], "EdDSA");
    let by_old = old.issue(&request(), NOW).expect("issue");
    assert_eq!(header(&by_old)["kid"], "old");

    assert_eq!(
        keys.verify(&by_new, NOW).expect("new key").sub.as_str(),
        "agent-1"
    );
    assert!(keys.verify(&by_old, NOW).is_ok());
    // An issuer without a key id writes no kid.
    let plain = eddsa().issuer.issue(&request(), NOW).expect("issue");
    assert!(header(&plain).get("kid").is_none());
}

#[test]
fn a_kid_token_verifies_only_under_its_own_key() {
    let (signer, other) = (eddsa(), eddsa());
    let pem = signer.public_pem.expect("EdDSA pair has a public key");
    let verifier = || TokenVerifier::from_ed25519_public_pem(pem.as_bytes()).expect("verifier");
    let token = signer
        .issuer
        .with_key_id("k1")
        .issue(&request(), NOW)
        .expect("issue");
    let right = TokenKeys::new(eddsa().verifier).with(verifier().with_key_id("k1"));
    assert!(right.verify(&token, NOW).is_ok());
    // Another key under the same name: the signature does not match.
    let wrong = TokenKeys::new(eddsa().verifier).with(other.verifier.with_key_id("k1"));
    assert_eq!(wrong.verify(&token, NOW), Err(VerifyError::BadSignature));
    // The right key under another name is never tried.
    let renamed = TokenKeys::new(verifier()).with(verifier().with_key_id("k2"));
    assert_eq!(
        renamed.verify(&token, NOW),
        Err(VerifyError::UnknownKey {
            kid: "k1".to_owned()
        })
    );
}

#[test]
fn a_token_claiming_the_other_keys_kid_is_a_bad_signature() {
    let (old, _new, keys) = rotating();
    // Signed with the old key but claiming to be the new key's: the new key checks it.
    let forged = old
        .with_key_id("new")
        .issue(&request(), NOW)
        .expect("issue");
    assert_eq!(header(&forged)["kid"], "new");
    assert_eq!(keys.verify(&forged, NOW), Err(VerifyError::BadSignature));
}

#[test]
fn tokens_without_kid_go_to_the_default_verifier() {
    let (old, new) = (eddsa(), eddsa());
    let keys = TokenKeys::new(old.verifier).with(new.verifier.with_key_id("new"));
    assert!(keys
        .verify(&old.issuer.issue(&request(), NOW).expect("issue"), NOW)
        .is_ok());
    // A token of the named key without its kid is checked by the default key and fails.
    let unnamed = new.issuer.issue(&request(), NOW).expect("issue");
    assert_eq!(keys.verify(&unnamed, NOW), Err(VerifyError::BadSignature));
    // The default verifier has no key id, so a kid can never reach it.
    let named = TokenIssuer::from_hs256_secret(SECRET).expect("issuer");
    assert!(matches!(
        TokenKeys::new(hs256().verifier).verify(
            &named
                .with_key_id("x")
                .issue(&request(), NOW)
                .expect("issue"),
            NOW
        ),
        Err(VerifyError::UnknownKey { .. })
    ));
}

#[test]
fn unknown_kids_are_refused_and_cut_short() {
    let (_old, new, keys) = rotating();
    let token = new
        .with_key_id("retired")
        .issue(&request(), NOW)
        .expect("issue");
    let err = keys.verify(&token, NOW).unwrap_err();
    assert_eq!(
        err,
        VerifyError::UnknownKey {
            kid: "retired".to_owned()
        }
    );
    assert_eq!(err.code(), "unauthenticated");

    let long = "k".repeat(500);
    let payload = token.split('.').nth(1).expect("payload");
    let crafted = format!(
        "{}.{payload}.AAAA",
        b64(&serde_json::json!({"alg": "EdDSA", "kid": long}))
    );
    assert_eq!(
        keys.verify(&crafted, NOW),
        Err(VerifyError::UnknownKey {
            kid: "k".repeat(64)
        })
    );
}

#[test]
fn alg_none_with_a_kid_is_still_refused() {
    let (_old, new, keys) = rotating();
    let token = new.issue(&request(), NOW).expect("issue");
    let payload = token.split('.').nth(1).expect("payload");
    for kid in ["new", "old"] {
        let unsigned = format!(
            "{}.{payload}.",
            b64(&serde_json::json!({"alg": "none", "kid": kid, "typ": "JWT"}))
        );
        assert_eq!(
            keys.verify(&unsigned, NOW),
            Err(VerifyError::WrongAlgorithm {
                found: "none".to_owned(),
                expected: TokenAlgorithm::EdDsa
            })
        );
    }
    // HS256 signed with a named verifier's public key is refused as well.
    let forged = format!(
        "{}.{payload}.AAAA",
        b64(&serde_json::json!({"alg": "HS256", "kid": "new"}))
    );
    assert!(matches!(
        keys.verify(&forged, NOW),
        Err(VerifyError::WrongAlgorithm { .. })
    ));
}

#[test]
fn key_sets_check_the_shape_before_reading_the_kid() {
    let (_old, _new, keys) = rotating();
    for garbage in [
        String::new(),
        "a.b".to_owned(),
        "a.b.c.d".to_owned(),
        "!!!.###.$$$".to_owned(),
        format!("{}.e30.", b64(&serde_json::json!(["kid", "new"]))),
        format!(
            "{}.e30.",
            b64(&serde_json::json!({"alg": "EdDSA", "kid": 7}))
        ),
        format!(
            "{}.e30.",
            b64(&serde_json::json!({"alg": "EdDSA", "kid": null}))
        ),
        format!(
            "{}.e3 0.",
            b64(&serde_json::json!({"alg": "EdDSA", "kid": "unknown"}))
        ),
        "a".repeat(MAX_TOKEN_LEN + 1),
    ] {
        assert!(
            matches!(
                keys.verify(&garbage, NOW),
                Err(VerifyError::Malformed { .. })
            ),
            "{garbage:?}: {:?}",
            keys.verify(&garbage, NOW)
        );
    }
}

#[test]
fn adding_a_verifier_with_the_same_kid_replaces_it() {
    let (a, b) = (eddsa(), eddsa());
    let keys = TokenKeys::new(eddsa().verifier)
        .with(a.verifier.with_key_id("k"))
        .with(b.verifier.with_key_id("k"));
    let by_b = b
        .issuer
        .with_key_id("k")
        .issue(&request(), NOW)
        .expect("issue");
    let by_a = a
        .issuer
        .with_key_id("k")
        .issue(&request(), NOW)
        .expect("issue");
    assert!(keys.verify(&by_b, NOW).is_ok());
    assert_eq!(keys.verify(&by_a, NOW), Err(VerifyError::BadSignature));
}
