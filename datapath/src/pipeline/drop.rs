//! Why a packet was dropped. Each reason has a stable snake_case metric name and a one-line
//! description; names never change once released. Every wire error variant maps to exactly one
//! reason (the `From` impls below).

use crate::wire::{EthernetError, Ipv4Error, Ipv6Error, VlanError};

macro_rules! drop_reasons {
    ($($variant:ident => $name:literal, $desc:literal;)*) => {
        /// Why a packet was dropped.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum DropReason {
            $(#[doc = $desc] $variant,)*
        }

        impl DropReason {
            /// Every reason, in counter order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];
            /// Number of reasons.
            pub const COUNT: usize = Self::ALL.len();

            /// Stable metric name.
            pub const fn name(self) -> &'static str {
                match self { $(DropReason::$variant => $name,)* }
            }

            /// One-line description.
            pub const fn description(self) -> &'static str {
                match self { $(DropReason::$variant => $desc,)* }
            }
        }
    };
}

drop_reasons! {
    RxOversize => "rx_oversize", "frame larger than a packet buffer";
    EthTooShort => "eth_too_short", "frame shorter than an Ethernet header";
    VlanTooShort => "vlan_too_short", "frame ends inside a VLAN tag";
    VlanTooDeep => "vlan_too_deep", "more than two VLAN tags";
    L2OtherHost => "l2_other_host", "unicast frame for another station's MAC";
    L2GroupUnicastIp => "l2_group_unicast_ip", "Ethernet broadcast or multicast frame carrying a unicast IP destination (RFC 1122 3.3.6)";
    VlanNotAllowed => "vlan_not_allowed", "tagged with a VLAN ID the input port does not list";
    UnsupportedEthertype => "unsupported_ethertype", "EtherType neither IPv4, IPv6 nor ARP";
    Ipv4TooShort => "ipv4_too_short", "shorter than an IPv4 header";
    Ipv4BadVersion => "ipv4_bad_version", "IPv4 EtherType but version is not 4";
    Ipv4BadIhl => "ipv4_bad_ihl", "IHL below 5 or options past the frame";
    Ipv4BadLength => "ipv4_bad_length", "IPv4 total length below the header or past the frame";
    Ipv4BadChecksum => "ipv4_bad_checksum", "IPv4 header checksum does not verify";
    Ipv6TooShort => "ipv6_too_short", "shorter than an IPv6 header";
    Ipv6BadVersion => "ipv6_bad_version", "IPv6 EtherType but version is not 6";
    Ipv6BadLength => "ipv6_bad_length", "IPv6 payload length past the frame";
    Ipv6BadExtHeader => "ipv6_bad_ext_header", "IPv6 extension header truncated or chain too long";
    MartianSource => "martian_source", "source is multicast, broadcast, loopback, link-local or in 0.0.0.0/8";
    MartianDestination => "martian_destination", "destination is never forwarded (loopback, unspecified, link-local, multicast, broadcast)";
    TtlExpired => "ttl_expired", "TTL or hop limit would reach zero";
    NoRoute => "no_route", "no route for the destination";
    Blackhole => "blackhole", "route with action drop";
    NeighborUnresolved => "neighbor_unresolved", "next hop has no known MAC address";
    Hairpin => "hairpin", "would leave through its input port and the route does not allow it";
    MtuExceeded => "mtu_exceeded", "larger than the egress port's MTU";
    TxFull => "tx_full", "egress port could not take the packet";
    LinkDown => "link_down", "egress port's interface is down or was removed: not sent";
    HandoffFull => "handoff_full", "the worker that owns the flow (steering = \"inner\") has no room: not handed off";
    OuterFragment => "outer_fragment", "fragment of a tunnel packet: outer reassembly is not done";
    UdpTooShort => "udp_too_short", "shorter than a UDP header";
    UdpBadLength => "udp_bad_length", "UDP length below 8 or past the datagram";
    UdpBadChecksum => "udp_bad_checksum", "UDP checksum of a tunnel packet does not verify";
    UdpZeroChecksumV6 => "udp_zero_checksum_ipv6", "zero UDP checksum over IPv6 (RFC 8200 8.1)";
    GtpuTooShort => "gtpu_too_short", "shorter than the GTP-U header its flags announce";
    GtpuBadVersion => "gtpu_bad_version", "GTP version is not 1 or PT is 0 (GTP')";
    GtpuBadLength => "gtpu_bad_length", "GTP-U Length past the datagram or below the optional octets";
    GtpuZeroExtLength => "gtpu_zero_ext_length", "GTP-U extension header of length 0";
    GtpuExtTruncated => "gtpu_ext_truncated", "GTP-U extension header past the message";
    GtpuTooManyExtHeaders => "gtpu_too_many_ext_headers", "GTP-U extension chain longer than the bound";
    GtpuUnknownRequiredExt => "gtpu_unknown_required_ext", "unknown GTP-U extension marked comprehension-required";
    GtpuTeidZero => "gtpu_teid_zero", "G-PDU with TEID 0";
    GtpuUnknownTeid => "gtpu_unknown_teid", "G-PDU for a TEID with no session";
    GtpuInnerNotIp => "gtpu_inner_not_ip", "G-PDU payload is not IPv4 or IPv6";
    GtpuEchoResponse => "gtpu_echo_response", "GTP-U Echo Response (counted, never forwarded)";
    GtpuErrorIndication => "gtpu_error_indication", "GTP-U Error Indication (counted, never forwarded)";
    GtpuEndMarker => "gtpu_end_marker", "GTP-U End Marker (counted, never forwarded)";
    GtpuSupportedExtHeaders => "gtpu_supported_ext_headers", "GTP-U Supported Extension Headers Notification (counted)";
    GtpuUnknownMessage => "gtpu_unknown_message", "GTP-U message type that is not user data or known signalling";
    VxlanTooShort => "vxlan_too_short", "shorter than a VXLAN header";
    VxlanNoVni => "vxlan_no_vni", "VXLAN I flag clear";
    VxlanUnknownVni => "vxlan_unknown_vni", "VXLAN VNI of no configured tunnel";
    VxlanInnerTooShort => "vxlan_inner_too_short", "VXLAN payload shorter than an Ethernet header";
    VxlanInnerNotIp => "vxlan_inner_not_ip", "VXLAN inner frame is not IPv4 or IPv6 (ARP, ...)";
    GeneveTooShort => "geneve_too_short", "shorter than a Geneve header and the options its Opt Len announces";
    GeneveBadVersion => "geneve_bad_version", "Geneve version is not 0 (RFC 8926 3.4)";
    GeneveOptionOverrun => "geneve_option_overrun", "Geneve option running past the options area";
    GeneveCriticalOption => "geneve_critical_option", "Geneve option with the critical bit set (the gateway understands no option)";
    GeneveOam => "geneve_oam", "Geneve control message (O bit: counted, never forwarded)";
    GeneveUnknownVni => "geneve_unknown_vni", "Geneve VNI of no configured tunnel";
    GeneveInnerTooShort => "geneve_inner_too_short", "Geneve Ethernet payload shorter than an Ethernet header";
    GeneveInnerNotIp => "geneve_inner_not_ip", "Geneve payload is not IPv4 or IPv6 (by Protocol Type, or the inner EtherType)";
    Ipv6SegmentsLeft => "ipv6_segments_left", "tunnel packet for a local endpoint with a Routing header that has segments left (the gateway is no segment endpoint)";
    TunnelUnknownPeer => "tunnel_unknown_peer", "tunnel packet (or GTP-U Echo Request) from a source that is not a configured peer";
    TunnelWrongPort => "tunnel_wrong_port", "tunnel packet from a configured peer's address, but on a port that peer is not reached through (spoofed)";
    GtpuInnerSourceNotUe => "gtpu_inner_source_not_ue", "G-PDU whose inner source is outside its session's UE range (spoofed)";
    RpfFailed => "rpf_failed", "source fails the input port's reverse-path check (strict: its route leaves by another port; loose: it has no route)";
    GtpuNoSession => "gtpu_no_session", "routed into a GTP-U tunnel but no session covers the destination";
    TunnelInnerLocal => "tunnel_inner_local", "decapsulated packet for a link-local, multicast or gateway address (no stack runs inside tunnels)";
    KernelRxDropped => "kernel_rx_dropped", "dropped by the kernel before the gateway read it (receive ring full, no fill buffer)";
    LocalQueueFull => "local_queue_full", "for the gateway itself, but the control thread's queue is full";
    ReplyRateLimited => "reply_rate_limited", "GTP-U Echo Request not answered: over the reply rate limit (the icmp section)";
    LocalRateLimited => "local_rate_limited", "for the gateway itself, above the rate the control path takes for its kind (ARP/NDP, or ping and the rest)";
    RewriteFailed => "rewrite_failed", "could not be rewritten for its egress (no room for the encapsulation's headers, or its tunnel is gone from the snapshot)";
    EcmpNested => "ecmp_nested", "an ECMP member that is itself an ECMP group (not followed)";
    UnknownNextHop => "unknown_next_hop", "routed to a next hop or encapsulation the forwarding snapshot does not have (an inconsistent snapshot: counted, not sent)";
    UnknownInputPort => "unknown_input_port", "received on a port the forwarding snapshot does not have";
    UnknownOutputPort => "unknown_output_port", "routed to a port the worker does not have";
    NoVerdict => "no_verdict", "left by the pipeline without a verdict (a defect: counted, not sent)";
}

impl From<crate::wire::UdpError> for DropReason {
    fn from(e: crate::wire::UdpError) -> Self {
        match e {
            crate::wire::UdpError::TooShort { .. } => DropReason::UdpTooShort,
            crate::wire::UdpError::BadLength { .. } => DropReason::UdpBadLength,
        }
    }
}

impl From<crate::wire::GtpuError> for DropReason {
    fn from(e: crate::wire::GtpuError) -> Self {
        use crate::wire::GtpuError as E;
        match e {
            E::TooShort { .. } => DropReason::GtpuTooShort,
            E::BadVersion { .. } => DropReason::GtpuBadVersion,
            E::BadLength { .. } => DropReason::GtpuBadLength,
            E::ZeroExtLength { .. } => DropReason::GtpuZeroExtLength,
            E::ExtTruncated { .. } => DropReason::GtpuExtTruncated,
            E::TooManyExtHeaders => DropReason::GtpuTooManyExtHeaders,
            E::UnknownRequiredExt { .. } => DropReason::GtpuUnknownRequiredExt,
        }
    }
}

impl From<crate::wire::VxlanError> for DropReason {
    fn from(e: crate::wire::VxlanError) -> Self {
        match e {
            crate::wire::VxlanError::TooShort { .. } => DropReason::VxlanTooShort,
            crate::wire::VxlanError::NoVni { .. } => DropReason::VxlanNoVni,
        }
    }
}

impl From<crate::wire::GeneveError> for DropReason {
    fn from(e: crate::wire::GeneveError) -> Self {
        use crate::wire::GeneveError as E;
        match e {
            E::TooShort { .. } => DropReason::GeneveTooShort,
            E::BadVersion { .. } => DropReason::GeneveBadVersion,
            E::OptionOverrun { .. } => DropReason::GeneveOptionOverrun,
            E::CriticalOption { .. } => DropReason::GeneveCriticalOption,
        }
    }
}

impl From<EthernetError> for DropReason {
    fn from(e: EthernetError) -> Self {
        match e {
            EthernetError::TooShort { .. } => DropReason::EthTooShort,
        }
    }
}

impl From<VlanError> for DropReason {
    fn from(e: VlanError) -> Self {
        match e {
            VlanError::TooShort { .. } => DropReason::VlanTooShort,
            VlanError::TooDeep => DropReason::VlanTooDeep,
        }
    }
}

impl From<Ipv4Error> for DropReason {
    fn from(e: Ipv4Error) -> Self {
        match e {
            Ipv4Error::TooShort { .. } => DropReason::Ipv4TooShort,
            Ipv4Error::BadVersion { .. } => DropReason::Ipv4BadVersion,
            Ipv4Error::BadIhl { .. } => DropReason::Ipv4BadIhl,
            Ipv4Error::BadTotalLength { .. } => DropReason::Ipv4BadLength,
            Ipv4Error::BadChecksum { .. } => DropReason::Ipv4BadChecksum,
        }
    }
}

impl From<Ipv6Error> for DropReason {
    fn from(e: Ipv6Error) -> Self {
        match e {
            Ipv6Error::TooShort { .. } => DropReason::Ipv6TooShort,
            Ipv6Error::BadVersion { .. } => DropReason::Ipv6BadVersion,
            Ipv6Error::BadPayloadLength { .. } => DropReason::Ipv6BadLength,
            Ipv6Error::ExtHeaderTruncated { .. } | Ipv6Error::TooManyExtHeaders => {
                DropReason::Ipv6BadExtHeader
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_snake_case() {
        let mut names: Vec<&str> = DropReason::ALL.iter().map(|r| r.name()).collect();
        assert!(names.iter().all(|n| n
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')));
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
        assert_eq!(
            DropReason::ALL[DropReason::NoRoute as usize],
            DropReason::NoRoute
        );
    }
}
