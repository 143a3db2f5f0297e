//! `agentdb token`: create signing keys, issue tokens and verify them.
//!
//! EdDSA keys come from `token keygen`. An HS256 shared secret can be used instead, passed
//! with `--secret` or, better (it stays out of the process list), in `JWT_SECRET`.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use agentdb_core::{AgentId, TenantId};
use agentdb_memory::SystemClock;
use agentdb_security::token::{
    Claims, Ed25519KeyPem, Scope, TokenIssuer, TokenRequest, TokenVerifier, DEFAULT_AUDIENCE,
    DEFAULT_ISSUER, DEFAULT_TTL_SECS, JWT_SECRET_ENV,
};
use agentdb_security::{write_private_file, write_public_file};
use anyhow::{bail, Context as _};
use clap::{ArgGroup, Args, Subcommand};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::output;

/// Token commands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an Ed25519 signing key: FILE (private, PKCS#8 PEM, mode 0600) and FILE.pub.
    Keygen(KeygenArgs),
    /// Issue a token and print it.
    Issue(IssueArgs),
    /// Verify a token and print its claims; fails with the reason if it is not valid.
    Verify(VerifyArgs),
}

/// Arguments of `agentdb token keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Private key file to write; the public key goes to FILE.pub.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Replace existing key files.
    #[arg(long)]
    force: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `agentdb token issue`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("key").args(["signing_key", "secret"])))]
pub struct IssueArgs {
    /// Ed25519 private key (from `token keygen`); signs with EdDSA.
    #[arg(long, value_name = "FILE")]
    signing_key: Option<PathBuf>,
    /// HS256 shared secret (at least 32 bytes). Prefer the JWT_SECRET environment variable.
    #[arg(long, value_name = "S")]
    secret: Option<String>,
    /// The tenant the token is for.
    #[arg(long, value_name = "T")]
    tenant: TenantId,
    /// The agent the token is for (its `sub`).
    #[arg(long, value_name = "ID")]
    agent: AgentId,
    /// Lifetime in seconds.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_TTL_SECS)]
    ttl: u64,
    /// Comma-separated scopes: read, write, sync, admin, erase, operator (hub-wide state).
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "read,write,sync"
    )]
    scope: Vec<Scope>,
    /// The audience (`aud`).
    #[arg(long, value_name = "A", default_value = DEFAULT_AUDIENCE)]
    audience: String,
    /// The issuer (`iss`).
    #[arg(long, value_name = "NAME", default_value = DEFAULT_ISSUER)]
    issuer: String,
    /// Print the token and its claims as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `agentdb token verify`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("key").args(["public_key", "secret"])))]
pub struct VerifyArgs {
    /// The token, or '-' to read it from standard input.
    #[arg(value_name = "TOKEN")]
    token: String,
    /// Ed25519 public key (FILE.pub from `token keygen`); accepts EdDSA tokens only.
    #[arg(long, value_name = "FILE")]
    public_key: Option<PathBuf>,
    /// HS256 shared secret; accepts HS256 tokens only. Prefer the JWT_SECRET environment
    /// variable.
    #[arg(long, value_name = "S")]
    secret: Option<String>,
    /// The audience the token must name.
    #[arg(long, value_name = "A", default_value = DEFAULT_AUDIENCE)]
    audience: String,
    /// The issuer the token must name.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_ISSUER)]
    issuer: String,
    /// Print the claims as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct KeygenReport {
    algorithm: &'static str,
    private_key: PathBuf,
    public_key: PathBuf,
}

#[derive(Debug, Serialize)]
struct IssueReport<'a> {
    token: &'a str,
    claims: &'a Claims,
}

/// Runs a `token` subcommand.
pub fn run(cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Keygen(args) => keygen(args),
        TokenCommand::Issue(args) => issue(args),
        TokenCommand::Verify(args) => verify(args),
    }
}

fn keygen(args: KeygenArgs) -> anyhow::Result<()> {
    let public_path = public_key_path(&args.out);
    if !args.force {
        for path in [&args.out, &public_path] {
            if path.exists() {
                bail!(
                    "{} already exists (pass --force to replace it)",
                    path.display()
                );
            }
        }
    }
    let keys = Ed25519KeyPem::generate().context("cannot generate a signing key")?;
    write_private_file(&args.out, keys.private_pem.as_bytes(), args.force)?;
    write_public_file(&public_path, keys.public_pem.as_bytes(), args.force)?;
    let report = KeygenReport {
        algorithm: "EdDSA",
        private_key: args.out,
        public_key: public_path,
    };
    if args.json {
        return output::json(&report);
    }
    output::line(format_args!(
        "wrote Ed25519 signing key {} and public key {}",
        report.private_key.display(),
        report.public_key.display()
    ))
}

fn issue(args: IssueArgs) -> anyhow::Result<()> {
    let issuer = match (&args.signing_key, secret(args.secret.as_deref())) {
        (Some(path), _) => TokenIssuer::from_ed25519_pem(read_key(path)?.as_bytes())
            .with_context(|| format!("cannot use signing key {}", path.display()))?,
        (None, Some(secret)) => TokenIssuer::from_hs256_secret(secret.as_bytes())
            .context("cannot use the HS256 secret")?,
        (None, None) => {
            bail!("no signing key: pass --signing-key FILE or --secret S (or set {JWT_SECRET_ENV})")
        }
    }
    .with_issuer(args.issuer);
    let request = TokenRequest::new(args.tenant, args.agent)
        .scopes(args.scope)
        .ttl_secs(args.ttl)
        .audience(args.audience);
    let claims = issuer
        .claims(&request, SystemClock::unix_secs())
        .context("cannot issue the token")?;
    let token = issuer.sign(&claims).context("cannot issue the token")?;
    if args.json {
        return output::json(&IssueReport {
            token: &token,
            claims: &claims,
        });
    }
    output::line(token)
}

fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let verifier = match (&args.public_key, secret(args.secret.as_deref())) {
        (Some(path), _) => TokenVerifier::from_ed25519_public_pem(read_key(path)?.as_bytes())
            .with_context(|| format!("cannot use public key {}", path.display()))?,
        (None, Some(secret)) => TokenVerifier::from_hs256_secret(secret.as_bytes())
            .context("cannot use the HS256 secret")?,
        (None, None) => bail!(
            "no verification key: pass --public-key FILE or --secret S (or set {JWT_SECRET_ENV})"
        ),
    }
    .with_audience(args.audience)
    .with_issuer(args.issuer);
    let token = if args.token == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the token from standard input")?;
        text.trim().to_owned()
    } else {
        args.token
    };
    let now = SystemClock::unix_secs();
    let claims = verifier.verify(&token, now).context("token rejected")?;
    if args.json {
        return output::json(&claims);
    }
    let scopes: Vec<&str> = claims.scope.iter().map(|s| s.as_str()).collect();
    let rows = [
        ("tenant", claims.tenant.to_string()),
        ("agent", claims.sub.to_string()),
        ("scope", scopes.join(",")),
        ("issuer", claims.iss.clone()),
        ("audience", claims.aud.clone()),
        ("issued", claims.iat.to_string()),
        (
            "expires",
            format!("{} (in {} s)", claims.exp, claims.remaining_secs(now)),
        ),
        ("jti", claims.jti.clone()),
    ];
    output::line(format_args!("valid {} token", verifier.algorithm()))?;
    for (label, value) in rows {
        output::line(format_args!("{:<9} {value}", format!("{label}:")))?;
    }
    Ok(())
}

/// The HS256 secret from `--secret`, else from `JWT_SECRET`.
fn secret(flag: Option<&str>) -> Option<Zeroizing<String>> {
    flag.map(str::to_owned)
        .or_else(|| std::env::var(JWT_SECRET_ENV).ok())
        .filter(|s| !s.is_empty())
        .map(Zeroizing::new)
}

fn read_key(path: &Path) -> anyhow::Result<Zeroizing<String>> {
    std::fs::read_to_string(path)
        .map(Zeroizing::new)
        .with_context(|| format!("cannot read {}", path.display()))
}

/// `FILE.pub` next to `FILE`.
fn public_key_path(private: &Path) -> PathBuf {
    let mut name = private.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}
