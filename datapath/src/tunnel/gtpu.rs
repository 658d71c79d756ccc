//! GTP-U encapsulation (TS 29.281): a G-PDU with the session's downlink TEID over UDP port
//! 2152, and a PDU Session Container of type 0 (downlink, TS 38.415 5.5.2.1) when the session
//! has a QFI.

use crate::wire::{gtpu, udp, GtpuPacket, GtpuRepr};

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
