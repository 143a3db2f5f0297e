//! Synthetic episodes shaped like agent work, deterministic from a seed.

use agentdb_core::{EpisodeId, NewEpisode};

/// xorshift64*: small, fast, deterministic.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// An episode id (UUIDv7) of time `unix_ms` with its random part drawn from this generator.
    // `agentdb-bench-memory` shares this file and makes no ids.
    #[allow(dead_code)]
    pub fn episode_id(&mut self, unix_ms: u64) -> EpisodeId {
        let mut random = [0u8; 10];
        random[..8].copy_from_slice(&self.next().to_le_bytes());
        random[8..].copy_from_slice(&self.next().to_le_bytes()[..2]);
        EpisodeId::from_parts(unix_ms, random)
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

const VERBS: [&str; 12] = [
    "summarise",
    "classify",
    "translate",
    "refund",
    "triage",
    "draft",
    "review",
    "extract",
    "reconcile",
    "escalate",
    "schedule",
    "answer",
];
const OBJECTS: [&str; 12] = [
    "invoice",
    "support ticket",
    "contract",
    "bug report",
    "purchase order",
    "email thread",
    "meeting notes",
    "expense claim",
    "shipping label",
    "pull request",
    "chat transcript",
    "customer complaint",
];

/// Episode number `i`.
pub fn episode(rng: &mut Rng, i: usize) -> NewEpisode {
    let task = format!("{} {}", rng.pick(&VERBS), rng.pick(&OBJECTS));
    let input = format!(
        "{} #{} from customer c{} in region r{} about item i{}",
        rng.pick(&OBJECTS),
        i,
        rng.next() % 5000,
        rng.next() % 40,
        rng.next() % 20000
    );
    let reward = (rng.next() % 1000) as f64 / 1000.0;
    NewEpisode::new(task, input, format!("result for {i}"), reward)
}

/// A query text like the episodes' tasks.
pub fn query(rng: &mut Rng) -> String {
    format!(
        "{} {} customer c{}",
        rng.pick(&VERBS),
        rng.pick(&OBJECTS),
        rng.next() % 5000
    )
}
