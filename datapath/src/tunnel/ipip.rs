//! IP in IP encapsulation (RFC 2003 for IPv4 inside, RFC 2473 for IPv6 inside, over either
//! family): nothing between the outer IP header and the inner packet; the outer protocol
//! names the inner family.

use crate::wire::ip_proto;

/// Bytes after the outer IP header.
pub const AFTER_IP_LEN: usize = 0;

/// The outer IP protocol for an inner packet of the family `inner_ipv6`.
pub fn protocol(inner_ipv6: bool) -> u8 {
    if inner_ipv6 {
        ip_proto::IPV6
    } else {
        ip_proto::IPIP
    }
}
