//! API keys through the public API: the text form round-trips, every malformed form is refused,
//! keyed hashes match only their own key under their own hasher key, and `Debug` never shows
//! the secret.

#![allow(clippy::unwrap_used)]

use agentdb_security::apikey::{
    ApiKeyError, ApiKeyHasher, ApiKeyId, ApiKeySecret, API_KEY_LEN, MAX_API_KEY_INPUT_LEN,
};

/// A valid key with a fixed id and secret: 32 bytes of 0xfb encode to `-_v7...`.
fn fixed() -> String {
    let secret = "-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_s";
    assert_eq!(secret.len(), 43);
    format!("adb_0123456789abcdef_{secret}")
}

fn malformed(text: &str) -> bool {
    matches!(
        ApiKeySecret::parse(text),
        Err(ApiKeyError::Malformed { .. })
    )
}

#[test]
fn generated_keys_have_the_documented_form_and_parse_back() {
    let key = ApiKeySecret::generate().unwrap();
    let text = key.expose();
    assert_eq!(text.len(), API_KEY_LEN);
    assert_eq!(API_KEY_LEN, 64);
    assert!(text.starts_with("adb_"));
    assert_eq!(&text[20..21], "_");
    let id = key.id();
    assert_eq!(&text[4..20], id.as_str());
    assert!(id
        .as_str()
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));

    let back = ApiKeySecret::parse(text).unwrap();
    assert_eq!(back.expose(), text);
    assert_eq!(back.id(), id);
    // Surrounding whitespace, as pasted from a terminal or a file, is ignored.
    let padded = ApiKeySecret::parse(&format!("  {text}\n")).unwrap();
    assert_eq!(padded.expose(), text);
    assert_eq!(text.parse::<ApiKeySecret>().unwrap().expose(), text);

    let other = ApiKeySecret::generate().unwrap();
    assert_ne!(other.expose(), text);
    assert_ne!(other.id(), id);
}

#[test]
fn a_fixed_key_parses_with_its_id() {
    let key = ApiKeySecret::parse(&fixed()).unwrap();
    assert_eq!(key.id().as_str(), "0123456789abcdef");
    assert_eq!(key.expose(), fixed());
}

#[test]
fn malformed_keys_are_refused() {
    let good = fixed();
    assert!(!malformed(&good));
    let (id, secret) = (&good[4..20], &good[21..]);
    let cases = [
        String::new(),
        "adb_".to_owned(),
        // Wrong or missing prefix.
        format!("adx_{id}_{secret}"),
        format!("ADB_{id}_{secret}"),
        format!("{id}_{secret}xxxx"),
        // Wrong lengths.
        format!("adb_{}_{secret}", &id[..15]),
        format!("adb_{id}0_{secret}"),
        format!("adb_{id}_{}", &secret[..42]),
        format!("adb_{id}_{secret}A"),
        // Bad characters.
        format!("adb_{}_{secret}", id.to_uppercase()),
        format!("adb_0123456789abcdeg_{secret}"),
        format!("adb_{id}_{}+", &secret[..42]),
        format!("adb_{id}_{}=", &secret[..42]),
        format!("adb_{id}_{}é", &secret[..41]),
        format!("adb_{id} {secret}"),
        format!("adb_{id}_ {}", &secret[1..]),
        // Extra or missing parts.
        format!("adb_{id}_{secret}_x"),
        format!("adb_{id}_{id}_{secret}"),
        format!("adb_{id}{secret}x"),
        format!("adb_{id}_{secret}.{secret}"),
        // Not canonical: the last character carries bits beyond the 32 bytes.
        format!("adb_{id}_{}t", &secret[..42]),
        // Whitespace inside is not trimmed.
        format!("adb_{id}_{}\n{}", &secret[..20], &secret[21..]),
        // Far too long, even though it starts with a valid key.
        format!("{good}{}", " ".repeat(MAX_API_KEY_INPUT_LEN)),
    ];
    for case in &cases {
        assert!(malformed(case), "accepted {case:?}");
    }
}

#[test]
fn errors_never_quote_the_key() {
    let good = fixed();
    let wrong = format!("{}X", &good[..63]);
    let err = ApiKeySecret::parse(&wrong).unwrap_err();
    let text = err.to_string();
    assert!(!text.contains(&good[21..40]), "{text}");
    assert!(text.starts_with("malformed API key: "), "{text}");
}

#[test]
fn key_ids_validate_display_and_serialise_as_strings() {
    let id: ApiKeyId = "00ff00ff00ff00ff".parse().unwrap();
    assert_eq!(id.to_string(), "00ff00ff00ff00ff");
    assert_eq!(
        ApiKeyId::try_from("00ff00ff00ff00ff".to_owned()).unwrap(),
        id
    );
    assert_eq!(serde_json::to_string(&id).unwrap(), "\"00ff00ff00ff00ff\"");
    assert_eq!(
        serde_json::from_str::<ApiKeyId>("\"00ff00ff00ff00ff\"").unwrap(),
        id
    );
    for bad in [
        "",
        "00ff00ff00ff00f",
        "00ff00ff00ff00ff0",
        "00FF00FF00FF00FF",
        "00ff00ff00ff00fg",
        " 00ff00ff00ff00f",
    ] {
        assert!(bad.parse::<ApiKeyId>().is_err(), "accepted {bad:?}");
        assert!(ApiKeyId::try_from(bad.to_owned()).is_err());
        assert!(serde_json::from_str::<ApiKeyId>(&format!("\"{bad}\"")).is_err());
    }
}

#[test]
fn hashes_verify_only_the_same_key_under_the_same_hasher_key() {
    let hasher = ApiKeyHasher::new(&[1u8; 32]);
    let key = ApiKeySecret::generate().unwrap();
    let hash = hasher.hash(&key);
    assert_eq!(hash, hasher.hash(&key));
    assert!(hasher.verify(&key, &hash));
    // The same key parsed again from its text has the same hash.
    assert!(hasher.verify(&ApiKeySecret::parse(key.expose()).unwrap(), &hash));

    let another = ApiKeySecret::generate().unwrap();
    assert!(!hasher.verify(&another, &hash));
    assert_ne!(hasher.hash(&another), hash);

    let other_hasher = ApiKeyHasher::new(&[2u8; 32]);
    assert!(!other_hasher.verify(&key, &hash));
    assert_ne!(other_hasher.hash(&key), hash);

    // Truncated, extended or altered hashes never match.
    assert!(!hasher.verify(&key, &hash[..31]));
    assert!(!hasher.verify(&key, &[hash.as_slice(), &[0]].concat()));
    assert!(!hasher.verify(&key, &[]));
    let mut flipped = hash;
    flipped[31] ^= 1;
    assert!(!hasher.verify(&key, &flipped));
}

#[test]
fn hashes_are_hmac_sha256_of_the_whole_key_text() {
    let hasher = ApiKeyHasher::new(&[9u8; 32]);
    let key = ApiKeySecret::parse(&fixed()).unwrap();
    let expected = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &[9u8; 32]),
        fixed().as_bytes(),
    );
    assert_eq!(hasher.hash(&key).as_slice(), expected.as_ref());
}

#[test]
fn debug_shows_the_id_and_never_the_secret() {
    let key = ApiKeySecret::generate().unwrap();
    let secret_part = &key.expose()[21..];
    let shown = format!("{key:?} {key:#?}");
    assert!(shown.contains(key.id().as_str()), "{shown}");
    assert!(!shown.contains(secret_part), "{shown}");
    assert!(!shown.contains(&secret_part[..8]), "{shown}");
    let hasher = ApiKeyHasher::new(&[3u8; 32]);
    assert_eq!(format!("{hasher:?}"), "ApiKeyHasher(..)");
}
