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
    MartianSource => "martian_source", "source is multicast, broadcast, loopback or unspecified";
    MartianDestination => "martian_destination", "destination is never forwarded (loopback, unspecified, multicast, broadcast)";
    TtlExpired => "ttl_expired", "TTL or hop limit would reach zero";
    NoRoute => "no_route", "no route for the destination";
    Blackhole => "blackhole", "route with action drop";
    NeighborUnresolved => "neighbor_unresolved", "next hop has no known MAC address";
    Hairpin => "hairpin", "would leave through its input port and the route does not allow it";
    MtuExceeded => "mtu_exceeded", "larger than the egress port's MTU";
    TxFull => "tx_full", "egress port could not take the packet";
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
