//! RTP (RFC 3550) packets: parsing, building, and telling RTP from RTCP.

/// A parsed RTP packet, borrowing its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    /// Marker bit.
    pub marker: bool,
    /// Payload type (0 = PCMU, 8 = PCMA).
    pub payload_type: u8,
    /// Sequence number.
    pub seq: u16,
    /// Media timestamp (8 kHz units for G.711).
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
    /// Payload, without padding.
    pub payload: &'a [u8],
}

/// Why bytes are not an RTP packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    /// Fewer bytes than the fixed header and its declared parts.
    #[error("RTP packet too short ({0} bytes)")]
    TooShort(usize),
    /// Version field is not 2.
    #[error("not RTP version 2 (version {0})")]
    Version(u8),
    /// The padding count is zero or larger than the payload.
    #[error("bad RTP padding")]
    Padding,
    /// A payload type in the RTCP range (RFC 5761).
    #[error("RTCP packet (type {0}), not RTP")]
    Rtcp(u8),
}

/// Fixed header size.
pub const HEADER: usize = 12;

/// Parse an RTP packet.
pub fn parse(buf: &[u8]) -> Result<RtpPacket<'_>, RtpError> {
    if buf.len() < HEADER {
        return Err(RtpError::TooShort(buf.len()));
    }
    let version = buf[0] >> 6;
    if version != 2 {
        return Err(RtpError::Version(version));
    }
    if (192..=223).contains(&buf[1]) {
        return Err(RtpError::Rtcp(buf[1]));
    }
    let padding = buf[0] & 0x20 != 0;
    let extension = buf[0] & 0x10 != 0;
    let csrc = (buf[0] & 0x0F) as usize;
    let mut off = HEADER + 4 * csrc;
    if buf.len() < off {
        return Err(RtpError::TooShort(buf.len()));
    }
    if extension {
        if buf.len() < off + 4 {
            return Err(RtpError::TooShort(buf.len()));
        }
        let words = u16::from_be_bytes([buf[off + 2], buf[off + 3]]) as usize;
        off += 4 + 4 * words;
        if buf.len() < off {
            return Err(RtpError::TooShort(buf.len()));
        }
    }
    let mut end = buf.len();
    if padding {
        let pad = buf[end - 1] as usize;
        if pad == 0 || pad > end - off {
            return Err(RtpError::Padding);
        }
        end -= pad;
    }
    Ok(RtpPacket {
        marker: buf[1] & 0x80 != 0,
        payload_type: buf[1] & 0x7F,
        seq: u16::from_be_bytes([buf[2], buf[3]]),
        timestamp: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
        ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
        payload: &buf[off..end],
    })
}

/// Build a plain RTP packet (no CSRC, extension or padding).
pub fn build(pkt: &RtpPacket<'_>) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER + pkt.payload.len());
    v.push(0x80);
    v.push((pkt.payload_type & 0x7F) | if pkt.marker { 0x80 } else { 0 });
    v.extend_from_slice(&pkt.seq.to_be_bytes());
    v.extend_from_slice(&pkt.timestamp.to_be_bytes());
    v.extend_from_slice(&pkt.ssrc.to_be_bytes());
    v.extend_from_slice(pkt.payload);
    v
}

/// The G.711 codec of a static payload type.
pub fn g711_codec(payload_type: u8) -> Option<crate::audio::g711::Encoding> {
    use crate::audio::g711::Encoding;
    match payload_type {
        0 => Some(Encoding::Mulaw),
        8 => Some(Encoding::Alaw),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let payload = [0xFFu8; 160];
        let p = RtpPacket {
            marker: true,
            payload_type: 8,
            seq: 65535,
            timestamp: 0xDEADBEEF,
            ssrc: 0x01020304,
            payload: &payload,
        };
        let bytes = build(&p);
        assert_eq!(bytes.len(), 172);
        assert_eq!(parse(&bytes).unwrap(), p);
    }

    #[test]
    fn csrc_extension_and_padding() {
        let mut b = vec![0x80 | 0x20 | 0x10 | 0x01, 0, 0, 1, 0, 0, 0, 160, 0, 0, 0, 7];
        b.extend_from_slice(&[9, 9, 9, 9]); // one CSRC
        b.extend_from_slice(&[0xBE, 0xDE, 0, 1, 1, 2, 3, 4]); // extension, one word
        b.extend_from_slice(&[5, 6, 7]);
        b.extend_from_slice(&[0, 0, 3]); // 3 bytes of padding
        let p = parse(&b).unwrap();
        assert_eq!(p.payload, &[5, 6, 7]);
        assert_eq!(p.ssrc, 7);
        assert_eq!(p.timestamp, 160);
    }

    #[test]
    fn rejects() {
        assert_eq!(parse(&[0x80; 5]), Err(RtpError::TooShort(5)));
        let mut b = vec![0x40; 12];
        assert_eq!(parse(&b), Err(RtpError::Version(1)));
        b[0] = 0x80;
        b[1] = 200;
        assert_eq!(parse(&b), Err(RtpError::Rtcp(200)));
        // CSRC count beyond the packet.
        let b = [0x8F, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(parse(&b), Err(RtpError::TooShort(12)));
        // Padding longer than the payload.
        let b = [0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 50];
        assert_eq!(parse(&b), Err(RtpError::Padding));
        // Extension header cut short.
        let b = [0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xBE, 0xDE, 0, 9];
        assert_eq!(parse(&b), Err(RtpError::TooShort(16)));
    }
}
