//! What federation knows of its peer hubs, kept for tombstone collection: every peer hub this
//! store's hub has linked with (and its region), and per tenant what each has acknowledged
//! holding (see [`super::Write::KnowPeer`] and [`super::Write::JoinPeerAck`]).
//!
//! An acknowledgement record only ever grows: joining a newer one takes the pointwise maximum
//! of the vectors, so a stale or concurrent write can never make a hub look further ahead than
//! it said it was, nor further behind.

use agentdb_core::{Region, VersionVector};
use serde::{Deserialize, Serialize};

/// The format byte of peer records.
const PEER_FORMAT_V1: u8 = 1;

/// A peer hub as tombstone collection sees it for one tenant: its region (a tenant's residency
/// may keep it out of it) and the ops of the tenant it has acknowledged holding (none yet: an
/// empty vector).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerAck {
    /// The peer's region, from its last Hello.
    pub region: Region,
    /// The ops of the tenant the peer has acknowledged holding.
    pub acked: VersionVector,
}

/// A peer record that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored peer record is corrupt or of an unknown format")]
pub struct PeerRecordError;

/// `0x01 | postcard(value)`.
fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![PEER_FORMAT_V1];
    // Serialising plain fields into a Vec cannot fail.
    out.extend(postcard::to_stdvec(value).unwrap_or_default());
    out
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, PeerRecordError> {
    match bytes.split_first() {
        Some((&PEER_FORMAT_V1, rest)) => postcard::from_bytes(rest).map_err(|_| PeerRecordError),
        _ => Err(PeerRecordError),
    }
}

/// A peer's region record.
pub fn encode_region(region: &Region) -> Vec<u8> {
    encode(region)
}

/// Parses [`encode_region`]'s output.
pub fn decode_region(bytes: &[u8]) -> Result<Region, PeerRecordError> {
    decode(bytes)
}

/// Parses an acknowledgement record.
pub fn decode_acked(bytes: &[u8]) -> Result<VersionVector, PeerRecordError> {
    decode(bytes)
}

/// The acknowledgement record a join of `new` leaves over `existing` (its bytes), or `None`
/// when it leaves it as it is (or `new` is empty and there is none): the pointwise maximum.
pub fn joined_acked(
    existing: Option<&[u8]>,
    new: &VersionVector,
) -> Result<Option<Vec<u8>>, PeerRecordError> {
    let Some(bytes) = existing else {
        return Ok((!new.is_empty()).then(|| encode(new)));
    };
    let held = decode_acked(bytes)?;
    let mut acked = held.clone();
    acked.merge(new);
    Ok((acked != held).then(|| encode(&acked)))
}

#[cfg(test)]
mod tests {
    use agentdb_core::HubId;

    use super::*;

    fn vv(entries: &[(&str, u64)]) -> VersionVector {
        entries
            .iter()
            .map(|(h, s)| (HubId::new(*h).unwrap_or_else(|_| unreachable!()), *s))
            .collect()
    }

    fn joined(existing: Option<&[u8]>, new: &VersionVector) -> Option<Vec<u8>> {
        joined_acked(existing, new).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn an_acknowledgement_record_only_grows() {
        assert_eq!(joined(None, &VersionVector::new()), None);
        let first = vv(&[("a", 3), ("b", 1)]);
        let bytes = joined(None, &first).unwrap_or_default();
        assert_eq!(decode_acked(&bytes), Ok(first));
        // Behind in every entry: nothing changes.
        assert_eq!(joined(Some(&bytes), &vv(&[("a", 2)])), None);
        // Ahead in one, behind in another: the pointwise maximum.
        let grown = joined(Some(&bytes), &vv(&[("a", 1), ("b", 4), ("c", 1)])).unwrap_or_default();
        assert_eq!(
            decode_acked(&grown),
            Ok(vv(&[("a", 3), ("b", 4), ("c", 1)]))
        );
        let eu = Region::new("eu").unwrap_or_else(|_| unreachable!());
        assert_eq!(decode_region(&encode_region(&eu)), Ok(eu));
    }

    #[test]
    fn garbage_is_an_error() {
        assert_eq!(decode_acked(&[]), Err(PeerRecordError));
        assert_eq!(decode_acked(&[7, 1]), Err(PeerRecordError));
        assert_eq!(decode_region(&[1, 0xff, 0xff]), Err(PeerRecordError));
        assert_eq!(
            joined_acked(Some(&[9]), &vv(&[("a", 1)])),
            Err(PeerRecordError)
        );
    }
}
