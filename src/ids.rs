//! Typed identifiers: a fixed prefix, `_`, and a 26-character Crockford base32 ULID.
//!
//! The reference parser is lenient (lowercase bodies, an overflowing first character): two
//! different strings could name the same id, and the LLM attestation compares job ids as
//! strings. We accept **only canonical text** (uppercase, first body character `0`-`7`), so
//! every id has exactly one spelling. Error texts are the reference's.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use ulid::Ulid;

/// Crockford base32 alphabet (no I, L, O, U), as used by canonical ULID text.
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Length of a ULID body in characters.
const BODY_LEN: usize = 26;

/// Why an id failed to parse. Display is the reference's `id parse error: {detail}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("id parse error: {detail}")]
pub struct IdParseError {
    /// The reference's detail text, e.g. ``id `x` does not start with expected prefix `mem_` ``.
    pub detail: String,
}

/// Parse the canonical body of an id with the given prefix.
fn parse_body(s: &str, prefix: &str) -> Result<Ulid, IdParseError> {
    // Canonical ids are ASCII; say so rather than blame the prefix or the length when an id
    // arrives wrapped in Unicode whitespace (NBSP, U+3000) or with look-alike characters.
    if let Some(c) = s.chars().find(|c| !c.is_ascii()) {
        return Err(IdParseError {
            detail: format!(
                "id `{}` contains the non-ASCII character {:?} (U+{:04X})",
                s.escape_debug(),
                c,
                u32::from(c)
            ),
        });
    }
    let body = s
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .ok_or_else(|| IdParseError {
            detail: format!("id `{s}` does not start with expected prefix `{prefix}_`"),
        })?;
    if body.len() != BODY_LEN {
        return Err(IdParseError {
            detail: format!("invalid ULID body in id `{s}`: invalid length"),
        });
    }
    let bytes = body.as_bytes();
    // Canonical only: uppercase Crockford symbols, and the first symbol carries just 3 bits
    // (26 * 5 = 130 > 128), so anything above `7` would silently alias another id.
    let canonical = bytes.iter().all(|b| CROCKFORD.contains(b)) && bytes[0] <= b'7';
    if !canonical {
        return Err(IdParseError {
            detail: format!("invalid ULID body in id `{s}`: invalid character"),
        });
    }
    Ulid::from_string(body).map_err(|_| IdParseError {
        detail: format!("invalid ULID body in id `{s}`: invalid character"),
    })
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Ulid);

        impl $name {
            /// The id's type prefix (without the underscore).
            pub const PREFIX: &'static str = $prefix;

            /// A new random id whose text sorts by creation time.
            pub fn new() -> Self {
                Self(Ulid::new())
            }

            /// Parse canonical text only.
            pub fn parse(s: &str) -> Result<Self, IdParseError> {
                parse_body(s, $prefix).map(Self)
            }

            /// Parse a bare id as typed or sent: surrounding ASCII whitespace is ignored, any
            /// other (NBSP, U+3000, ...) is refused like any other stray character.
            pub fn parse_bare(s: &str) -> Result<Self, IdParseError> {
                Self::parse(s.trim_ascii())
            }

            /// The underlying ULID.
            pub fn ulid(&self) -> Ulid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}_{}", $prefix, self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

typed_id!(
    /// A decay job id, `dcy_...`.
    DecayJobId,
    "dcy"
);
typed_id!(
    /// A memory id, `mem_...`.
    MemoryId,
    "mem"
);
typed_id!(
    /// An episode id, `epi_...`.
    EpisodeId,
    "epi"
);
typed_id!(
    /// A principle id, `prn_...`.
    PrincipleId,
    "prn"
);

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = "01ARZ3NDEKTSV4RRFFQ69G5FAV";

    #[test]
    fn canonical_ids_round_trip() {
        for (prefix, text) in [
            ("dcy", format!("dcy_{BODY}")),
            ("mem", format!("mem_{BODY}")),
            ("epi", format!("epi_{BODY}")),
            ("prn", format!("prn_{BODY}")),
        ] {
            let printed = match prefix {
                "dcy" => DecayJobId::parse(&text).unwrap().to_string(),
                "mem" => MemoryId::parse(&text).unwrap().to_string(),
                "epi" => EpisodeId::parse(&text).unwrap().to_string(),
                _ => PrincipleId::parse(&text).unwrap().to_string(),
            };
            assert_eq!(printed, text);
            assert_eq!(printed.len(), 30);
        }
    }

    #[test]
    fn new_ids_are_canonical_and_sortable() {
        let a = MemoryId::new().to_string();
        assert_eq!(MemoryId::parse(&a).unwrap().to_string(), a);
        assert!(a.starts_with("mem_"));
    }

    #[test]
    fn wrong_prefix_uses_reference_message() {
        let s = format!("epi_{BODY}");
        let err = MemoryId::parse(&s).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("id parse error: id `{s}` does not start with expected prefix `mem_`")
        );
        for bad in [
            format!("MEM_{BODY}"),
            format!("mem-{BODY}"),
            format!(" mem_{BODY}"),
            format!("xxx_{BODY}"),
        ] {
            assert!(
                MemoryId::parse(&bad)
                    .unwrap_err()
                    .detail
                    .contains("expected prefix")
            );
        }
        let ep = format!("ep_{BODY}");
        assert!(
            EpisodeId::parse(&ep)
                .unwrap_err()
                .detail
                .contains("expected prefix `epi_`")
        );
    }

    #[test]
    fn bad_length_and_characters() {
        let short = "mem_01ARZ3NDEKTSV4RRFFQ69G5FA";
        assert_eq!(
            MemoryId::parse(short).unwrap_err().to_string(),
            format!("id parse error: invalid ULID body in id `{short}`: invalid length")
        );
        let with_i = "mem_01ARZ3NDEKTSV4RRFFQ69G5FAI";
        assert_eq!(
            MemoryId::parse(with_i).unwrap_err().to_string(),
            format!("id parse error: invalid ULID body in id `{with_i}`: invalid character")
        );
        assert!(
            MemoryId::parse("mem_")
                .unwrap_err()
                .detail
                .ends_with("invalid length")
        );
        let evt = "evt_NOT_A_VALID_ULID";
        assert!(
            MemoryId::parse(evt)
                .unwrap_err()
                .detail
                .contains("expected prefix")
        );
    }

    #[test]
    fn lenient_forms_are_rejected() {
        // Lowercase and overflowing first character alias other ids in the reference.
        assert!(MemoryId::parse("mem_01arz3ndektsv4rrffq69g5fav").is_err());
        assert!(MemoryId::parse("mem_8ZZZZZZZZZZZZZZZZZZZZZZZZZ").is_err());
        assert!(MemoryId::parse("mem_7ZZZZZZZZZZZZZZZZZZZZZZZZZ").is_ok());
    }

    #[test]
    fn only_ascii_whitespace_may_surround_a_bare_id() {
        let id = format!("dcy_{BODY}");
        for ok in [format!(" {id}\n"), format!("\t{id}\r\n"), id.clone()] {
            assert_eq!(
                DecayJobId::parse_bare(&ok).unwrap().to_string(),
                id,
                "{ok:?}"
            );
        }
        for ws in [
            '\u{a0}', '\u{3000}', '\u{2003}', '\u{feff}', '\u{85}', '\u{2028}',
        ] {
            for bad in [
                format!("{ws}{id}"),
                format!("{id}{ws}"),
                format!(" {ws}{id} "),
            ] {
                let e = DecayJobId::parse_bare(&bad).unwrap_err();
                assert!(e.detail.contains("non-ASCII character"), "{bad:?}: {e}");
                assert!(DecayJobId::parse(&bad).is_err());
            }
        }
        // Vertical tab is not ASCII whitespace by `u8::is_ascii_whitespace`: refused too.
        assert!(DecayJobId::parse_bare(&format!("\x0b{id}")).is_err());
    }

    #[test]
    fn serde_is_plain_string() {
        let id = DecayJobId::parse(&format!("dcy_{BODY}")).unwrap();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"dcy_{BODY}\""));
        let back: DecayJobId = serde_json::from_str(&json).unwrap();
        assert_eq!(back, id);
        assert!(serde_json::from_str::<DecayJobId>("\"mem_01ARZ3NDEKTSV4RRFFQ69G5FAV\"").is_err());
    }
}
