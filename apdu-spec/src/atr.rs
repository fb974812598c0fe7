//! Reading an answer to reset (ISO 7816-3, 8.2): where the historical bytes are, whether TCK
//! is right, and what the card says it can do (ISO 7816-4, 8.1.1.2.7 card capabilities).

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Atr {
    /// Protocols named by TD bytes (T=0 when none is named).
    pub protocols: Vec<u8>,
    pub historical: Vec<u8>,
    /// TCK, when present (it must be whenever a protocol other than T=0 is named).
    pub tck: Option<u8>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub chaining: bool,
    pub extended_length: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AtrError {
    #[error("the ATR is truncated")]
    Truncated,
    #[error("TS is neither 3B nor 3F")]
    BadTs,
    #[error("TCK is wrong: the XOR of T0 to TCK is {0:02X}, not 00")]
    BadChecksum(u8),
    #[error("TCK is missing although a protocol other than T=0 is named")]
    MissingChecksum,
    #[error("bytes after TCK")]
    TrailingBytes,
}

impl Atr {
    pub fn parse(bytes: &[u8]) -> Result<Self, AtrError> {
        let ts = *bytes.first().ok_or(AtrError::Truncated)?;
        if ts != 0x3B && ts != 0x3F {
            return Err(AtrError::BadTs);
        }
        let t0 = *bytes.get(1).ok_or(AtrError::Truncated)?;
        let historical_len = (t0 & 0x0F) as usize;
        let mut y = t0 >> 4;
        let mut pos = 2;
        let mut protocols = Vec::new();
        loop {
            // TA, TB, TC present per bits 5..7 of Y; TD per bit 8.
            pos += (y & 0x7).count_ones() as usize;
            if y & 0x8 == 0 {
                break;
            }
            let td = *bytes.get(pos).ok_or(AtrError::Truncated)?;
            pos += 1;
            protocols.push(td & 0x0F);
            y = td >> 4;
        }
        let historical = bytes
            .get(pos..pos + historical_len)
            .ok_or(AtrError::Truncated)?
            .to_vec();
        pos += historical_len;
        let needs_tck = protocols.iter().any(|&p| p != 0);
        let tck = if needs_tck {
            let tck = *bytes.get(pos).ok_or(AtrError::MissingChecksum)?;
            let xor = bytes[1..=pos].iter().fold(0u8, |a, b| a ^ b);
            if xor != 0 {
                return Err(AtrError::BadChecksum(xor));
            }
            pos += 1;
            Some(tck)
        } else {
            None
        };
        if pos != bytes.len() {
            return Err(AtrError::TrailingBytes);
        }
        if protocols.is_empty() {
            protocols.push(0);
        }
        Ok(Atr {
            protocols,
            historical,
            tck,
        })
    }

    /// Card capabilities from the historical bytes (category 80, compact TLV tag 7, third
    /// byte: b8 command chaining, b7 extended Lc and Le).
    pub fn capabilities(&self) -> Capabilities {
        let Some((&0x80, mut rest)) = self.historical.split_first() else {
            return Capabilities::default();
        };
        while let Some((&head, tail)) = rest.split_first() {
            let len = (head & 0x0F) as usize;
            let Some(value) = tail.get(..len) else { break };
            if head >> 4 == 7 && len >= 3 {
                return Capabilities {
                    chaining: value[2] & 0x80 != 0,
                    extended_length: value[2] & 0x40 != 0,
                };
            }
            rest = &tail[len..];
        }
        Capabilities::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_atr_is_valid_and_advertises_what_the_card_does() {
        let atr = Atr::parse(crate::ATR).expect("valid ATR");
        assert_eq!(atr.protocols, vec![1]);
        assert_eq!(atr.historical, vec![0x80, 0x73, 0x80, 0x01, 0xC0]);
        assert_eq!(
            atr.capabilities(),
            Capabilities {
                chaining: true,
                extended_length: true
            }
        );
        let mut bad = crate::ATR.to_vec();
        bad[8] ^= 1;
        assert_eq!(Atr::parse(&bad), Err(AtrError::BadChecksum(1)));
    }

    #[test]
    fn t0_atr_without_tck() {
        let atr = Atr::parse(&[0x3B, 0x02, 0x14, 0x50]).expect("valid");
        assert_eq!(
            (atr.protocols, atr.historical, atr.tck),
            (vec![0], vec![0x14, 0x50], None)
        );
        assert_eq!(atr_caps(&[0x3B, 0x02, 0x14, 0x50]), Capabilities::default());
    }

    fn atr_caps(b: &[u8]) -> Capabilities {
        Atr::parse(b).map(|a| a.capabilities()).unwrap_or_default()
    }
}
