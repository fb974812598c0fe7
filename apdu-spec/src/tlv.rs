//! BER-TLV bodies (ISO 7816-4, 5.2), on top of the `iso7816-tlv` crate.

pub use iso7816_tlv::ber::{Tag, Tlv, Value};

/// Why a body is not the TLV it should be.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TlvError {
    #[error("malformed BER-TLV")]
    Malformed,
    #[error("missing tag {0:X}")]
    Missing(u16),
    #[error("tag {0:X} has the wrong length")]
    Length(u16),
}

fn tag(t: u16) -> Tag {
    // Every tag this crate names is a valid BER tag; the table tests prove it.
    Tag::try_from(t).unwrap_or_else(|_| panic!("invalid BER tag {t:X} in apdu-spec"))
}

/// A primitive data object.
pub fn primitive(t: u16, value: impl Into<Vec<u8>>) -> Tlv {
    Tlv::new(tag(t), Value::Primitive(value.into()))
        .unwrap_or_else(|_| panic!("tag {t:X} is constructed, not primitive"))
}

/// A constructed data object.
pub fn constructed(t: u16, children: Vec<Tlv>) -> Tlv {
    Tlv::new(tag(t), Value::Constructed(children))
        .unwrap_or_else(|_| panic!("tag {t:X} is primitive, not constructed"))
}

/// Concatenated encodings of several objects.
pub fn encode_all(objects: &[Tlv]) -> Vec<u8> {
    objects.iter().flat_map(Tlv::to_vec).collect()
}

/// Parses a body that must consist of whole TLV objects and nothing else.
pub fn parse_all(mut bytes: &[u8]) -> Result<Vec<Tlv>, TlvError> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (tlv, rest) = Tlv::parse(bytes);
        out.push(tlv.map_err(|_| TlvError::Malformed)?);
        bytes = rest;
    }
    Ok(out)
}

/// The tag of an object as a number.
pub fn tag_number(tlv: &Tlv) -> u16 {
    let n: u64 = tlv.tag().clone().into();
    n as u16
}

/// The value of the first primitive object with this tag among `objects`.
pub fn find(objects: &[Tlv], t: u16) -> Option<&[u8]> {
    objects
        .iter()
        .find(|o| tag_number(o) == t)
        .and_then(|o| match o.value() {
            Value::Primitive(v) => Some(v.as_slice()),
            Value::Constructed(_) => None,
        })
}

/// The children of the first constructed object with this tag among `objects`.
pub fn find_constructed(objects: &[Tlv], t: u16) -> Option<&[Tlv]> {
    objects
        .iter()
        .find(|o| tag_number(o) == t)
        .and_then(|o| match o.value() {
            Value::Constructed(v) => Some(v.as_slice()),
            Value::Primitive(_) => None,
        })
}

/// Like [`find`], but the object must be there.
pub fn require(objects: &[Tlv], t: u16) -> Result<&[u8], TlvError> {
    find(objects, t).ok_or(TlvError::Missing(t))
}

/// Like [`require`], with a fixed length.
pub fn require_array<const N: usize>(objects: &[Tlv], t: u16) -> Result<[u8; N], TlvError> {
    require(objects, t)?
        .try_into()
        .map_err(|_| TlvError::Length(t))
}

/// Like [`require_array`], but the object may be absent.
pub fn find_array<const N: usize>(objects: &[Tlv], t: u16) -> Result<Option<[u8; N]>, TlvError> {
    find(objects, t)
        .map(|v| v.try_into().map_err(|_| TlvError::Length(t)))
        .transpose()
}

/// The object at a path of tags (outermost first), e.g. `[0x6F, 0x84]`, among `objects`.
pub fn at_path<'a>(objects: &'a [Tlv], path: &[u16]) -> Option<&'a Tlv> {
    let (last, parents) = path.split_last()?;
    let mut level = objects;
    for t in parents {
        match level.iter().find(|o| tag_number(o) == *t)?.value() {
            Value::Constructed(children) => level = children,
            Value::Primitive(_) => return None,
        }
    }
    level.iter().find(|o| tag_number(o) == *last)
}

/// Whether a path of tags (outermost first) exists in `bytes`, e.g. `[0x6F, 0x84]`.
pub fn has_path(bytes: &[u8], path: &[u16]) -> bool {
    parse_all(bytes).is_ok_and(|top| at_path(&top, path).is_some())
}

/// The value bytes at a path of tags: a primitive's value, or a constructed object's encoding
/// of its children.
pub fn value_at(bytes: &[u8], path: &[u16]) -> Option<Vec<u8>> {
    let top = parse_all(bytes).ok()?;
    Some(match at_path(&top, path)?.value() {
        Value::Primitive(v) => v.clone(),
        Value::Constructed(children) => encode_all(children),
    })
}

/// One object as it is encoded, and the bytes after it.
struct RawObject<'a> {
    tag: u16,
    /// All of its bytes: tag, length and value.
    whole: &'a [u8],
    /// Its value's bytes, when it is constructed.
    children: Option<&'a [u8]>,
    rest: &'a [u8],
}

/// The first object of `bytes`, split as it is encoded.
fn split_first(bytes: &[u8]) -> Option<RawObject<'_>> {
    let (tlv, rest) = Tlv::parse(bytes);
    let tlv = tlv.ok()?;
    let whole = &bytes[..bytes.len() - rest.len()];
    // The header as it was sent: the tag's bytes (more follow while b8 is set, after a
    // first byte whose b5-b1 are all set), then the length's (81 xx, 82 xx xx, ...).
    let mut header = 1;
    if whole.first()? & 0x1F == 0x1F {
        while whole.get(header)? & 0x80 != 0 {
            header += 1;
        }
        header += 1;
    }
    let length = *whole.get(header)?;
    header += 1 + if length & 0x80 != 0 {
        usize::from(length & 0x7F)
    } else {
        0
    };
    let children = match tlv.value() {
        Value::Constructed(_) => Some(whole.get(header..)?),
        Value::Primitive(_) => None,
    };
    Some(RawObject {
        tag: tag_number(&tlv),
        whole,
        children,
        rest,
    })
}

/// The object at a path of tags (outermost first), tag and length included, exactly as its
/// bytes stand in `bytes`: nothing is decoded and encoded again, so a signature over the
/// object as it travelled verifies over these bytes.
pub fn object_at<'a>(bytes: &'a [u8], path: &[u16]) -> Option<&'a [u8]> {
    let (last, parents) = path.split_last()?;
    let mut level = bytes;
    for t in parents {
        level = find_raw(level, *t)?.children?;
    }
    find_raw(level, *last).map(|o| o.whole)
}

/// The first object with tag `t` in a run of encoded objects.
fn find_raw(mut bytes: &[u8], t: u16) -> Option<RawObject<'_>> {
    while !bytes.is_empty() {
        let object = split_first(bytes)?;
        if object.tag == t {
            return Some(object);
        }
        bytes = object.rest;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_paths() {
        let fci = constructed(
            0x6F,
            vec![
                primitive(0x84, vec![1, 2]),
                constructed(0xA5, vec![primitive(0xC4, vec![3])]),
            ],
        );
        let bytes = fci.to_vec();
        assert_eq!(hex::encode_upper(&bytes), "6F0984020102A503C40103");
        assert!(has_path(&bytes, &[0x6F, 0xA5, 0xC4]));
        assert!(!has_path(&bytes, &[0x6F, 0xC4]));
        assert_eq!(value_at(&bytes, &[0x6F, 0x84]), Some(vec![1, 2]));
        assert!(parse_all(&bytes[..bytes.len() - 1]).is_err());
        assert_eq!(primitive(0x5F37, vec![]).to_vec(), vec![0x5F, 0x37, 0]);
    }

    #[test]
    fn objects_as_they_were_sent() {
        let inner = constructed(0xE7, vec![primitive(0x86, vec![0, 0, 0, 1])]);
        let bytes = constructed(
            0xEC,
            vec![
                primitive(0x5F37, vec![9]),
                inner.clone(),
                primitive(0x9E, vec![7; 200]),
            ],
        )
        .to_vec();
        assert_eq!(object_at(&bytes, &[0xEC, 0xE7]), Some(&inner.to_vec()[..]));
        assert_eq!(
            object_at(&bytes, &[0xEC, 0x5F37]),
            Some(&[0x5F, 0x37, 1, 9][..])
        );
        assert_eq!(object_at(&bytes, &[0xEC]), Some(&bytes[..]));
        assert_eq!(
            object_at(&bytes, &[0xEC, 0xE7, 0x86]),
            Some(&[0x86, 4, 0, 0, 0, 1][..])
        );
        assert_eq!(object_at(&bytes, &[0xEC, 0x9E]).map(<[u8]>::len), Some(203));
        assert_eq!(
            object_at(&bytes, &[0xEC, 0x9E, 0x01]),
            None,
            "9E is primitive"
        );
        assert_eq!(object_at(&bytes, &[0xED]), None);
        // A long form the encoder would not have chosen stays as it was sent.
        let long = [0xE7, 0x81, 0x03, 0x86, 0x01, 0x05];
        assert_eq!(object_at(&long, &[0xE7]), Some(&long[..]));
        assert_eq!(object_at(&long, &[0xE7, 0x86]), Some(&long[3..]));
        assert_eq!(object_at(&long[..5], &[0xE7]), None, "truncated");
    }
}
