//! How typed values are stored: postcard inside a checksummed, schema-tagged envelope.
//!
//! ```text
//! offset  size  field
//! 0       2     magic  b"PX"
//! 2       1     envelope format version (2)
//! 3       8     schema tag of the value's type and version, little endian
//! 11      8     xxh3-64 of the payload, seeded with the schema tag xor xxh3-64 of the key
//! 19      ..    payload: the value encoded with postcard
//! ```
//!
//! A stored value whose magic, format, schema tag or checksum does not match, or whose payload
//! does not decode completely, is a [`DecodeError`]: [`Cache`](crate::Cache) treats it as a
//! miss, removes it and counts it. It never returns garbage and never panics. Changing a type's
//! [`CacheValue`] version makes every old entry of that type read as a miss.
//!
//! The checksum binds the value to its key: bytes read under another key (a damaged key
//! column, an index pointing at the wrong row) fail the check like damaged bytes. Format 1
//! (before the key was bound) reads as [`DecodeError::UnsupportedFormat`], so entries written
//! by older releases are misses, removed and counted.
//!
//! No `pickle`-style code execution is possible: postcard only produces the declared type.

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// XXH3-64 of `data` with `seed`: the payload checksum. The implementation picks its SIMD
/// path at run time; the values are XXH3's (a test checks them against another one).
#[inline]
fn xxh3_64_with_seed(data: &[u8], seed: u64) -> u64 {
    twox_hash::XxHash3_64::oneshot_with_seed(seed, data)
}

/// The envelope's magic bytes.
pub const MAGIC: [u8; 2] = *b"PX";
/// The envelope format this build writes and reads.
pub const FORMAT_VERSION: u8 = 2;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 19;

/// A 64-bit tag naming a stored type and its version. Two tags are equal only if the names,
/// versions and (for containers) element tags are equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SchemaTag(pub u64);

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

const fn fnv_bytes(mut h: u64, bytes: &[u8]) -> u64 {
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(FNV_PRIME);
        i += 1;
    }
    h
}

const fn fnv_u64(h: u64, v: u64) -> u64 {
    fnv_bytes(h, &v.to_le_bytes())
}

impl SchemaTag {
    /// The tag of a named type at a version. Use a stable, namespaced name
    /// (`"myapp.Movie"`), not `std::any::type_name`, which may change between compilers.
    pub const fn new(name: &str, version: u32) -> Self {
        let h = fnv_bytes(FNV_OFFSET, name.as_bytes());
        Self(fnv_u64(fnv_u64(h, 0xff), version as u64))
    }

    /// The tag of a generic container (`Vec`, `Option`, ...) of `inner`.
    pub const fn container(name: &str, inner: SchemaTag) -> Self {
        let h = fnv_bytes(FNV_OFFSET, name.as_bytes());
        Self(fnv_u64(fnv_u64(h, 0xfe), inner.0))
    }

    /// The tag of a two-parameter container (`HashMap<K, V>`, tuples).
    pub const fn container2(name: &str, a: SchemaTag, b: SchemaTag) -> Self {
        let h = fnv_bytes(FNV_OFFSET, name.as_bytes());
        Self(fnv_u64(fnv_u64(fnv_u64(h, 0xfd), a.0), b.0))
    }
}

/// A type that can be stored in a [`Cache`](crate::Cache): serde plus a schema tag.
///
/// Implemented for the common std types; implement it for your own types with
/// [`cache_value!`](crate::cache_value), and bump the version whenever the serialized shape
/// changes (old entries then read as misses instead of garbage).
///
/// ```
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Movie {
///     title: String,
///     year: u16,
/// }
/// plexcache_core::cache_value!(Movie, "myapp.Movie", 1);
/// ```
pub trait CacheValue: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The tag stored with every value of this type.
    const SCHEMA: SchemaTag;
}

/// Implements [`CacheValue`] for a type: `cache_value!(Type, "stable.name", version)`.
#[macro_export]
macro_rules! cache_value {
    ($ty:ty, $name:expr, $version:expr) => {
        impl $crate::CacheValue for $ty {
            const SCHEMA: $crate::SchemaTag = $crate::SchemaTag::new($name, $version);
        }
    };
}

macro_rules! std_values {
    ($($ty:ty),* $(,)?) => {
        $(impl CacheValue for $ty {
            const SCHEMA: SchemaTag = SchemaTag::new(stringify!($ty), 1);
        })*
    };
}

std_values!(
    String,
    bool,
    char,
    u8,
    u16,
    u32,
    u64,
    u128,
    i8,
    i16,
    i32,
    i64,
    i128,
    f32,
    f64,
    usize,
    isize,
    ()
);

impl<T: CacheValue> CacheValue for Vec<T> {
    const SCHEMA: SchemaTag = SchemaTag::container("Vec", T::SCHEMA);
}
impl<T: CacheValue> CacheValue for Option<T> {
    const SCHEMA: SchemaTag = SchemaTag::container("Option", T::SCHEMA);
}
impl<T: CacheValue> CacheValue for Box<T> {
    const SCHEMA: SchemaTag = T::SCHEMA;
}
impl<T: CacheValue + Ord> CacheValue for std::collections::BTreeSet<T> {
    const SCHEMA: SchemaTag = SchemaTag::container("BTreeSet", T::SCHEMA);
}
impl<K: CacheValue + Ord, V: CacheValue> CacheValue for std::collections::BTreeMap<K, V> {
    const SCHEMA: SchemaTag = SchemaTag::container2("BTreeMap", K::SCHEMA, V::SCHEMA);
}
impl<K, V> CacheValue for std::collections::HashMap<K, V>
where
    K: CacheValue + Eq + std::hash::Hash,
    V: CacheValue,
{
    const SCHEMA: SchemaTag = SchemaTag::container2("HashMap", K::SCHEMA, V::SCHEMA);
}
impl<A: CacheValue, B: CacheValue> CacheValue for (A, B) {
    const SCHEMA: SchemaTag = SchemaTag::container2("Tuple2", A::SCHEMA, B::SCHEMA);
}

/// Why a stored value could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer bytes than the envelope header.
    #[error("value is {0} bytes, shorter than the {HEADER_LEN}-byte envelope header")]
    TooShort(usize),
    /// Not a plexcache envelope.
    #[error("value does not start with the plexcache envelope magic")]
    BadMagic,
    /// An envelope format this build does not read (for example, written by a newer version).
    #[error("envelope format {0} is not supported (this build reads {FORMAT_VERSION})")]
    UnsupportedFormat(u8),
    /// The value was stored as another type or another version of this type.
    #[error("stored schema tag {found:#018x} does not match the requested type's {expected:#018x}")]
    SchemaMismatch {
        /// The tag of the requested type.
        expected: u64,
        /// The tag found in the envelope.
        found: u64,
    },
    /// The payload's checksum does not match: the bytes were damaged, or were read under
    /// another key than the one they were written for.
    #[error("checksum mismatch: the stored value is damaged or belongs to another key")]
    Checksum,
    /// The payload did not decode as the requested type.
    #[error("payload does not decode: {0}")]
    Payload(String),
}

/// The checksum seed of a value of type `schema` stored under `key`.
#[inline]
pub fn seed(key: &str, schema: SchemaTag) -> u64 {
    schema.0 ^ xxhash_rust::xxh3::xxh3_64(key.as_bytes())
}

/// Encodes `value`, to be stored under `key`, into an envelope.
pub fn encode<T: CacheValue>(key: &str, value: &T) -> Result<Bytes, postcard::Error> {
    encode_tagged(key, value, T::SCHEMA)
}

/// A borrowed (or pre-encoded) form of a [`CacheValue`] that serializes byte for byte like
/// the owned value, so it can be stored without first cloning it into the owned type: `[T]`
/// for `Vec<T>`, `Option<&T>` for `Option<T>`, and for example `plexcache-plex`'s
/// `ListingRef` for its `Listing`.
///
/// Implementing it is a promise: the form's serde output must be exactly what `Owned`
/// serializes to and deserializes from, or values written through it read back wrong or as
/// decode failures. Test the round trip.
pub trait BorrowedValue: Serialize {
    /// The owned type whose schema tag the envelope carries (and that reads it back).
    type Owned: CacheValue;

    /// The exact length of the postcard payload, for forms that can write it themselves
    /// with [`BorrowedValue::write_payload`] (faster than serde for large values: one buffer,
    /// no intermediate copies). `None`, the default, means serde writes it.
    fn payload_len(&self) -> Option<usize> {
        None
    }

    /// Appends exactly [`payload_len`](BorrowedValue::payload_len) bytes, the value's postcard
    /// payload, to `out`. Called only when `payload_len` returned `Some`.
    fn write_payload(&self, out: &mut Vec<u8>) {
        let _ = out;
    }
}

impl<T: CacheValue> BorrowedValue for [T] {
    type Owned = Vec<T>;
}

impl<T: CacheValue> BorrowedValue for Option<&T> {
    type Owned = Option<T>;
}

/// Encodes a borrowed form, to be stored under `key`, into the envelope of its owned type (see
/// [`BorrowedValue`]).
pub fn encode_borrowed<V: BorrowedValue + ?Sized>(
    key: &str,
    value: &V,
) -> Result<Bytes, postcard::Error> {
    let schema = V::Owned::SCHEMA;
    let Some(size) = value.payload_len() else {
        return encode_tagged(key, value, schema);
    };
    let mut buf = header_buf(schema, size);
    value.write_payload(&mut buf);
    if buf.len() != HEADER_LEN + size {
        // A form that breaks its own promise: refuse rather than store a short value.
        return Err(postcard::Error::SerializeBufferFull);
    }
    Ok(seal(key, schema, buf))
}

/// A buffer for an envelope with a payload of `size` bytes, holding its header so far.
fn header_buf(schema: SchemaTag, size: usize) -> Vec<u8> {
    let mut buf = Vec::with_capacity(HEADER_LEN + size);
    buf.extend_from_slice(&MAGIC);
    buf.push(FORMAT_VERSION);
    buf.extend_from_slice(&schema.0.to_le_bytes());
    buf.extend_from_slice(&[0u8; 8]);
    buf
}

/// Writes the checksum of a complete envelope into its header.
fn seal(key: &str, schema: SchemaTag, mut buf: Vec<u8>) -> Bytes {
    let sum = xxh3_64_with_seed(&buf[HEADER_LEN..], seed(key, schema));
    buf[11..HEADER_LEN].copy_from_slice(&sum.to_le_bytes());
    Bytes::from(buf)
}

/// Encodes any serde value under an explicit schema tag (for types that implement
/// [`CacheValue`] through a borrowed or custom form).
pub fn encode_tagged<S: Serialize + ?Sized>(
    key: &str,
    value: &S,
    schema: SchemaTag,
) -> Result<Bytes, postcard::Error> {
    // Measuring first (a pass that writes nothing) lets the envelope be written once into a
    // buffer of the exact size: no reallocation copies, and for large values (a 1.5 MB library
    // list) no page faults on the buffers a growing Vec would leave behind.
    let size = postcard::serialize_with_flavor(value, postcard::ser_flavors::Size::default())?;
    let buf = postcard::serialize_with_flavor(value, VecFlavor(header_buf(schema, size)))?;
    Ok(seal(key, schema, buf))
}

/// A postcard output that appends to a `Vec` with `extend_from_slice`.
struct VecFlavor(Vec<u8>);

impl postcard::ser_flavors::Flavor for VecFlavor {
    type Output = Vec<u8>;

    #[inline(always)]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    #[inline(always)]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<Vec<u8>> {
        Ok(self.0)
    }
}

/// Checks the envelope of a value read under `key` and decodes the value.
pub fn decode<T: CacheValue>(key: &str, bytes: &[u8]) -> Result<T, DecodeError> {
    let payload = check_envelope(key, bytes, T::SCHEMA)?;
    match postcard::take_from_bytes::<T>(payload) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(DecodeError::Payload(format!(
            "{} trailing bytes after the value",
            rest.len()
        ))),
        Err(e) => Err(DecodeError::Payload(e.to_string())),
    }
}

/// Reads an envelope's schema tag without checking the payload.
pub fn schema_of(bytes: &[u8]) -> Result<SchemaTag, DecodeError> {
    let header = header(bytes)?;
    Ok(SchemaTag(read_u64(header, 3)))
}

/// Checks magic, format, schema and checksum (which binds the value to `key`); returns the
/// payload.
pub fn check_envelope<'a>(
    key: &str,
    bytes: &'a [u8],
    expected: SchemaTag,
) -> Result<&'a [u8], DecodeError> {
    let header = header(bytes)?;
    let found = read_u64(header, 3);
    if found != expected.0 {
        return Err(DecodeError::SchemaMismatch {
            expected: expected.0,
            found,
        });
    }
    let payload = &bytes[HEADER_LEN..];
    if read_u64(header, 11) != xxh3_64_with_seed(payload, seed(key, SchemaTag(found))) {
        return Err(DecodeError::Checksum);
    }
    Ok(payload)
}

/// Checks magic, format and checksum of a value read under `key` (for any schema); returns the
/// schema tag. Used by integrity checks that do not know the stored types.
pub fn verify(key: &str, bytes: &[u8]) -> Result<SchemaTag, DecodeError> {
    let tag = schema_of(bytes)?;
    check_envelope(key, bytes, tag)?;
    Ok(tag)
}

fn header(bytes: &[u8]) -> Result<&[u8], DecodeError> {
    if bytes.len() < HEADER_LEN {
        return Err(DecodeError::TooShort(bytes.len()));
    }
    let header = &bytes[..HEADER_LEN];
    if header[..2] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    if header[2] != FORMAT_VERSION {
        return Err(DecodeError::UnsupportedFormat(header[2]));
    }
    Ok(header)
}

fn read_u64(header: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&header[at..at + 8]);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    /// The checksum is XXH3-64 as stored by earlier builds (which used another implementation):
    /// the same values on inputs of every length class (0, 1-3, 4-8, 9-16, 17-128, 129-240,
    /// longer, several blocks) and seeds.
    #[test]
    fn the_checksum_is_the_xxh3_of_earlier_builds() {
        let data: Vec<u8> = (0..300_000u32)
            .map(|i| (i.wrapping_mul(31) % 251) as u8)
            .collect();
        for len in [
            0, 1, 3, 4, 8, 9, 16, 17, 128, 129, 240, 241, 1_000, 1_024, 65_536, 300_000,
        ] {
            for seed in [0u64, 1, 0x706c_7863, u64::MAX] {
                assert_eq!(
                    xxh3_64_with_seed(&data[..len], seed),
                    xxhash_rust::xxh3::xxh3_64_with_seed(&data[..len], seed),
                    "{len} bytes, seed {seed:#x}"
                );
            }
        }
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct V1 {
        a: String,
        b: u32,
    }
    crate::cache_value!(V1, "test.V", 1);

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct V2 {
        a: String,
        b: u32,
    }
    crate::cache_value!(V2, "test.V", 2);

    #[test]
    fn round_trips() {
        let v = V1 {
            a: "héllo: wörld".into(),
            b: 7,
        };
        let bytes = encode("k", &v).unwrap();
        assert_eq!(decode::<V1>("k", &bytes).unwrap(), v);
        assert_eq!(verify("k", &bytes).unwrap(), V1::SCHEMA);
    }

    #[test]
    fn version_bump_is_a_schema_mismatch() {
        let bytes = encode(
            "k",
            &V1 {
                a: "x".into(),
                b: 1,
            },
        )
        .unwrap();
        assert!(matches!(
            decode::<V2>("k", &bytes),
            Err(DecodeError::SchemaMismatch { .. })
        ));
    }

    #[test]
    fn container_tags_differ_by_element() {
        assert_ne!(<Vec<u32>>::SCHEMA, <Vec<u64>>::SCHEMA);
        assert_ne!(<Vec<u32>>::SCHEMA, <Option<u32>>::SCHEMA);
        assert_ne!(<Vec<Vec<u32>>>::SCHEMA, <Vec<u32>>::SCHEMA);
        assert_eq!(<Vec<V1>>::SCHEMA, <Vec<V1>>::SCHEMA);
    }

    #[test]
    fn every_single_byte_flip_is_detected() {
        let bytes = encode(
            "k",
            &V1 {
                a: "abc".into(),
                b: 300,
            },
        )
        .unwrap();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.to_vec();
                b[i] ^= 1 << bit;
                assert!(decode::<V1>("k", &b).is_err(), "flip at byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn truncations_are_errors() {
        let bytes = encode("k", &vec![1u64, 2, 3]).unwrap();
        for n in 0..bytes.len() {
            assert!(decode::<Vec<u64>>("k", &bytes[..n]).is_err(), "prefix {n}");
        }
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        // Same checksum logic, extra payload byte: rebuild a valid envelope around it.
        let mut payload = postcard::to_allocvec(&5u32).unwrap();
        payload.push(0);
        let mut buf = Vec::new();
        buf.extend_from_slice(&MAGIC);
        buf.push(FORMAT_VERSION);
        buf.extend_from_slice(&u32::SCHEMA.0.to_le_bytes());
        buf.extend_from_slice(&xxh3_64_with_seed(&payload, seed("k", u32::SCHEMA)).to_le_bytes());
        buf.extend_from_slice(&payload);
        assert!(matches!(
            decode::<u32>("k", &buf),
            Err(DecodeError::Payload(_))
        ));
    }

    #[test]
    fn borrowed_forms_encode_like_their_owned_values() {
        let items = vec![
            V1 {
                a: "x".into(),
                b: 1,
            },
            V1 {
                a: "ÿ".into(),
                b: 2,
            },
        ];
        assert_eq!(
            encode_borrowed("k", &items[..]).unwrap(),
            encode("k", &items).unwrap()
        );
        let one = Some(V1 {
            a: "y".into(),
            b: 3,
        });
        assert_eq!(
            encode_borrowed("k", &one.as_ref()).unwrap(),
            encode("k", &one).unwrap()
        );
        assert_eq!(
            encode_borrowed("k", &None::<&V1>).unwrap(),
            encode("k", &None::<V1>).unwrap()
        );
    }

    #[test]
    fn a_value_read_under_another_key_is_a_checksum_error() {
        let bytes = encode("k3", &"value of k3".to_string()).unwrap();
        assert_eq!(decode::<String>("k35", &bytes), Err(DecodeError::Checksum));
        assert!(verify("k35", &bytes).is_err());
        assert_eq!(decode::<String>("k3", &bytes).unwrap(), "value of k3");
    }

    #[test]
    fn format_1_envelopes_are_unsupported() {
        let mut b = encode("k", &1u32).unwrap().to_vec();
        b[2] = 1;
        assert_eq!(
            decode::<u32>("k", &b),
            Err(DecodeError::UnsupportedFormat(1))
        );
    }

    #[test]
    fn foreign_bytes_are_rejected() {
        assert_eq!(decode::<u32>("k", b"hi"), Err(DecodeError::TooShort(2)));
        assert_eq!(
            decode::<u32>("k", b"\x80\x04\x95pickle-bytes-here!!!"),
            Err(DecodeError::BadMagic)
        );
        let mut b = encode("k", &1u32).unwrap().to_vec();
        b[2] = 9;
        assert_eq!(
            decode::<u32>("k", &b),
            Err(DecodeError::UnsupportedFormat(9))
        );
    }
}
