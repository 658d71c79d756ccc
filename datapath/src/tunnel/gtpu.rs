//! GTP-U (TS 29.281).
//!
//! - Decapsulation: UDP 2152 to a local GTP-U endpoint; G-PDUs with a known uplink TEID from
//!   the tunnel's peer lose their headers, and the inner source must lie in the session's UE
//!   range ([`super::LastTunnel::check_inner_source`]); an Echo Request from a peer is
//!   answered by the reply stage; Echo Response, Error Indication, End Marker and Supported
//!   Extension Headers Notification are counted under their own reasons and never forwarded
//!   as user data.
//! - Encapsulation: a G-PDU with the session's downlink TEID over UDP port 2152, and a PDU
//!   Session Container of type 0 (downlink, TS 38.415 5.5.2.1) when the session has a QFI.

use super::{Decapped, Kind, LastTunnel, Outer, Tunnels};
use crate::pipeline::drop::DropReason;
use crate::wire::{gtpu, udp, EtherType, GtpuPacket, GtpuRepr};

/// Decapsulates the GTP-U message at `off..end` (the UDP payload).
///
/// # Errors
/// The drop reason.
#[inline]
pub fn decap(
    frame: &[u8],
    tunnels: &Tunnels,
    o: &Outer,
    (off, end): (usize, usize),
    last: &mut LastTunnel,
) -> Result<Decapped, DropReason> {
    let g = GtpuPacket::new_checked(frame.get(off..end).unwrap_or_default())?;
    match g.msg_type() {
        gtpu::msg::G_PDU => {}
        gtpu::msg::ECHO_REQUEST => {
            // Answered in place after the other stages, and only to a configured peer on its
            // own port: anyone else would use the gateway as a reflector.
            if !tunnels.is_gtpu_peer_on(o.local, o.src, o.in_port) {
                return Err(DropReason::TunnelUnknownPeer);
            }
            return Ok(Decapped::EchoRequest);
        }
        gtpu::msg::ECHO_RESPONSE => return Err(DropReason::GtpuEchoResponse),
        gtpu::msg::ERROR_INDICATION => return Err(DropReason::GtpuErrorIndication),
        gtpu::msg::END_MARKER => return Err(DropReason::GtpuEndMarker),
        gtpu::msg::SUPPORTED_EXT_HEADERS => return Err(DropReason::GtpuSupportedExtHeaders),
        _ => return Err(DropReason::GtpuUnknownMessage),
    }
    let teid = g.teid();
    if teid == 0 {
        return Err(DropReason::GtpuTeidZero);
    }
    last.accept((o.local, o.src), Kind::Gtpu, u64::from(teid), || {
        let s = tunnels
            .gtpu_session(o.local, teid)
            .ok_or(DropReason::GtpuUnknownTeid)?;
        tunnels.peer_check(s.tunnel, o.src, o.in_port)?;
        Ok(Some(s))
    })?;
    let w = g.walk()?;
    let inner = off + w.payload_off;
    let inner_end = off + w.payload_end;
    let ethertype = match frame.get(inner).map(|b| b >> 4) {
        Some(4) if inner < inner_end => EtherType::IPV4,
        Some(6) if inner < inner_end => EtherType::IPV6,
        _ => return Err(DropReason::GtpuInnerNotIp),
    };
    Ok(Decapped::Inner {
        off: inner,
        end: inner_end,
        ethertype,
    })
}

/// The G-PDU header a session's packets get.
fn header(teid: u32, qfi: Option<u8>, inner_len: usize) -> GtpuRepr {
    GtpuRepr {
        msg_type: gtpu::msg::G_PDU,
        teid,
        seq: None,
        psc: qfi.map(|q| (0, q)),
        payload_len: inner_len,
    }
}

/// Bytes after the outer IP header: UDP, GTP-U, and the PDU Session Container with a QFI.
pub fn after_ip_len(qfi: Option<u8>) -> usize {
    udp::HEADER_LEN + header(0, qfi, 0).buffer_len()
}

/// Writes the GTP-U header at the start of `f` (just after the UDP header); returns the UDP
/// ports.
pub fn write(f: &mut [u8], teid: u32, qfi: Option<u8>, inner_len: usize) -> (u16, u16) {
    header(teid, qfi, inner_len).emit(f);
    (gtpu::UDP_PORT, gtpu::UDP_PORT)
}

/// Grows the UDP and GTP-U lengths of headers written for an empty packet by `grow`; `f`
/// starts at the UDP header. Returns the UDP length.
pub fn patch(f: &mut [u8], grow: u16) -> u16 {
    let udp_len = super::grow_udp(f, grow);
    let mut g = GtpuPacket::new_unchecked(&mut f[udp::HEADER_LEN..]);
    g.set_length(g.length().wrapping_add(grow));
    udp_len
}
