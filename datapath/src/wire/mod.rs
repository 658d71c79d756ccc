//! Zero-copy views and validated representations of the wire formats the gateway handles.
//!
//! Each format has a view `Packet<T: AsRef<[u8]>>` over a byte buffer and a validated `Repr`.
//! Untrusted bytes go through `new_checked` only; once `check_len` has passed, no accessor
//! panics (each module documents the setters that void this). Byte ranges live in a `field`
//! module; accessor bodies hold no numeric offsets. Every module has one small `Copy` error enum
//! whose variants carry the offending values, and each variant maps to exactly one
//! [`crate::pipeline::drop::DropReason`].
//!
//! This module forbids `unsafe`.

#![forbid(unsafe_code)]

pub mod checksum;
pub mod ethernet;
pub mod geneve;
pub mod gtpu;
pub mod icmp;
pub mod ipv4;
pub mod ipv6;
pub mod udp;
pub mod vlan;
pub mod vxlan;

#[cfg(test)]
pub(crate) mod fixtures;

pub use ethernet::{
    Error as EthernetError, EtherType, Packet as EthernetFrame, Repr as EthernetRepr,
};
pub use geneve::{Error as GeneveError, Packet as GenevePacket, Repr as GeneveRepr};
pub use gtpu::{Error as GtpuError, Packet as GtpuPacket, Repr as GtpuRepr};
pub use icmp::{Error as IcmpError, Packet as IcmpPacket, Repr as IcmpRepr};
pub use ipv4::{Error as Ipv4Error, Packet as Ipv4Packet, Repr as Ipv4Repr};
pub use ipv6::{Error as Ipv6Error, Packet as Ipv6Packet, Repr as Ipv6Repr};
pub use udp::{Error as UdpError, Packet as UdpPacket, Repr as UdpRepr};
pub use vlan::{Error as VlanError, Packet as VlanPacket, Repr as VlanRepr};
pub use vxlan::{Error as VxlanError, Packet as VxlanPacket, Repr as VxlanRepr};

/// IP protocol numbers the gateway looks at (IANA "Assigned Internet Protocol Numbers").
pub mod ip_proto {
    /// IPv6 Hop-by-Hop Options.
    pub const HOPOPT: u8 = 0;
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// IPv4 encapsulation (IPIP).
    pub const IPIP: u8 = 4;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// IPv6 encapsulation.
    pub const IPV6: u8 = 41;
    /// IPv6 Routing header.
    pub const IPV6_ROUTE: u8 = 43;
    /// IPv6 Fragment header.
    pub const IPV6_FRAG: u8 = 44;
    /// ESP.
    pub const ESP: u8 = 50;
    /// AH.
    pub const AH: u8 = 51;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// IPv6 No Next Header.
    pub const IPV6_NONXT: u8 = 59;
    /// IPv6 Destination Options.
    pub const IPV6_OPTS: u8 = 60;
    /// SCTP.
    pub const SCTP: u8 = 132;
}

/// Writes a fresh IPv4 or IPv6 header (TTL or hop limit 64) at the start of `ip`, for packets
/// the gateway originates: tunnel outer headers and its own replies. `src` and `dst` are
/// tunnel keys (an IPv4 address in the low 32 bits); `dont_frag` applies to IPv4 only.
pub fn write_ip_header(
    ip: &mut [u8],
    ipv6: bool,
    (src, dst): (u128, u128),
    proto: u8,
    payload_len: usize,
    dont_frag: bool,
) {
    if ipv6 {
        Ipv6Repr {
            src,
            dst,
            next_header: proto,
            payload_len,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0,
        }
        .emit(&mut Ipv6Packet::new_unchecked(ip));
    } else {
        Ipv4Repr {
            src: src as u32,
            dst: dst as u32,
            protocol: proto,
            payload_len,
            ttl: 64,
            dscp_ecn: 0,
            ident: 0,
            dont_frag,
        }
        .emit(&mut Ipv4Packet::new_unchecked(ip));
    }
}
