//! pcap and pcapng files: a reader for replay and a writer for capture, and a [`PcapPort`] that
//! joins them.
//!
//! The reader takes classic pcap (either byte order, microsecond or nanosecond timestamps) and
//! pcapng (Section Header, Interface Description, Enhanced and Simple Packet blocks; other
//! blocks are skipped). Link types: Ethernet (1) as is, and Linux cooked capture v1 (113),
//! whose 16-byte header is replaced by an Ethernet header addressed to the port so that the
//! rest of the pipeline sees ordinary frames. The writer emits classic pcap, Ethernet, with
//! microsecond timestamps.
//!
//! Records are read straight into packet buffers; a record larger than [`MAX_RECORD`] is taken
//! as a corrupt file and ends the replay with an error, never an unbounded allocation.

use super::Port;
use crate::pipeline::batch::{Batch, Buf};
use crate::pipeline::drop::DropReason;
use crate::stats::PortStats;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

/// The largest record or block accepted before a file is considered corrupt.
pub const MAX_RECORD: usize = 256 * 1024;
/// DLT_EN10MB.
pub const LINKTYPE_ETHERNET: u16 = 1;
/// DLT_LINUX_SLL.
pub const LINKTYPE_LINUX_SLL: u16 = 113;
const SLL_LEN: usize = 16;

/// Why a capture file could not be read.
#[derive(Debug)]
pub enum PcapError {
    /// I/O failure.
    Io(io::Error),
    /// Not a pcap or pcapng file.
    BadMagic(u32),
    /// A link type other than Ethernet or Linux SLL.
    UnsupportedLinkType(u16),
    /// A record or block whose length is impossible.
    Corrupt(&'static str),
}

impl std::fmt::Display for PcapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PcapError::Io(e) => write!(f, "{e}"),
            PcapError::BadMagic(m) => write!(f, "not a pcap or pcapng file (magic {m:#010x})"),
            PcapError::UnsupportedLinkType(l) => {
                write!(
                    f,
                    "link type {l} is not supported (Ethernet and Linux SLL are)"
                )
            }
            PcapError::Corrupt(what) => write!(f, "corrupt capture: {what}"),
        }
    }
}

impl std::error::Error for PcapError {}

impl From<io::Error> for PcapError {
    fn from(e: io::Error) -> Self {
        PcapError::Io(e)
    }
}

enum Format {
    Pcap { nanos: bool, link: u16 },
    PcapNg { links: Vec<u16> },
}

/// What one read produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Record {
    /// A frame was written into the buffer.
    Frame,
    /// A frame too large for a buffer was skipped.
    Oversize,
    /// End of file.
    End,
}

/// Reads frames from a pcap or pcapng file.
pub struct PcapReader {
    r: BufReader<File>,
    big_endian: bool,
    format: Format,
    dst_mac: [u8; 6],
}

fn u16_of(b: [u8; 2], be: bool) -> u16 {
    if be {
        u16::from_be_bytes(b)
    } else {
        u16::from_le_bytes(b)
    }
}

fn u32_of(b: &[u8], be: bool) -> u32 {
    let a = [b[0], b[1], b[2], b[3]];
    if be {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    }
}

impl PcapReader {
    /// Opens a file. `dst_mac` addresses frames synthesised from Linux SLL records.
    ///
    /// # Errors
    /// [`PcapError`] for an unreadable file, an unknown format or link type.
    pub fn open(path: &Path, dst_mac: [u8; 6]) -> Result<Self, PcapError> {
        let mut r = BufReader::new(File::open(path)?);
        let mut magic = [0u8; 4];
        r.read_exact(&mut magic)?;
        let m = u32::from_le_bytes(magic);
        let (big_endian, format) = match m {
            0xa1b2_c3d4 | 0xa1b2_3c4d | 0xd4c3_b2a1 | 0x4d3c_b2a1 => {
                let be = matches!(m, 0xd4c3_b2a1 | 0x4d3c_b2a1);
                let nanos = matches!(m, 0xa1b2_3c4d | 0x4d3c_b2a1);
                let mut hdr = [0u8; 20];
                r.read_exact(&mut hdr)?;
                let link = (u32_of(&hdr[16..20], be) & 0xffff) as u16;
                (be, Format::Pcap { nanos, link })
            }
            0x0a0d_0d0a => {
                // Section Header Block: length, then the byte-order magic.
                let mut hdr = [0u8; 8];
                r.read_exact(&mut hdr)?;
                let be = match u32::from_le_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]) {
                    0x1a2b_3c4d => false,
                    0x4d3c_2b1a => true,
                    _ => return Err(PcapError::Corrupt("pcapng byte-order magic")),
                };
                let len = u32_of(&hdr[0..4], be) as usize;
                if !(28..=MAX_RECORD).contains(&len) {
                    return Err(PcapError::Corrupt("pcapng section header length"));
                }
                skip(&mut r, len - 12)?;
                (be, Format::PcapNg { links: Vec::new() })
            }
            _ => return Err(PcapError::BadMagic(m)),
        };
        if let Format::Pcap { link, .. } = format {
            check_link(link)?;
        }
        Ok(PcapReader {
            r,
            big_endian,
            format,
            dst_mac,
        })
    }

    /// Reads the next frame into `buf`.
    ///
    /// # Errors
    /// [`PcapError`] for I/O errors and corrupt records.
    pub fn next_into(&mut self, buf: &mut Buf) -> Result<Record, PcapError> {
        let be = self.big_endian;
        match &mut self.format {
            Format::Pcap { nanos, link } => {
                let mut hdr = [0u8; 16];
                if !read_or_eof(&mut self.r, &mut hdr)? {
                    return Ok(Record::End);
                }
                let secs = u64::from(u32_of(&hdr[0..4], be));
                let frac = u64::from(u32_of(&hdr[4..8], be));
                let ts = secs * 1_000_000_000 + if *nanos { frac } else { frac * 1000 };
                let caplen = u32_of(&hdr[8..12], be) as usize;
                if caplen > MAX_RECORD {
                    return Err(PcapError::Corrupt("record length"));
                }
                let link = *link;
                read_frame(&mut self.r, buf, caplen, link, ts, self.dst_mac, be)
            }
            Format::PcapNg { links } => loop {
                let mut hdr = [0u8; 8];
                if !read_or_eof(&mut self.r, &mut hdr)? {
                    return Ok(Record::End);
                }
                let kind = u32_of(&hdr[0..4], be);
                let len = u32_of(&hdr[4..8], be) as usize;
                if !(12..=MAX_RECORD).contains(&len) || !len.is_multiple_of(4) {
                    return Err(PcapError::Corrupt("pcapng block length"));
                }
                let body = len - 12;
                match kind {
                    1 => {
                        // Interface Description Block: link type, reserved, snaplen, options.
                        if body < 8 {
                            return Err(PcapError::Corrupt("interface description block"));
                        }
                        let mut b = [0u8; 8];
                        self.r.read_exact(&mut b)?;
                        links.push(u16_of([b[0], b[1]], be));
                        skip(&mut self.r, body - 8 + 4)?;
                    }
                    6 => {
                        // Enhanced Packet Block.
                        if body < 20 {
                            return Err(PcapError::Corrupt("enhanced packet block"));
                        }
                        let mut b = [0u8; 20];
                        self.r.read_exact(&mut b)?;
                        let iface = u32_of(&b[0..4], be) as usize;
                        let ts = (u64::from(u32_of(&b[4..8], be)) << 32
                            | u64::from(u32_of(&b[8..12], be)))
                        .saturating_mul(1000);
                        let caplen = u32_of(&b[12..16], be) as usize;
                        let padded = caplen.div_ceil(4) * 4;
                        if padded > body - 20 {
                            return Err(PcapError::Corrupt("enhanced packet length"));
                        }
                        let link = *links
                            .get(iface)
                            .ok_or(PcapError::Corrupt("packet on an undescribed interface"))?;
                        let res = read_frame(&mut self.r, buf, caplen, link, ts, self.dst_mac, be);
                        skip(&mut self.r, body - 20 - caplen + 4)?;
                        return res;
                    }
                    3 => {
                        // Simple Packet Block: original length, then data up to the block end.
                        if body < 4 {
                            return Err(PcapError::Corrupt("simple packet block"));
                        }
                        let mut b = [0u8; 4];
                        self.r.read_exact(&mut b)?;
                        let orig = u32_of(&b, be) as usize;
                        let caplen = orig.min(body - 4);
                        let link = *links
                            .first()
                            .ok_or(PcapError::Corrupt("packet before an interface"))?;
                        let res = read_frame(&mut self.r, buf, caplen, link, 0, self.dst_mac, be);
                        skip(&mut self.r, body - 4 - caplen + 4)?;
                        return res;
                    }
                    0x0a0d_0d0a => {
                        // A new section: interfaces start over. Byte order is assumed unchanged.
                        links.clear();
                        skip(&mut self.r, body + 4)?;
                    }
                    _ => skip(&mut self.r, body + 4)?,
                }
            },
        }
    }
}

fn check_link(link: u16) -> Result<(), PcapError> {
    if link == LINKTYPE_ETHERNET || link == LINKTYPE_LINUX_SLL {
        Ok(())
    } else {
        Err(PcapError::UnsupportedLinkType(link))
    }
}

fn read_or_eof(r: &mut impl Read, out: &mut [u8]) -> Result<bool, PcapError> {
    match r.read_exact(out) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn skip(r: &mut impl Read, n: usize) -> Result<(), PcapError> {
    let copied = io::copy(&mut r.take(n as u64), &mut io::sink())?;
    if copied as usize != n {
        return Err(PcapError::Corrupt("file ends inside a block"));
    }
    Ok(())
}

/// Reads `caplen` bytes of a record of link type `link` into `buf` as an Ethernet frame.
fn read_frame(
    r: &mut impl Read,
    buf: &mut Buf,
    caplen: usize,
    link: u16,
    ts: u64,
    dst_mac: [u8; 6],
    _be: bool,
) -> Result<Record, PcapError> {
    check_link(link)?;
    if link == LINKTYPE_ETHERNET {
        if caplen > buf.room() {
            skip(r, caplen)?;
            return Ok(Record::Oversize);
        }
        r.read_exact(&mut buf.rx_area()[..caplen])?;
        buf.set_received(caplen, ts);
        return Ok(Record::Frame);
    }
    // Linux SLL: packet type (2), ARPHRD (2), address length (2), address (8), protocol (2).
    if caplen < SLL_LEN {
        skip(r, caplen)?;
        buf.set_received(0, ts);
        return Ok(Record::Frame);
    }
    let mut sll = [0u8; SLL_LEN];
    r.read_exact(&mut sll)?;
    let payload = caplen - SLL_LEN;
    if payload + 14 > buf.room() {
        skip(r, payload)?;
        return Ok(Record::Oversize);
    }
    let area = buf.rx_area();
    let dst = match u16::from_be_bytes([sll[0], sll[1]]) {
        1 => [0xff; 6],
        2 => [0x01, 0x00, 0x5e, 0, 0, 1],
        _ => dst_mac,
    };
    area[0..6].copy_from_slice(&dst);
    let alen = usize::from(u16::from_be_bytes([sll[4], sll[5]]));
    let mut src = [0u8; 6];
    if alen == 6 {
        src.copy_from_slice(&sll[6..12]);
    }
    area[6..12].copy_from_slice(&src);
    area[12..14].copy_from_slice(&sll[14..16]);
    r.read_exact(&mut area[14..14 + payload])?;
    buf.set_received(14 + payload, ts);
    Ok(Record::Frame)
}

/// Writes Ethernet frames to a classic pcap file.
pub struct PcapWriter {
    w: BufWriter<File>,
}

impl PcapWriter {
    /// Creates (truncates) a file and writes the global header.
    ///
    /// # Errors
    /// I/O errors.
    pub fn create(path: &Path) -> io::Result<Self> {
        let mut w = BufWriter::new(File::create(path)?);
        w.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
        w.write_all(&2u16.to_le_bytes())?;
        w.write_all(&4u16.to_le_bytes())?;
        w.write_all(&[0u8; 8])?;
        w.write_all(&65535u32.to_le_bytes())?;
        w.write_all(&u32::from(LINKTYPE_ETHERNET).to_le_bytes())?;
        Ok(PcapWriter { w })
    }

    /// Appends one frame.
    ///
    /// # Errors
    /// I/O errors.
    pub fn write(&mut self, frame: &[u8], ts_ns: u64) -> io::Result<()> {
        let len = frame.len() as u32;
        self.w
            .write_all(&((ts_ns / 1_000_000_000) as u32).to_le_bytes())?;
        self.w
            .write_all(&(((ts_ns % 1_000_000_000) / 1000) as u32).to_le_bytes())?;
        self.w.write_all(&len.to_le_bytes())?;
        self.w.write_all(&len.to_le_bytes())?;
        self.w.write_all(frame)
    }

    /// Flushes buffered records.
    ///
    /// # Errors
    /// I/O errors.
    pub fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

/// A port that replays one pcap file and writes what it transmits to another.
pub struct PcapPort {
    reader: Option<PcapReader>,
    writer: Option<PcapWriter>,
    /// The error that ended the replay early, if any.
    pub rx_error: Option<PcapError>,
    /// The first write error, if any (later frames are not written).
    pub tx_error: Option<io::Error>,
    /// The largest frame in the file (read once at open), so buffers need hold no more.
    max_frame: usize,
}

impl PcapPort {
    /// Opens the files that are given.
    ///
    /// # Errors
    /// The reader's or writer's error.
    pub fn open(rx: Option<&Path>, tx: Option<&Path>, mac: [u8; 6]) -> Result<Self, PcapError> {
        let max_frame = match rx {
            Some(p) => largest_frame(PcapReader::open(p, mac)?),
            None => 0,
        };
        Ok(PcapPort {
            reader: rx.map(|p| PcapReader::open(p, mac)).transpose()?,
            writer: tx.map(PcapWriter::create).transpose()?,
            rx_error: None,
            tx_error: None,
            max_frame,
        })
    }
}

/// The largest frame `r` yields (up to [`crate::pipeline::batch::MAX_FRAME`]; larger ones are dropped anyway). A
/// corrupt file ends the scan: the replay reports it.
fn largest_frame(mut r: PcapReader) -> usize {
    let mut buf = Buf::new();
    let mut max = 0;
    while let Ok(Record::Frame | Record::Oversize) = r.next_into(&mut buf) {
        max = max.max(buf.len());
    }
    max
}

impl Port for PcapPort {
    fn rx(&mut self, batch: &mut Batch, max: usize, stats: &PortStats) -> usize {
        batch.release();
        let mut n = 0;
        let max = max.min(batch.bufs.len());
        while n < max {
            let Some(reader) = self.reader.as_mut() else {
                break;
            };
            match reader.next_into(&mut batch.bufs[n]) {
                Ok(Record::Frame) => n += 1,
                Ok(Record::Oversize) => stats.drop(DropReason::RxOversize),
                Ok(Record::End) => self.reader = None,
                Err(e) => {
                    self.rx_error = Some(e);
                    self.reader = None;
                }
            }
        }
        batch.len = n;
        n
    }

    fn tx(&mut self, batch: &mut Batch, idx: &[u8]) -> usize {
        if let (Some(w), None) = (self.writer.as_mut(), self.tx_error.as_ref()) {
            for &i in idx {
                if let Some(b) = batch.bufs.get(usize::from(i)) {
                    if let Err(e) = w.write(b.frame(), b.ts_ns) {
                        self.tx_error = Some(e);
                        break;
                    }
                }
            }
        }
        idx.len()
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.writer.as_mut() {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }

    fn rx_exhausted(&self) -> bool {
        self.reader.is_none()
    }

    fn max_frame(&self) -> usize {
        self.max_frame
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}
