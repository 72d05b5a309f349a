//! On-disk encodings: entry records, index keys and meta values.
//!
//! Every integer is big-endian, so that the byte order of an index key is the numeric order
//! of the tuple it encodes (sled orders keys bytewise).

use plexcache_core::{Counters, EntryMeta, EvictionPolicy, Millis, Usage};

/// Version byte at the start of every entry record.
pub(crate) const RECORD_VERSION: u8 = 1;
/// Length of the fixed record header that precedes an inline value.
pub(crate) const HEADER_LEN: usize = 50;

const FLAG_EXPIRES: u8 = 0b01;
const FLAG_SEPARATE: u8 = 0b10;

/// The fixed part of an entry record.
///
/// Layout: `version u8, flags u8, stored_at u64, expires_at u64, accessed_at u64,
/// access_count u64, seq u64, value_len u64`, then the value itself unless it is stored in the
/// `values` tree (flag `SEPARATE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub stored_at: Millis,
    pub expires_at: Option<Millis>,
    pub accessed_at: Millis,
    pub access_count: u64,
    /// The write sequence number of the put that stored this value.
    pub seq: u64,
    pub value_len: u64,
    /// Whether the value lives in the `values` tree rather than after the header.
    pub separate: bool,
}

impl Header {
    pub(crate) fn meta(&self, key: &[u8]) -> EntryMeta {
        EntryMeta {
            stored_at: self.stored_at,
            expires_at: self.expires_at,
            accessed_at: self.accessed_at,
            access_count: self.access_count,
            size: self.size(key),
        }
    }

    /// Logical size: key bytes + value bytes.
    /// Saturating: a damaged `value_len` gives a huge size, never an overflow.
    pub(crate) fn size(&self, key: &[u8]) -> u64 {
        (key.len() as u64).saturating_add(self.value_len)
    }

    pub(crate) fn is_expired(&self, now: Millis) -> bool {
        matches!(self.expires_at, Some(at) if at <= now)
    }

    fn write_to(&self, out: &mut Vec<u8>) {
        let mut flags = 0;
        if self.expires_at.is_some() {
            flags |= FLAG_EXPIRES;
        }
        if self.separate {
            flags |= FLAG_SEPARATE;
        }
        out.push(RECORD_VERSION);
        out.push(flags);
        out.extend_from_slice(&self.stored_at.to_be_bytes());
        out.extend_from_slice(&self.expires_at.unwrap_or(0).to_be_bytes());
        out.extend_from_slice(&self.accessed_at.to_be_bytes());
        out.extend_from_slice(&self.access_count.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.value_len.to_be_bytes());
    }

    /// The record: header followed by `inline` (empty for separately stored values).
    pub(crate) fn encode(&self, inline: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + inline.len());
        self.write_to(&mut out);
        out.extend_from_slice(inline);
        out
    }

    /// Parses a record. The error says what is wrong.
    pub(crate) fn decode(record: &[u8]) -> Result<Header, String> {
        if record.len() < HEADER_LEN {
            return Err(format!(
                "entry record is {} bytes, shorter than its {HEADER_LEN}-byte header",
                record.len()
            ));
        }
        if record[0] != RECORD_VERSION {
            return Err(format!(
                "entry record version {} is not {RECORD_VERSION}",
                record[0]
            ));
        }
        let flags = record[1];
        if flags & !(FLAG_EXPIRES | FLAG_SEPARATE) != 0 {
            return Err(format!("entry record has unknown flags {flags:#04x}"));
        }
        let h = Header {
            stored_at: be_u64(record, 2),
            expires_at: (flags & FLAG_EXPIRES != 0).then(|| be_u64(record, 10)),
            accessed_at: be_u64(record, 18),
            access_count: be_u64(record, 26),
            seq: be_u64(record, 34),
            value_len: be_u64(record, 42),
            separate: flags & FLAG_SEPARATE != 0,
        };
        let inline = (record.len() - HEADER_LEN) as u64;
        let expected_inline = if h.separate { 0 } else { h.value_len };
        if inline != expected_inline {
            return Err(format!(
                "entry record holds {inline} value bytes, its header says {expected_inline}"
            ));
        }
        Ok(h)
    }
}

/// Reads a big-endian u64 at `at`; the caller has checked the length.
fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut buf = [0u8; 8];
    buf.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(buf)
}

/// Reads a big-endian u64 from a slice of exactly 8 bytes.
pub(crate) fn u64_from(b: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(b).ok().map(u64::from_be_bytes)
}

fn index_key(parts: &[u64], key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.len() * 8 + key.len());
    for p in parts {
        out.extend_from_slice(&p.to_be_bytes());
    }
    out.extend_from_slice(key);
    out
}

/// Expiry index: `expires_at ++ seq ++ key`, so purging goes soonest-expiry first and, for
/// equal times, in write order (the reference model's order).
pub(crate) fn expiry_key(h: &Header, key: &[u8]) -> Option<Vec<u8>> {
    h.expires_at.map(|at| index_key(&[at, h.seq], key))
}

/// Bytes before the cache key in an expiry index key.
pub(crate) const EXPIRY_PREFIX_LEN: usize = 16;

/// The eviction orders kept as indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    /// `stored_at ++ seq ++ key`
    Stored,
    /// `accessed_at ++ seq ++ key`
    Used,
    /// `access_count ++ accessed_at ++ seq ++ key`
    Frequency,
}

impl Order {
    pub(crate) const ALL: [Order; 3] = [Order::Stored, Order::Used, Order::Frequency];

    pub(crate) fn for_policy(policy: EvictionPolicy) -> Option<Order> {
        match policy {
            EvictionPolicy::LeastRecentlyStored => Some(Order::Stored),
            EvictionPolicy::LeastRecentlyUsed => Some(Order::Used),
            EvictionPolicy::LeastFrequentlyUsed => Some(Order::Frequency),
            EvictionPolicy::None => None,
        }
    }

    /// Length of the rank prefix before the key.
    pub(crate) fn prefix_len(self) -> usize {
        match self {
            Order::Stored | Order::Used => 16,
            Order::Frequency => 24,
        }
    }

    /// The index key of an entry in this order (matches
    /// `plexcache_core::model::eviction_rank`).
    pub(crate) fn key(self, h: &Header, key: &[u8]) -> Vec<u8> {
        match self {
            Order::Stored => index_key(&[h.stored_at, h.seq], key),
            Order::Used => index_key(&[h.accessed_at, h.seq], key),
            Order::Frequency => index_key(&[h.access_count, h.accessed_at, h.seq], key),
        }
    }

    /// Whether an access update moves the entry in this order.
    pub(crate) fn tracks_access(self) -> bool {
        !matches!(self, Order::Stored)
    }
}

/// Meta tree keys.
pub(crate) mod meta_key {
    /// Layout version of the store (u64).
    pub(crate) const VERSION: &[u8] = b"version";
    /// Entry count, byte total, write sequence (3 x u64).
    pub(crate) const USAGE: &[u8] = b"usage";
    /// Persistent statistics counters (u64 each, in `Counters::fields` order).
    pub(crate) const STATS: &[u8] = b"stats";
    /// 1 after a clean shutdown, 0 while open.
    pub(crate) const CLEAN: &[u8] = b"clean";
    /// 1 once the access-ordered indexes (`used`, `freq`) are maintained.
    pub(crate) const TRACKING: &[u8] = b"tracking";
    /// Present while a batch is being applied: what it replaces ([`super::BatchMarker`]).
    pub(crate) const BATCH: &[u8] = b"batch";
}

/// What a batch in progress replaces, stored in the meta tree (and flushed) before the batch
/// is applied and removed after it: its prefixes, and its keys outside those prefixes. An
/// open that finds it removes all of them, so that an interrupted batch reads as absent.
///
/// Layout: `version u8 (1)`, then `count u64` and `len u64 ++ bytes` per prefix, then the same
/// for the keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct BatchMarker {
    pub prefixes: Vec<Vec<u8>>,
    pub keys: Vec<Vec<u8>>,
}

const MARKER_VERSION: u8 = 1;

impl BatchMarker {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let len = |list: &[Vec<u8>]| list.iter().map(|b| 8 + b.len()).sum::<usize>() + 8;
        let mut out = Vec::with_capacity(1 + len(&self.prefixes) + len(&self.keys));
        out.push(MARKER_VERSION);
        for list in [&self.prefixes, &self.keys] {
            out.extend_from_slice(&(list.len() as u64).to_be_bytes());
            for b in list {
                out.extend_from_slice(&(b.len() as u64).to_be_bytes());
                out.extend_from_slice(b);
            }
        }
        out
    }

    pub(crate) fn decode(b: &[u8]) -> Result<BatchMarker, String> {
        let bad = || {
            format!(
                "the batch-in-progress marker ({} bytes) is malformed",
                b.len()
            )
        };
        let (&version, mut rest) = b.split_first().ok_or_else(bad)?;
        if version != MARKER_VERSION {
            return Err(format!(
                "the batch-in-progress marker has version {version}, not {MARKER_VERSION}"
            ));
        }
        let mut take = |n: usize| -> Result<&[u8], String> {
            let (head, tail) = rest.split_at_checked(n).ok_or_else(bad)?;
            rest = tail;
            Ok(head)
        };
        let mut lists: [Vec<Vec<u8>>; 2] = Default::default();
        for list in &mut lists {
            let count = u64_from(take(8)?).ok_or_else(bad)?;
            for _ in 0..count {
                let len = u64_from(take(8)?).ok_or_else(bad)?;
                let len = usize::try_from(len).map_err(|_| bad())?;
                list.push(take(len)?.to_vec());
            }
        }
        if !rest.is_empty() {
            return Err(bad());
        }
        let [prefixes, keys] = lists;
        Ok(BatchMarker { prefixes, keys })
    }
}

/// The store's counters as kept in the meta tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct UsageRec {
    pub entries: u64,
    pub bytes: u64,
    pub seq: u64,
}

impl UsageRec {
    pub(crate) fn encode(&self) -> [u8; 24] {
        let mut out = [0u8; 24];
        out[..8].copy_from_slice(&self.entries.to_be_bytes());
        out[8..16].copy_from_slice(&self.bytes.to_be_bytes());
        out[16..].copy_from_slice(&self.seq.to_be_bytes());
        out
    }

    pub(crate) fn decode(b: Option<&[u8]>) -> Result<UsageRec, String> {
        match b {
            None => Ok(UsageRec::default()),
            Some(b) if b.len() == 24 => Ok(UsageRec {
                entries: be_u64(b, 0),
                bytes: be_u64(b, 8),
                seq: be_u64(b, 16),
            }),
            Some(b) => Err(format!("usage counters are {} bytes, expected 24", b.len())),
        }
    }

    pub(crate) fn usage(&self) -> Usage {
        Usage {
            entries: self.entries,
            bytes: self.bytes,
        }
    }
}

pub(crate) fn encode_stats(c: &Counters) -> Vec<u8> {
    let mut out = Vec::with_capacity(72);
    for (_, v) in c.fields() {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out
}

/// Decodes stored counters. A shorter value (written by a build with fewer counters) leaves
/// the missing counters at zero; extra counters (a newer build) are ignored.
pub(crate) fn decode_stats(b: Option<&[u8]>) -> Result<Counters, String> {
    let mut c = Counters::default();
    let Some(b) = b else { return Ok(c) };
    if b.len() % 8 != 0 {
        return Err(format!(
            "statistics counters are {} bytes, not a multiple of 8",
            b.len()
        ));
    }
    for ((name, _), chunk) in Counters::default().fields().iter().zip(b.chunks_exact(8)) {
        c.set_field(name, u64_from(chunk).unwrap_or(0));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexcache_core::model::eviction_rank;

    fn header(seq: u64) -> Header {
        Header {
            stored_at: 1_700_000_000_000,
            expires_at: Some(1_700_000_360_000),
            accessed_at: 1_700_000_000_500,
            access_count: 7,
            seq,
            value_len: 3,
            separate: false,
        }
    }

    #[test]
    fn record_round_trip() {
        let h = header(9);
        let rec = h.encode(b"abc");
        assert_eq!(rec.len(), HEADER_LEN + 3);
        assert_eq!(Header::decode(&rec), Ok(h));
        let sep = Header {
            separate: true,
            expires_at: None,
            value_len: 1 << 40,
            ..h
        };
        assert_eq!(Header::decode(&sep.encode(&[])), Ok(sep));
        // Expiry at 0 is distinct from no expiry.
        let zero = Header {
            expires_at: Some(0),
            ..h
        };
        assert_eq!(Header::decode(&zero.encode(b"abc")), Ok(zero));
    }

    #[test]
    fn malformed_records_are_errors() {
        let rec = header(1).encode(b"abc");
        assert!(Header::decode(&rec[..10]).is_err());
        assert!(Header::decode(&rec[..rec.len() - 1]).is_err());
        let mut bad = rec.clone();
        bad[0] = 9;
        assert!(Header::decode(&bad).is_err());
        let mut bad = rec;
        bad[1] = 0x80;
        assert!(Header::decode(&bad).is_err());
        assert!(Header::decode(&[]).is_err());
    }

    #[test]
    fn index_order_matches_eviction_rank() {
        let mut hs = Vec::new();
        for (i, (at, count)) in [(5u64, 2u64), (5, 1), (3, 9), (8, 0), (3, 9)]
            .into_iter()
            .enumerate()
        {
            let h = Header {
                stored_at: at * 7 % 11,
                accessed_at: at,
                access_count: count,
                seq: i as u64 + 1,
                ..header(0)
            };
            hs.push((h, format!("k{}", 4 - i)));
        }
        for (order, policy) in [
            (Order::Stored, EvictionPolicy::LeastRecentlyStored),
            (Order::Used, EvictionPolicy::LeastRecentlyUsed),
            (Order::Frequency, EvictionPolicy::LeastFrequentlyUsed),
        ] {
            let mut by_index = hs.clone();
            by_index.sort_by_key(|(h, k)| order.key(h, k.as_bytes()));
            let mut by_rank = hs.clone();
            by_rank.sort_by_key(|(h, k)| eviction_rank(policy, &h.meta(k.as_bytes()), h.seq));
            assert_eq!(by_index, by_rank, "{policy}");
            let k = order.key(&hs[0].0, hs[0].1.as_bytes());
            assert_eq!(&k[order.prefix_len()..], hs[0].1.as_bytes());
        }
    }

    #[test]
    fn batch_marker_round_trip() {
        let m = BatchMarker {
            prefixes: vec![b"lib:1:".to_vec(), Vec::new()],
            keys: vec![b"k".to_vec(), vec![0xff; 300]],
        };
        let enc = m.encode();
        assert_eq!(BatchMarker::decode(&enc), Ok(m));
        assert_eq!(
            BatchMarker::decode(&BatchMarker::default().encode()),
            Ok(BatchMarker::default())
        );
        for cut in 0..enc.len() {
            assert!(BatchMarker::decode(&enc[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = enc.clone();
        long.push(0);
        assert!(BatchMarker::decode(&long).is_err());
        let mut huge = enc;
        huge[9..17].copy_from_slice(&u64::MAX.to_be_bytes());
        assert!(BatchMarker::decode(&huge).is_err());
        assert_eq!(
            Header {
                value_len: u64::MAX,
                ..header(1)
            }
            .size(b"key"),
            u64::MAX
        );
    }

    #[test]
    fn counters_round_trip() {
        let u = UsageRec {
            entries: 3,
            bytes: 1 << 33,
            seq: 99,
        };
        assert_eq!(UsageRec::decode(Some(&u.encode())), Ok(u));
        assert_eq!(UsageRec::decode(None), Ok(UsageRec::default()));
        assert!(UsageRec::decode(Some(b"short")).is_err());
        let c = Counters {
            hits: 1,
            misses: 2,
            coalesced: 9,
            ..Counters::default()
        };
        assert_eq!(decode_stats(Some(&encode_stats(&c))), Ok(c));
        assert_eq!(
            decode_stats(Some(&encode_stats(&c)[..16])),
            Ok(Counters {
                hits: 1,
                misses: 2,
                ..Counters::default()
            })
        );
        assert!(decode_stats(Some(b"123")).is_err());
    }
}
