//! Filters on a query: conditions on the clear-text facts an index keeps (reward, outcome,
//! creation time), checked inside the vector search, and conditions on the sealed content (tags
//! and metadata), checked once an episode is opened.

use crate::Timestamp;
use serde::{Deserialize, Serialize};

/// Which outcomes a query wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Successes and failures.
    #[default]
    Any,
    /// Only episodes whose reward reached the success threshold.
    Successes,
    /// Only episodes below the threshold.
    Failures,
}

/// Conditions every returned episode meets.
///
/// The conditions on clear-text facts (`min_reward`, `outcome`, `created_from`,
/// `created_until`) are checked for each candidate during the search (inside the HNSW traversal
/// and the exact scan). The conditions on content (`tags`, `metadata`) need the episode opened;
/// a search with them fetches more candidates than asked and keeps those that pass. Either way
/// `k` results come back whenever `k` matching episodes exist, however selective the filter.
///
/// A filter from outside should pass [`Filter::validate`] before it is used.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Filter {
    /// Lowest reward accepted.
    pub min_reward: Option<f64>,
    /// Success, failure or either.
    pub outcome: Outcome,
    /// Only episodes created at or after this time.
    pub created_from: Option<Timestamp>,
    /// Only episodes created before this time.
    pub created_until: Option<Timestamp>,
    /// Tags the episode must carry, every one of them (exact, case-sensitive).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Metadata fields the episode must have, every one of them, with equal values.
    #[serde(default)]
    pub metadata: Vec<MetadataMatch>,
}

/// A condition on an episode's metadata: its metadata is a JSON object with the field `key`,
/// and that field's value equals the JSON value written in `value`.
///
/// Values compare as JSON values: objects by their fields whatever their order, arrays element
/// by element, and numbers by their numeric value (`1` equals `1.0`). The value travels as JSON
/// text so that the filter stays encodable by formats that are not self-describing.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MetadataMatch {
    /// The top-level field of the metadata object.
    pub key: String,
    /// The value the field must equal, as JSON text (e.g. `"\"grep\""`, `3`, `true`).
    pub value: String,
}

impl MetadataMatch {
    /// A match of field `key` against `value`.
    pub fn new(key: impl Into<String>, value: &serde_json::Value) -> Self {
        Self {
            key: key.into(),
            value: value.to_string(),
        }
    }
}

/// Why a filter is refused. See [`Filter::validate`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FilterError {
    /// The filter names more tags than allowed.
    #[error("the filter has {count} tags; at most {limit} are allowed")]
    TooManyTags {
        /// Tags in the filter.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// The filter has more metadata conditions than allowed.
    #[error("the filter has {count} metadata conditions; at most {limit} are allowed")]
    TooManyMetadata {
        /// Metadata conditions in the filter.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A tag is empty or longer than allowed.
    #[error("filter tag {index} is {len} bytes; a tag must be 1 to {limit} bytes")]
    BadTag {
        /// The tag's position in the filter.
        index: usize,
        /// Its length in bytes.
        len: usize,
        /// The longest allowed.
        limit: usize,
    },
    /// A metadata key is empty or longer than allowed.
    #[error("filter metadata key {index} is {len} bytes; a key must be 1 to {limit} bytes")]
    BadKey {
        /// The condition's position in the filter.
        index: usize,
        /// The key's length in bytes.
        len: usize,
        /// The longest allowed.
        limit: usize,
    },
    /// A metadata value is not valid JSON.
    #[error("filter metadata value for key {key:?} is not valid JSON: {reason}")]
    BadValue {
        /// The condition's key.
        key: String,
        /// What the parser said.
        reason: String,
    },
}

/// The clear-text facts about an episode that filters look at (what an index keeps in memory).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpisodeFacts {
    /// The reward.
    pub reward: f64,
    /// Whether the reward reached the success threshold.
    pub success: bool,
    /// Creation time.
    pub created: Timestamp,
}

impl Filter {
    /// Most tags one filter may name.
    pub const MAX_TAGS: usize = 32;
    /// Most metadata conditions one filter may have.
    pub const MAX_METADATA: usize = 32;
    /// Longest tag or metadata key in a filter, in bytes.
    pub const MAX_NAME_BYTES: usize = 256;

    /// Whether an episode with `meta` passes the conditions on clear-text facts.
    pub fn accepts(&self, meta: &EpisodeFacts) -> bool {
        self.min_reward.is_none_or(|m| meta.reward >= m)
            && match self.outcome {
                Outcome::Any => true,
                Outcome::Successes => meta.success,
                Outcome::Failures => !meta.success,
            }
            && self.created_from.is_none_or(|t| meta.created >= t)
            && self.created_until.is_none_or(|t| meta.created < t)
    }

    /// Whether the filter has no condition on clear-text facts: [`Filter::accepts`] is true for
    /// every episode.
    pub fn accepts_all_facts(&self) -> bool {
        self.min_reward.is_none()
            && self.outcome == Outcome::Any
            && self.created_from.is_none()
            && self.created_until.is_none()
    }

    /// Whether the filter has conditions on content (tags or metadata), which only an opened
    /// episode can be checked against (see [`Filter::accepts_content`]).
    pub fn needs_content(&self) -> bool {
        !self.tags.is_empty() || !self.metadata.is_empty()
    }

    /// Whether an episode with `tags` and `metadata` passes the conditions on content: it
    /// carries every tag of the filter, and its metadata is an object with every key of the
    /// filter's metadata conditions, each with an equal value. A condition whose value is not
    /// valid JSON matches nothing (such a filter fails [`Filter::validate`]).
    pub fn accepts_content(&self, tags: &[String], metadata: &serde_json::Value) -> bool {
        if !self.tags.iter().all(|t| tags.contains(t)) {
            return false;
        }
        if self.metadata.is_empty() {
            return true;
        }
        let Some(object) = metadata.as_object() else {
            return false;
        };
        self.metadata.iter().all(|m| {
            let Some(found) = object.get(&m.key) else {
                return false;
            };
            serde_json::from_str::<serde_json::Value>(&m.value)
                .is_ok_and(|wanted| json_equal(found, &wanted))
        })
    }

    /// Checks the filter's content conditions against the limits: at most [`Filter::MAX_TAGS`]
    /// tags and [`Filter::MAX_METADATA`] metadata conditions, every tag and key 1 to
    /// [`Filter::MAX_NAME_BYTES`] bytes, every value valid JSON. Reports the first problem.
    pub fn validate(&self) -> Result<(), FilterError> {
        if self.tags.len() > Self::MAX_TAGS {
            return Err(FilterError::TooManyTags {
                count: self.tags.len(),
                limit: Self::MAX_TAGS,
            });
        }
        if self.metadata.len() > Self::MAX_METADATA {
            return Err(FilterError::TooManyMetadata {
                count: self.metadata.len(),
                limit: Self::MAX_METADATA,
            });
        }
        let fits = |s: &str| !s.is_empty() && s.len() <= Self::MAX_NAME_BYTES;
        if let Some((index, tag)) = self.tags.iter().enumerate().find(|(_, t)| !fits(t)) {
            return Err(FilterError::BadTag {
                index,
                len: tag.len(),
                limit: Self::MAX_NAME_BYTES,
            });
        }
        for (index, m) in self.metadata.iter().enumerate() {
            if !fits(&m.key) {
                return Err(FilterError::BadKey {
                    index,
                    len: m.key.len(),
                    limit: Self::MAX_NAME_BYTES,
                });
            }
            if let Err(e) = serde_json::from_str::<serde_json::Value>(&m.value) {
                return Err(FilterError::BadValue {
                    key: m.key.clone(),
                    reason: e.to_string(),
                });
            }
        }
        Ok(())
    }
}

/// JSON equality with numbers compared by value: integers exactly, anything else as `f64`.
fn json_equal(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                x == y
            } else if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                x == y
            } else {
                // Mixed or fractional: compare the values as floats (finite, as JSON numbers are).
                x.as_f64() == y.as_f64()
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_equal(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filter_conditions_combine() {
        let m = EpisodeFacts {
            reward: 0.8,
            success: true,
            created: Timestamp(100),
        };
        assert!(Filter::default().accepts(&m));
        let f = |f: Filter| f.accepts(&m);
        assert!(f(Filter {
            min_reward: Some(0.8),
            ..Default::default()
        }));
        assert!(!f(Filter {
            min_reward: Some(0.81),
            ..Default::default()
        }));
        assert!(f(Filter {
            outcome: Outcome::Successes,
            ..Default::default()
        }));
        assert!(!f(Filter {
            outcome: Outcome::Failures,
            ..Default::default()
        }));
        assert!(f(Filter {
            created_from: Some(Timestamp(100)),
            ..Default::default()
        }));
        assert!(!f(Filter {
            created_until: Some(Timestamp(100)),
            ..Default::default()
        }));
    }

    #[test]
    fn only_a_filter_without_fact_conditions_accepts_all_facts() {
        assert!(Filter::default().accepts_all_facts());
        // Content conditions are not facts.
        assert!(Filter {
            tags: tags(&["eu"]),
            ..Default::default()
        }
        .accepts_all_facts());
        let conditioned = [
            Filter {
                min_reward: Some(0.0),
                ..Default::default()
            },
            Filter {
                outcome: Outcome::Failures,
                ..Default::default()
            },
            Filter {
                created_from: Some(Timestamp(0)),
                ..Default::default()
            },
            Filter {
                created_until: Some(Timestamp(u64::MAX)),
                ..Default::default()
            },
        ];
        for f in conditioned {
            assert!(!f.accepts_all_facts(), "{f:?}");
        }
    }

    fn tags(t: &[&str]) -> Vec<String> {
        t.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn content_conditions_need_every_tag() {
        let f = Filter {
            tags: tags(&["billing", "eu"]),
            ..Default::default()
        };
        assert!(f.needs_content());
        let none = serde_json::Value::Null;
        assert!(f.accepts_content(&tags(&["eu", "x", "billing"]), &none));
        assert!(!f.accepts_content(&tags(&["billing"]), &none));
        assert!(!f.accepts_content(&tags(&["Billing", "eu"]), &none));
        assert!(!f.accepts_content(&[], &none));
        assert!(!Filter::default().needs_content());
        assert!(Filter::default().accepts_content(&[], &none));
    }

    #[test]
    fn metadata_conditions_compare_json_values() {
        let f = |key: &str, value: serde_json::Value| Filter {
            metadata: vec![MetadataMatch::new(key, &value)],
            ..Default::default()
        };
        let meta =
            json!({"tool": "grep", "n": 3, "x": 0.5, "obj": {"a": [1, 2], "b": null}, "t": true});
        assert!(f("tool", json!("grep")).accepts_content(&[], &meta));
        assert!(!f("tool", json!("sed")).accepts_content(&[], &meta));
        assert!(f("n", json!(3)).accepts_content(&[], &meta));
        assert!(f("n", json!(3.0)).accepts_content(&[], &meta));
        assert!(!f("n", json!("3")).accepts_content(&[], &meta));
        assert!(f("x", json!(0.5)).accepts_content(&[], &meta));
        assert!(f("t", json!(true)).accepts_content(&[], &meta));
        assert!(f("obj", json!({"b": null, "a": [1.0, 2]})).accepts_content(&[], &meta));
        assert!(!f("obj", json!({"a": [2, 1], "b": null})).accepts_content(&[], &meta));
        assert!(!f("missing", json!(null)).accepts_content(&[], &meta));
        // Only top-level fields of an object count.
        assert!(!f("a", json!([1, 2])).accepts_content(&[], &meta));
        assert!(!f("tool", json!("grep")).accepts_content(&[], &json!(["tool", "grep"])));
        assert!(!f("tool", json!("grep")).accepts_content(&[], &serde_json::Value::Null));
        // Every condition must hold.
        let both = Filter {
            tags: tags(&["ok"]),
            metadata: vec![
                MetadataMatch::new("tool", &json!("grep")),
                MetadataMatch::new("n", &json!(3)),
            ],
            ..Default::default()
        };
        assert!(both.accepts_content(&tags(&["ok"]), &meta));
        assert!(!both.accepts_content(&[], &meta));
        let mut one_wrong = both.clone();
        one_wrong.metadata[1].value = "4".into();
        assert!(!one_wrong.accepts_content(&tags(&["ok"]), &meta));
        // Text that is not JSON matches nothing.
        let mut broken = both;
        broken.metadata[0].value = "grep".into();
        assert!(!broken.accepts_content(&tags(&["ok"]), &meta));
    }

    #[test]
    fn large_integers_compare_exactly() {
        let meta = json!({"big": u64::MAX, "neg": -5});
        let f = |key: &str, text: &str| Filter {
            metadata: vec![MetadataMatch {
                key: key.into(),
                value: text.into(),
            }],
            ..Default::default()
        };
        assert!(f("big", "18446744073709551615").accepts_content(&[], &meta));
        assert!(!f("big", "18446744073709551614").accepts_content(&[], &meta));
        assert!(f("neg", "-5").accepts_content(&[], &meta));
        assert!(f("neg", "-5.0").accepts_content(&[], &meta));
        assert!(!f("neg", "5").accepts_content(&[], &meta));
    }

    #[test]
    fn validation_enforces_the_limits() {
        assert_eq!(Filter::default().validate(), Ok(()));
        let name = |n: usize| "t".repeat(n);
        let with_tags = |t: Vec<String>| Filter {
            tags: t,
            ..Default::default()
        };
        assert_eq!(with_tags(vec![name(256); 32]).validate(), Ok(()));
        assert_eq!(
            with_tags(vec![name(1); 33]).validate(),
            Err(FilterError::TooManyTags {
                count: 33,
                limit: 32
            })
        );
        assert_eq!(
            with_tags(vec![name(1), name(257)]).validate(),
            Err(FilterError::BadTag {
                index: 1,
                len: 257,
                limit: 256
            })
        );
        assert!(matches!(
            with_tags(vec![String::new()]).validate(),
            Err(FilterError::BadTag {
                index: 0,
                len: 0,
                ..
            })
        ));
        let with_meta = |m: Vec<MetadataMatch>| Filter {
            metadata: m,
            ..Default::default()
        };
        let ok = MetadataMatch::new(name(256), &json!({"a": 1}));
        assert_eq!(with_meta(vec![ok.clone(); 32]).validate(), Ok(()));
        assert_eq!(
            with_meta(vec![ok.clone(); 33]).validate(),
            Err(FilterError::TooManyMetadata {
                count: 33,
                limit: 32
            })
        );
        let long_key = MetadataMatch::new(name(257), &json!(1));
        assert!(matches!(
            with_meta(vec![ok.clone(), long_key]).validate(),
            Err(FilterError::BadKey {
                index: 1,
                len: 257,
                ..
            })
        ));
        let empty_key = MetadataMatch::new("", &json!(1));
        assert!(matches!(
            with_meta(vec![empty_key]).validate(),
            Err(FilterError::BadKey {
                index: 0,
                len: 0,
                ..
            })
        ));
        for bad in ["", "grep", "{\"a\":", "1 2"] {
            let m = MetadataMatch {
                key: "k".into(),
                value: bad.into(),
            };
            match with_meta(vec![m]).validate() {
                Err(FilterError::BadValue { key, .. }) => assert_eq!(key, "k"),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn older_json_without_content_conditions_still_parses() {
        let f: Filter = serde_json::from_str(
            r#"{"min_reward":0.5,"outcome":"successes","created_from":null,"created_until":null}"#,
        )
        .expect("older filter JSON parses");
        assert_eq!(
            f,
            Filter {
                min_reward: Some(0.5),
                outcome: Outcome::Successes,
                ..Default::default()
            }
        );
    }
}
