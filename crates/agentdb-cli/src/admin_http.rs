//! A client of the hub's admin HTTP: one request with a Bearer token, the parsed answer or a
//! one-line error carrying the hub's message. Used by `agentdb federation` and `agentdb tenant`.

use anyhow::{bail, Context as _};
use serde::de::DeserializeOwned;

/// The methods the admin HTTP routes use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Post,
    Delete,
}

/// `http://ADDR/PATH` for `addr` given as `host:port` or `http://host:port`.
fn url(addr: &str, path: &str) -> String {
    let base = addr.trim().trim_end_matches('/');
    if base.starts_with("http://") || base.starts_with("https://") {
        format!("{base}{path}")
    } else {
        format!("http://{base}{path}")
    }
}

/// Sends `method path` (with `body` as JSON, if any) to the admin HTTP at `addr` with
/// `Authorization: Bearer token`, and parses the answer as `T`. A refusal is an error naming
/// the URL, the status and the hub's message, on one line.
pub(crate) fn call<T: DeserializeOwned>(
    addr: &str,
    token: &str,
    method: Method,
    path: &str,
    body: Option<&serde_json::Value>,
) -> anyhow::Result<T> {
    let url = url(addr, path);
    let auth = format!("Bearer {}", token.trim());
    let sent = match method {
        Method::Get => with_config(ureq::get(&url).header("Authorization", &auth)).call(),
        Method::Delete => with_config(ureq::delete(&url).header("Authorization", &auth)).call(),
        Method::Post => {
            let bytes = match body {
                Some(b) => serde_json::to_vec(b).context("cannot encode the request")?,
                None => Vec::new(),
            };
            ureq::post(&url)
                .header("Authorization", &auth)
                .header("Content-Type", "application/json")
                .config()
                .http_status_as_error(false)
                .build()
                .send(&bytes[..])
        }
    };
    let mut response = sent.with_context(|| format!("cannot reach {url}"))?;
    let code = response.status();
    let text = response
        .body_mut()
        .read_to_string()
        .with_context(|| format!("cannot read the answer of {url}"))?;
    if !code.is_success() {
        bail!("{url} refused ({code}): {}", refusal_message(&text));
    }
    serde_json::from_str(&text).with_context(|| format!("unexpected answer from {url}"))
}

/// A request builder without a body, answering non-success statuses as responses.
fn with_config(
    builder: ureq::RequestBuilder<ureq::typestate::WithoutBody>,
) -> ureq::RequestBuilder<ureq::typestate::WithoutBody> {
    builder.config().http_status_as_error(false).build()
}

/// The hub's one-line message from an error body `{"error", "message"}`, else the body's first
/// line.
fn refusal_message(body: &str) -> String {
    let parsed: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let text = match parsed["message"].as_str() {
        Some(m) => m,
        None => body.trim(),
    };
    let line = text.lines().next().unwrap_or("").trim();
    if line.is_empty() {
        "no reason given".to_owned()
    } else {
        line.chars().take(300).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_refusals() {
        assert_eq!(url("127.0.0.1:8444", "/v1/x"), "http://127.0.0.1:8444/v1/x");
        assert_eq!(url("http://h:1/", "/v1/x"), "http://h:1/v1/x");
        assert_eq!(
            refusal_message(r#"{"error":"forbidden","message":"no admin scope"}"#),
            "no admin scope"
        );
        assert_eq!(refusal_message("Not Found\nmore"), "Not Found");
        assert_eq!(refusal_message(""), "no reason given");
    }
}
