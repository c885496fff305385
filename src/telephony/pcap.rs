//! Packet captures: classic pcap (both byte orders, µs and ns) and pcapng
//! (section, interface, enhanced/simple/obsolete packet blocks), then the
//! link, IPv4/IPv6 and UDP layers down to the datagram.
//!
//! The reader streams: a capture of any size is read block by block. Every
//! length field is checked against limits before anything is allocated.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Largest packet record accepted (pcapng blocks likewise).
pub const MAX_RECORD: usize = 256 * 1024;

/// Why a capture cannot be read further.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PcapError {
    /// Neither a pcap nor a pcapng magic number.
    #[error("not a pcap or pcapng capture (magic {0:08x})")]
    Magic(u32),
    /// The file ends inside a header or packet.
    #[error("capture truncated after {0} packets")]
    Truncated(u64),
    /// A record or block length out of range.
    #[error("corrupt capture: {0}")]
    Corrupt(String),
    /// Reading failed.
    #[error("read error: {0}")]
    Io(String),
}

/// One captured frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Capture time, ns since the epoch.
    pub ts_ns: i128,
    /// Link type (DLT) of the interface.
    pub linktype: u32,
    /// Captured bytes.
    pub data: Vec<u8>,
}

enum Format {
    Classic {
        big: bool,
        nanos: bool,
        linktype: u32,
    },
    Ng {
        big: bool,
        /// Per interface: link type and timestamp units per second.
        ifaces: Vec<(u32, u64)>,
    },
}

/// Streaming capture reader.
pub struct Reader<R: Read> {
    r: R,
    fmt: Format,
    packets: u64,
    last_ts: i128,
}

fn u16_of(b: &[u8], big: bool) -> u16 {
    let a = [b[0], b[1]];
    if big {
        u16::from_be_bytes(a)
    } else {
        u16::from_le_bytes(a)
    }
}

fn u32_of(b: &[u8], big: bool) -> u32 {
    let a = [b[0], b[1], b[2], b[3]];
    if big {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    }
}

/// Read exactly `buf.len()` bytes; Ok(false) on a clean end before any byte.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<bool, std::io::Error> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "short read",
                ))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

impl<R: Read> Reader<R> {
    /// Read the file header and detect the format.
    pub fn new(mut r: R) -> Result<Self, PcapError> {
        let mut magic = [0u8; 4];
        if !read_full(&mut r, &mut magic).map_err(|_| PcapError::Truncated(0))? {
            return Err(PcapError::Truncated(0));
        }
        let m = u32::from_le_bytes(magic);
        let classic = match m {
            0xa1b2c3d4 => Some((false, false)),
            0xd4c3b2a1 => Some((true, false)),
            0xa1b23c4d => Some((false, true)),
            0x4d3cb2a1 => Some((true, true)),
            _ => None,
        };
        if let Some((big, nanos)) = classic {
            let mut h = [0u8; 20];
            if !read_full(&mut r, &mut h).map_err(|_| PcapError::Truncated(0))? {
                return Err(PcapError::Truncated(0));
            }
            let linktype = u32_of(&h[16..20], big) & 0x0FFF_FFFF;
            return Ok(Reader {
                r,
                fmt: Format::Classic {
                    big,
                    nanos,
                    linktype,
                },
                packets: 0,
                last_ts: 0,
            });
        }
        if m == 0x0A0D0D0A {
            let mut rd = Reader {
                r,
                fmt: Format::Ng {
                    big: false,
                    ifaces: Vec::new(),
                },
                packets: 0,
                last_ts: 0,
            };
            rd.section_header()?;
            return Ok(rd);
        }
        Err(PcapError::Magic(u32::from_be_bytes(magic)))
    }

    /// Packets returned so far.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    fn truncated(&self) -> PcapError {
        PcapError::Truncated(self.packets)
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<bool, PcapError> {
        let n = self.packets;
        read_full(&mut self.r, buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => PcapError::Truncated(n),
            _ => PcapError::Io(e.to_string()),
        })
    }

    /// After the 4-byte block type of a section header block.
    fn section_header(&mut self) -> Result<(), PcapError> {
        let mut h = [0u8; 8];
        if !self.read_exact(&mut h)? {
            return Err(self.truncated());
        }
        let big = match u32::from_le_bytes([h[4], h[5], h[6], h[7]]) {
            0x1A2B3C4D => false,
            0x4D3C2B1A => true,
            _ => return Err(PcapError::Corrupt("pcapng byte-order magic".into())),
        };
        let len = u32_of(&h[0..4], big) as usize;
        if !(28..=MAX_RECORD).contains(&len) || !len.is_multiple_of(4) {
            return Err(PcapError::Corrupt(format!("section header length {len}")));
        }
        let mut rest = vec![0u8; len - 12];
        if !self.read_exact(&mut rest)? {
            return Err(self.truncated());
        }
        self.fmt = Format::Ng {
            big,
            ifaces: Vec::new(),
        };
        Ok(())
    }

    /// The next frame, or None at the end of the capture.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, PcapError> {
        match self.fmt {
            Format::Classic {
                big,
                nanos,
                linktype,
            } => {
                let mut h = [0u8; 16];
                if !self.read_exact(&mut h)? {
                    return Ok(None);
                }
                let sec = u32_of(&h[0..4], big) as i128;
                let frac = u32_of(&h[4..8], big) as i128;
                let caplen = u32_of(&h[8..12], big) as usize;
                if caplen > MAX_RECORD {
                    return Err(PcapError::Corrupt(format!(
                        "packet {} claims {caplen} bytes",
                        self.packets + 1
                    )));
                }
                let mut data = vec![0u8; caplen];
                if !self.read_exact(&mut data)? {
                    return Err(self.truncated());
                }
                self.packets += 1;
                let ts_ns = sec * 1_000_000_000 + if nanos { frac } else { frac * 1000 };
                Ok(Some(Frame {
                    ts_ns,
                    linktype,
                    data,
                }))
            }
            Format::Ng { .. } => self.next_ng(),
        }
    }

    fn next_ng(&mut self) -> Result<Option<Frame>, PcapError> {
        loop {
            let big = match &self.fmt {
                Format::Ng { big, .. } => *big,
                Format::Classic { .. } => unreachable!("pcapng reader"),
            };
            let mut h = [0u8; 8];
            if !self.read_exact(&mut h)? {
                return Ok(None);
            }
            let raw_type = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
            if raw_type == 0x0A0D0D0A {
                // A new section: its own byte order and interfaces. The
                // block length was read with the type; rewind by hand.
                let mut rest = [0u8; 4];
                if !self.read_exact(&mut rest)? {
                    return Err(self.truncated());
                }
                let magic = u32::from_le_bytes(rest);
                let big = match magic {
                    0x1A2B3C4D => false,
                    0x4D3C2B1A => true,
                    _ => return Err(PcapError::Corrupt("pcapng byte-order magic".into())),
                };
                let len = u32_of(&h[4..8], big) as usize;
                if !(28..=MAX_RECORD).contains(&len) || !len.is_multiple_of(4) {
                    return Err(PcapError::Corrupt(format!("section header length {len}")));
                }
                let mut skip = vec![0u8; len - 12];
                if !self.read_exact(&mut skip)? {
                    return Err(self.truncated());
                }
                self.fmt = Format::Ng {
                    big,
                    ifaces: Vec::new(),
                };
                continue;
            }
            let btype = u32_of(&h[0..4], big);
            let len = u32_of(&h[4..8], big) as usize;
            if !(12..=MAX_RECORD).contains(&len) || !len.is_multiple_of(4) {
                return Err(PcapError::Corrupt(format!(
                    "block type {btype:#x} length {len}"
                )));
            }
            let mut body = vec![0u8; len - 8];
            if !self.read_exact(&mut body)? {
                return Err(self.truncated());
            }
            let body = &body[..len - 12]; // trailing length copy
            let Format::Ng { ifaces, .. } = &mut self.fmt else {
                unreachable!("pcapng reader")
            };
            match btype {
                1 => {
                    // Interface description.
                    if body.len() < 8 {
                        return Err(PcapError::Corrupt("short interface block".into()));
                    }
                    let linktype = u16_of(&body[0..2], big) as u32;
                    let units = if_tsresol(&body[8..], big)?;
                    if ifaces.len() >= 1024 {
                        return Err(PcapError::Corrupt("too many interfaces".into()));
                    }
                    ifaces.push((linktype, units));
                }
                6 | 2 => {
                    // Enhanced (6) or obsolete (2) packet block.
                    if body.len() < 20 {
                        return Err(PcapError::Corrupt("short packet block".into()));
                    }
                    let iface = if btype == 6 {
                        u32_of(&body[0..4], big) as usize
                    } else {
                        u16_of(&body[0..2], big) as usize
                    };
                    let hi = u32_of(&body[4..8], big) as u64;
                    let lo = u32_of(&body[8..12], big) as u64;
                    let caplen = u32_of(&body[12..16], big) as usize;
                    if caplen > body.len() - 20 {
                        return Err(PcapError::Corrupt(format!(
                            "packet {} longer than its block",
                            self.packets + 1
                        )));
                    }
                    let &(linktype, units) = ifaces.get(iface).ok_or_else(|| {
                        PcapError::Corrupt(format!("packet on undeclared interface {iface}"))
                    })?;
                    let t = ((hi << 32) | lo) as i128;
                    let ts_ns = t * 1_000_000_000 / units as i128;
                    self.packets += 1;
                    self.last_ts = ts_ns;
                    return Ok(Some(Frame {
                        ts_ns,
                        linktype,
                        data: body[20..20 + caplen].to_vec(),
                    }));
                }
                3 => {
                    // Simple packet block: interface 0, no timestamp.
                    if body.len() < 4 {
                        return Err(PcapError::Corrupt("short simple packet block".into()));
                    }
                    let &(linktype, _) = ifaces.first().ok_or_else(|| {
                        PcapError::Corrupt("simple packet before any interface".into())
                    })?;
                    let orig = u32_of(&body[0..4], big) as usize;
                    let caplen = orig.min(body.len() - 4);
                    self.packets += 1;
                    return Ok(Some(Frame {
                        ts_ns: self.last_ts,
                        linktype,
                        data: body[4..4 + caplen].to_vec(),
                    }));
                }
                _ => {} // statistics, name resolution, custom: skipped
            }
        }
    }
}

/// Timestamp units per second from an interface block's options.
fn if_tsresol(mut opts: &[u8], big: bool) -> Result<u64, PcapError> {
    let mut units = 1_000_000u64;
    while opts.len() >= 4 {
        let code = u16_of(&opts[0..2], big);
        let len = u16_of(&opts[2..4], big) as usize;
        let padded = len.div_ceil(4) * 4;
        if opts.len() < 4 + padded {
            return Err(PcapError::Corrupt(
                "interface option overruns its block".into(),
            ));
        }
        if code == 0 {
            break;
        }
        if code == 9 && len == 1 {
            let v = opts[4];
            let exp = (v & 0x7F) as u32;
            units = if v & 0x80 != 0 {
                if exp > 63 {
                    return Err(PcapError::Corrupt("timestamp resolution".into()));
                }
                1u64 << exp
            } else {
                if exp > 18 {
                    return Err(PcapError::Corrupt("timestamp resolution".into()));
                }
                10u64.pow(exp)
            };
        }
        opts = &opts[4 + padded..];
    }
    Ok(units)
}

/// A UDP datagram found in a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram<'a> {
    /// Source address.
    pub src: SocketAddr,
    /// Destination address.
    pub dst: SocketAddr,
    /// UDP payload.
    pub payload: &'a [u8],
}

/// Why a frame carries no usable UDP datagram (counted, not fatal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// A link type this reader does not decode.
    LinkType,
    /// Not IPv4 or IPv6 (ARP, ...).
    NotIp,
    /// IP, but not UDP (TCP, ICMP, ...).
    NotUdp,
    /// An IP fragment (not reassembled).
    Fragment,
    /// Headers cut short or inconsistent.
    Malformed,
}

impl Skip {
    /// Name for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::LinkType => "unsupported link type",
            Skip::NotIp => "not IP",
            Skip::NotUdp => "not UDP",
            Skip::Fragment => "IP fragment",
            Skip::Malformed => "malformed",
        }
    }
}

/// Decode link, IP and UDP headers.
pub fn udp_of(linktype: u32, data: &[u8]) -> Result<Datagram<'_>, Skip> {
    let (ethertype, ip) = match linktype {
        // Ethernet, with any number of VLAN tags.
        1 => {
            if data.len() < 14 {
                return Err(Skip::Malformed);
            }
            let mut off = 12;
            let mut et = u16::from_be_bytes([data[off], data[off + 1]]);
            while et == 0x8100 || et == 0x88A8 {
                off += 4;
                if data.len() < off + 2 {
                    return Err(Skip::Malformed);
                }
                et = u16::from_be_bytes([data[off], data[off + 1]]);
            }
            (et, &data[off + 2..])
        }
        // BSD loopback: 4-byte address family in host order.
        0 | 108 => {
            if data.len() < 4 {
                return Err(Skip::Malformed);
            }
            let fam_le = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
            let fam_be = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
            let et = match (fam_le, fam_be) {
                (2, _) | (_, 2) => 0x0800,
                (24 | 28 | 30, _) | (_, 24 | 28 | 30) => 0x86DD,
                _ => return Err(Skip::NotIp),
            };
            (et, &data[4..])
        }
        // Raw IP.
        101 | 12 | 14 => match data.first().map(|b| b >> 4) {
            Some(4) => (0x0800, data),
            Some(6) => (0x86DD, data),
            _ => return Err(Skip::NotIp),
        },
        228 => (0x0800, data),
        229 => (0x86DD, data),
        // Linux cooked capture v1 and v2.
        113 => {
            if data.len() < 16 {
                return Err(Skip::Malformed);
            }
            (u16::from_be_bytes([data[14], data[15]]), &data[16..])
        }
        276 => {
            if data.len() < 20 {
                return Err(Skip::Malformed);
            }
            (u16::from_be_bytes([data[0], data[1]]), &data[20..])
        }
        _ => return Err(Skip::LinkType),
    };
    match ethertype {
        0x0800 => ipv4(ip),
        0x86DD => ipv6(ip),
        _ => Err(Skip::NotIp),
    }
}

fn ipv4(p: &[u8]) -> Result<Datagram<'_>, Skip> {
    if p.len() < 20 || p[0] >> 4 != 4 {
        return Err(Skip::Malformed);
    }
    let ihl = (p[0] & 0x0F) as usize * 4;
    let total = u16::from_be_bytes([p[2], p[3]]) as usize;
    if ihl < 20 || total < ihl || p.len() < ihl {
        return Err(Skip::Malformed);
    }
    // Capture may pad (Ethernet minimum) or truncate (snaplen).
    let p = &p[..total.min(p.len())];
    let flags_frag = u16::from_be_bytes([p[6], p[7]]);
    if flags_frag & 0x3FFF != 0 {
        return Err(Skip::Fragment);
    }
    if p[9] != 17 {
        return Err(Skip::NotUdp);
    }
    let src = IpAddr::V4(Ipv4Addr::new(p[12], p[13], p[14], p[15]));
    let dst = IpAddr::V4(Ipv4Addr::new(p[16], p[17], p[18], p[19]));
    udp(src, dst, &p[ihl..])
}

fn ipv6(p: &[u8]) -> Result<Datagram<'_>, Skip> {
    if p.len() < 40 || p[0] >> 4 != 6 {
        return Err(Skip::Malformed);
    }
    let plen = u16::from_be_bytes([p[4], p[5]]) as usize;
    let mut next = p[6];
    let src = IpAddr::V6(Ipv6Addr::from(
        <[u8; 16]>::try_from(&p[8..24]).expect("16 bytes"),
    ));
    let dst = IpAddr::V6(Ipv6Addr::from(
        <[u8; 16]>::try_from(&p[24..40]).expect("16 bytes"),
    ));
    let mut rest = &p[40..(40 + plen).min(p.len())];
    // Hop-by-hop, routing and destination options are skipped.
    for _ in 0..8 {
        match next {
            17 => return udp(src, dst, rest),
            0 | 43 | 60 => {
                if rest.len() < 8 {
                    return Err(Skip::Malformed);
                }
                let len = (rest[1] as usize + 1) * 8;
                if rest.len() < len {
                    return Err(Skip::Malformed);
                }
                next = rest[0];
                rest = &rest[len..];
            }
            44 => return Err(Skip::Fragment),
            _ => return Err(Skip::NotUdp),
        }
    }
    Err(Skip::Malformed)
}

fn udp(src: IpAddr, dst: IpAddr, p: &[u8]) -> Result<Datagram<'_>, Skip> {
    if p.len() < 8 {
        return Err(Skip::Malformed);
    }
    let sport = u16::from_be_bytes([p[0], p[1]]);
    let dport = u16::from_be_bytes([p[2], p[3]]);
    let len = u16::from_be_bytes([p[4], p[5]]) as usize;
    if len < 8 || len > p.len() {
        // Truncated by the snap length: the datagram is not whole.
        return Err(Skip::Malformed);
    }
    Ok(Datagram {
        src: SocketAddr::new(src, sport),
        dst: SocketAddr::new(dst, dport),
        payload: &p[8..len],
    })
}

/// Writes a classic little-endian pcap (µs timestamps, Ethernet) of UDP
/// datagrams over IPv4: used to make test captures from audio.
pub struct Writer<W: std::io::Write> {
    w: W,
    ip_id: u16,
}

impl<W: std::io::Write> Writer<W> {
    /// Write the file header.
    pub fn new(mut w: W) -> std::io::Result<Self> {
        w.write_all(&0xa1b2c3d4u32.to_le_bytes())?;
        w.write_all(&2u16.to_le_bytes())?;
        w.write_all(&4u16.to_le_bytes())?;
        w.write_all(&0i32.to_le_bytes())?;
        w.write_all(&0u32.to_le_bytes())?;
        w.write_all(&65535u32.to_le_bytes())?;
        w.write_all(&1u32.to_le_bytes())?;
        Ok(Writer { w, ip_id: 0 })
    }

    /// Append one IPv4/UDP datagram captured at `ts_us` (µs since the epoch).
    pub fn udp(
        &mut self,
        ts_us: u64,
        src: std::net::SocketAddrV4,
        dst: std::net::SocketAddrV4,
        payload: &[u8],
    ) -> std::io::Result<()> {
        let udp_len = 8 + payload.len();
        let ip_len = 20 + udp_len;
        let mut f = Vec::with_capacity(14 + ip_len);
        f.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1, 0x08, 0x00]);
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&self.ip_id.to_be_bytes());
        self.ip_id = self.ip_id.wrapping_add(1);
        ip[8] = 64;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&src.ip().octets());
        ip[16..20].copy_from_slice(&dst.ip().octets());
        let mut sum = 0u32;
        for c in ip.chunks(2) {
            sum += u16::from_be_bytes([c[0], c[1]]) as u32;
        }
        while sum > 0xFFFF {
            sum = (sum & 0xFFFF) + (sum >> 16);
        }
        ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&src.port().to_be_bytes());
        f.extend_from_slice(&dst.port().to_be_bytes());
        f.extend_from_slice(&(udp_len as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]); // no UDP checksum (allowed over IPv4)
        f.extend_from_slice(payload);
        self.w
            .write_all(&((ts_us / 1_000_000) as u32).to_le_bytes())?;
        self.w
            .write_all(&((ts_us % 1_000_000) as u32).to_le_bytes())?;
        self.w.write_all(&(f.len() as u32).to_le_bytes())?;
        self.w.write_all(&(f.len() as u32).to_le_bytes())?;
        self.w.write_all(&f)
    }

    /// Flush and return the inner writer.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.w.flush()?;
        Ok(self.w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddrV4;

    fn sample_pcap() -> Vec<u8> {
        let mut w = Writer::new(Vec::new()).unwrap();
        let a: SocketAddrV4 = "127.0.0.1:7000".parse().unwrap();
        let b: SocketAddrV4 = "127.0.0.2:6000".parse().unwrap();
        w.udp(1_700_000_000_123_456, a, b, b"hello").unwrap();
        w.udp(1_700_000_000_143_456, b, a, b"world!").unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn classic_round_trip() {
        let bytes = sample_pcap();
        let mut r = Reader::new(&bytes[..]).unwrap();
        let f = r.next_frame().unwrap().unwrap();
        assert_eq!(f.ts_ns, 1_700_000_000_123_456_000);
        let d = udp_of(f.linktype, &f.data).unwrap();
        assert_eq!(d.src.to_string(), "127.0.0.1:7000");
        assert_eq!(d.dst.to_string(), "127.0.0.2:6000");
        assert_eq!(d.payload, b"hello");
        let f = r.next_frame().unwrap().unwrap();
        assert_eq!(udp_of(f.linktype, &f.data).unwrap().payload, b"world!");
        assert_eq!(r.next_frame().unwrap(), None);
    }

    #[test]
    fn truncated_capture_keeps_good_packets() {
        let bytes = sample_pcap();
        let cut = &bytes[..bytes.len() - 3];
        let mut r = Reader::new(cut).unwrap();
        assert!(r.next_frame().unwrap().is_some());
        assert_eq!(r.next_frame(), Err(PcapError::Truncated(1)));
    }

    /// Convert the classic capture to pcapng (big-endian, ns resolution).
    fn to_pcapng(classic: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let block = |out: &mut Vec<u8>, ty: u32, body: &[u8]| {
            let len = 12 + body.len().div_ceil(4) * 4;
            out.extend_from_slice(&ty.to_be_bytes());
            out.extend_from_slice(&(len as u32).to_be_bytes());
            out.extend_from_slice(body);
            out.resize(out.len() + (len - 12 - body.len()), 0);
            out.extend_from_slice(&(len as u32).to_be_bytes());
        };
        let mut shb = Vec::new();
        shb.extend_from_slice(&0x1A2B3C4Du32.to_be_bytes());
        shb.extend_from_slice(&[0, 1, 0, 0]);
        shb.extend_from_slice(&(-1i64).to_be_bytes());
        block(&mut out, 0x0A0D0D0A, &shb);
        let mut idb = vec![0, 1, 0, 0, 0, 0, 0xFF, 0xFF];
        idb.extend_from_slice(&[0, 9, 0, 1, 9, 0, 0, 0, 0, 0, 0, 0]); // tsresol 1e-9
        block(&mut out, 1, &idb);
        block(&mut out, 5, &[0u8; 8]); // statistics block: skipped
        let mut r = Reader::new(classic).unwrap();
        while let Some(f) = r.next_frame().unwrap() {
            let mut epb = vec![0u8; 4];
            let t = f.ts_ns as u64;
            epb.extend_from_slice(&((t >> 32) as u32).to_be_bytes());
            epb.extend_from_slice(&(t as u32).to_be_bytes());
            epb.extend_from_slice(&(f.data.len() as u32).to_be_bytes());
            epb.extend_from_slice(&(f.data.len() as u32).to_be_bytes());
            epb.extend_from_slice(&f.data);
            block(&mut out, 6, &epb);
        }
        out
    }

    #[test]
    fn pcapng_big_endian_nanoseconds() {
        let ng = to_pcapng(&sample_pcap());
        let mut r = Reader::new(&ng[..]).unwrap();
        let f = r.next_frame().unwrap().unwrap();
        assert_eq!(f.ts_ns, 1_700_000_000_123_456_000);
        assert_eq!(udp_of(f.linktype, &f.data).unwrap().payload, b"hello");
        assert!(r.next_frame().unwrap().is_some());
        assert_eq!(r.next_frame().unwrap(), None);
    }

    #[test]
    fn rejects_bad_headers() {
        assert!(matches!(
            Reader::new(&b"RIFF0000WAVE"[..]),
            Err(PcapError::Magic(_))
        ));
        assert!(matches!(
            Reader::new(&b"\xd4\xc3"[..]),
            Err(PcapError::Truncated(0))
        ));
        let mut bytes = sample_pcap();
        bytes[24 + 8..24 + 12].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut r = Reader::new(&bytes[..]).unwrap();
        assert!(matches!(r.next_frame(), Err(PcapError::Corrupt(_))));
    }

    #[test]
    fn link_layers_and_skips() {
        let bytes = sample_pcap();
        let mut r = Reader::new(&bytes[..]).unwrap();
        let f = r.next_frame().unwrap().unwrap();
        let ip = &f.data[14..];
        // Raw IP and Linux cooked capture reach the same datagram.
        assert_eq!(udp_of(101, ip).unwrap().payload, b"hello");
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&[0x08, 0x00]);
        sll.extend_from_slice(ip);
        assert_eq!(udp_of(113, &sll).unwrap().payload, b"hello");
        // A fragment, TCP, ARP, and a cut header.
        let mut frag = ip.to_vec();
        frag[6] = 0x20;
        assert_eq!(udp_of(101, &frag), Err(Skip::Fragment));
        let mut tcp = ip.to_vec();
        tcp[9] = 6;
        assert_eq!(udp_of(101, &tcp), Err(Skip::NotUdp));
        let mut arp = f.data.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(udp_of(1, &arp), Err(Skip::NotIp));
        assert_eq!(udp_of(1, &f.data[..20]), Err(Skip::Malformed));
        assert_eq!(udp_of(147, &f.data), Err(Skip::LinkType));
    }
}
