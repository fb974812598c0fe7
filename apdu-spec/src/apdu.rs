//! Command APDU encodings (ISO 7816-4, 5.1; CONFORMANCE.md "APDU parsing").
//!
//! The parser is strict on purpose: the `iso7816` crate's parser accepts `Lc = 0000` in the
//! 4E form, which a conforming card must refuse. Every byte string either parses into exactly
//! one of the seven cases or is a length error (6700); no input can make it panic.

use std::fmt;

/// The seven encodings of a command APDU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Case {
    /// No body.
    One,
    /// Le only, one byte.
    TwoShort,
    /// Lc and data, one-byte Lc.
    ThreeShort,
    /// Lc, data and a one-byte Le.
    FourShort,
    /// `00 Le1 Le2`.
    TwoExtended,
    /// `00 Lc1 Lc2 data`.
    ThreeExtended,
    /// `00 Lc1 Lc2 data Le1 Le2`.
    FourExtended,
}

impl Case {
    pub fn has_data(self) -> bool {
        matches!(
            self,
            Case::ThreeShort | Case::FourShort | Case::ThreeExtended | Case::FourExtended
        )
    }

    pub fn is_extended(self) -> bool {
        matches!(
            self,
            Case::TwoExtended | Case::ThreeExtended | Case::FourExtended
        )
    }
}

/// Why a byte string is not a command APDU. Both answer 6700.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApduError {
    #[error("shorter than the 4-byte header")]
    TooShort,
    #[error("the body length matches none of the seven case encodings")]
    BadLength,
}

/// A parsed command APDU that borrows its data from the raw bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Apdu<'a> {
    pub cla: u8,
    pub ins: u8,
    pub p1: u8,
    pub p2: u8,
    pub data: &'a [u8],
    /// Ne: the most response bytes the terminal takes (0 when Le is absent; 256 or 65536
    /// when Le is zero).
    pub ne: usize,
    pub case: Case,
}

impl<'a> Apdu<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ApduError> {
        let (header, body) = match bytes.split_first_chunk::<4>() {
            Some((header, body)) => (header, body),
            None => return Err(ApduError::TooShort),
        };
        let [cla, ins, p1, p2] = *header;
        let (data, ne, case) = parse_body(body)?;
        Ok(Apdu {
            cla,
            ins,
            p1,
            p2,
            data,
            ne,
            case,
        })
    }

    pub fn p1p2(&self) -> u16 {
        u16::from_be_bytes([self.p1, self.p2])
    }
}

fn parse_body(body: &[u8]) -> Result<(&[u8], usize, Case), ApduError> {
    let len = body.len();
    let Some(&b1) = body.first() else {
        return Ok((&[], 0, Case::One));
    };
    if len == 1 {
        return Ok((&[], zero_means(b1 as usize, 256), Case::TwoShort));
    }
    if b1 != 0 {
        let lc = b1 as usize;
        return if len == 1 + lc {
            Ok((&body[1..], 0, Case::ThreeShort))
        } else if len == 2 + lc {
            Ok((
                &body[1..1 + lc],
                zero_means(body[len - 1] as usize, 256),
                Case::FourShort,
            ))
        } else {
            Err(ApduError::BadLength)
        };
    }
    // B1 = 00 and more bytes follow: only the extended forms remain.
    if len < 3 {
        return Err(ApduError::BadLength);
    }
    let b23 = u16::from_be_bytes([body[1], body[2]]) as usize;
    if len == 3 {
        return Ok((&[], zero_means(b23, 65536), Case::TwoExtended));
    }
    let lc = b23;
    if lc == 0 {
        // Lc = 0000 is not an encoding of anything (CONFORMANCE.md).
        return Err(ApduError::BadLength);
    }
    if len == 3 + lc {
        Ok((&body[3..], 0, Case::ThreeExtended))
    } else if len == 5 + lc {
        let le = u16::from_be_bytes([body[len - 2], body[len - 1]]) as usize;
        Ok((&body[3..3 + lc], zero_means(le, 65536), Case::FourExtended))
    } else {
        Err(ApduError::BadLength)
    }
}

fn zero_means(value: usize, zero: usize) -> usize {
    if value == 0 { zero } else { value }
}

/// Encodes a command APDU. `ne` is 0 (no Le) up to 65536. The short form is used when it
/// can carry both fields, unless `extended` forces the extended form.
///
/// # Panics
/// When `data` is longer than 65535 bytes or `ne` is above 65536: those are programming
/// errors, not wire input.
pub fn encode(cla: u8, ins: u8, p1: u8, p2: u8, data: &[u8], ne: usize, extended: bool) -> Vec<u8> {
    assert!(
        data.len() <= 65535 && ne <= 65536,
        "APDU fields out of range"
    );
    let extended = extended || data.len() > 255 || ne > 256;
    let mut out = Vec::with_capacity(4 + 3 + data.len() + 2);
    out.extend_from_slice(&[cla, ins, p1, p2]);
    if extended {
        if !data.is_empty() {
            out.push(0);
            out.extend_from_slice(&(data.len() as u16).to_be_bytes());
            out.extend_from_slice(data);
        }
        if ne > 0 {
            if data.is_empty() {
                out.push(0);
            }
            out.extend_from_slice(&((ne % 65536) as u16).to_be_bytes());
        }
    } else {
        if !data.is_empty() {
            out.push(data.len() as u8);
            out.extend_from_slice(data);
        }
        if ne > 0 {
            out.push((ne % 256) as u8);
        }
    }
    out
}

/// A response APDU: data and the status word.
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    pub data: Vec<u8>,
    pub sw: u16,
}

impl Response {
    /// Splits raw response bytes. Fewer than 2 bytes is not a response.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (data, sw) = bytes.split_last_chunk::<2>()?;
        Some(Response {
            data: data.to_vec(),
            sw: u16::from_be_bytes(*sw),
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() + 2);
        out.extend_from_slice(&self.data);
        out.extend_from_slice(&self.sw.to_be_bytes());
        out
    }

    pub fn sw1(&self) -> u8 {
        (self.sw >> 8) as u8
    }

    pub fn sw2(&self) -> u8 {
        self.sw as u8
    }

    pub fn is_ok(&self) -> bool {
        self.sw == 0x9000
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:04X}", hex::encode_upper(&self.data), self.sw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(bytes: &[u8]) -> Result<(Case, usize, usize), ApduError> {
        Apdu::parse(bytes).map(|a| (a.case, a.data.len(), a.ne))
    }

    #[test]
    fn seven_cases() {
        assert_eq!(case(&[0, 1, 2, 3]), Ok((Case::One, 0, 0)));
        assert_eq!(case(&[0, 1, 2, 3, 0]), Ok((Case::TwoShort, 0, 256)));
        assert_eq!(case(&[0, 1, 2, 3, 7]), Ok((Case::TwoShort, 0, 7)));
        assert_eq!(case(&[0, 1, 2, 3, 2, 9, 9]), Ok((Case::ThreeShort, 2, 0)));
        assert_eq!(
            case(&[0, 1, 2, 3, 2, 9, 9, 0]),
            Ok((Case::FourShort, 2, 256))
        );
        assert_eq!(
            case(&[0, 1, 2, 3, 0, 0, 0]),
            Ok((Case::TwoExtended, 0, 65536))
        );
        assert_eq!(
            case(&[0, 1, 2, 3, 0, 1, 0]),
            Ok((Case::TwoExtended, 0, 256))
        );
        assert_eq!(
            case(&[0, 1, 2, 3, 0, 0, 1, 9]),
            Ok((Case::ThreeExtended, 1, 0))
        );
        assert_eq!(
            case(&[0, 1, 2, 3, 0, 0, 1, 9, 0, 0]),
            Ok((Case::FourExtended, 1, 65536))
        );
    }

    #[test]
    fn malformed_lengths() {
        for bad in [
            &[0u8, 1, 2][..],
            &[0, 1, 2, 3, 0, 5],          // 00 then one byte
            &[0, 1, 2, 3, 3, 9],          // Lc longer than data
            &[0, 1, 2, 3, 1, 9, 9, 9],    // Lc shorter than data
            &[0, 1, 2, 3, 0, 0, 0, 0, 0], // 4E with Lc = 0000
            &[0, 1, 2, 3, 0, 0, 0, 9],    // 3E with Lc = 0000
            &[0, 1, 2, 3, 0, 0, 2, 9],    // 3E with missing data
            &[0, 1, 2, 3, 0, 0, 1, 9, 0], // 4E with one Le byte (mixes forms)
        ] {
            assert!(Apdu::parse(bad).is_err(), "{}", hex::encode(bad));
        }
    }

    #[test]
    fn encode_round_trips() {
        for (data_len, ne, ext) in [
            (0, 0, false),
            (0, 256, false),
            (3, 0, false),
            (3, 5, true),
            (300, 0, false),
            (0, 65536, false),
            (255, 256, false),
            (4, 300, false),
        ] {
            let data = vec![0xAB; data_len];
            let bytes = encode(0x80, 0x10, 1, 2, &data, ne, ext);
            let apdu = Apdu::parse(&bytes).expect("round trip");
            assert_eq!((apdu.data, apdu.ne), (&data[..], ne));
            assert_eq!(apdu.case.is_extended(), ext || data_len > 255 || ne > 256);
        }
    }
}
