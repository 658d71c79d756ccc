//! The gateway's own addresses, answered by smoltcp on the control thread: ARP requests, NDP
//! neighbour solicitations and ICMP/ICMPv6 echo. One smoltcp interface per port, fed the
//! frames the workers hand up ([`datapath::local::LocalPath`]); what it sends goes back down
//! to leave through the same port.
//!
//! smoltcp keeps its own neighbour cache for its replies (it resolves the sender before
//! answering a ping, as a host does).

use datapath::local::{Frame, LocalPath};
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};
use std::sync::Arc;

/// How many addresses of a port the local stack answers for (smoltcp's fixed capacity).
pub const MAX_ADDRS: usize = 8;

/// The frame being delivered, and the path replies go down.
struct Wire {
    port: u8,
    path: Arc<LocalPath>,
    pending: Option<Vec<u8>>,
    mtu: usize,
}

/// A copy of the frame: the control thread may allocate, and the worker's buffer goes back to
/// its own pool at once.
struct Rx(Vec<u8>);

impl RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

struct Tx<'a> {
    port: u8,
    path: &'a LocalPath,
}

impl TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        // The control thread may allocate: build the frame, then queue it (not sent when no
        // buffer is free, as a full NIC queue would drop it).
        let mut buf = vec![0; len];
        let r = f(&mut buf);
        self.path
            .send_down(self.port, len, |d| d.copy_from_slice(&buf));
        r
    }
}

impl Device for Wire {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _: Instant) -> Option<(Rx, Tx<'_>)> {
        let frame = self.pending.take()?;
        Some((
            Rx(frame),
            Tx {
                port: self.port,
                path: &self.path,
            },
        ))
    }

    fn transmit(&mut self, _: Instant) -> Option<Tx<'_>> {
        Some(Tx {
            port: self.port,
            path: &self.path,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.mtu;
        caps.max_burst_size = Some(1);
        caps
    }
}

/// The local stack: one smoltcp interface per port; replies leave through `path` (one
/// worker's, which owns a transmit queue on every port).
pub struct LocalStack {
    ifaces: Vec<(Interface, Wire)>,
    sockets: SocketSet<'static>,
    start: std::time::Instant,
}

impl LocalStack {
    /// A stack answering for each port's addresses (the first [`MAX_ADDRS`] of each).
    pub fn new(c: &config::Config, path: &Arc<LocalPath>) -> Self {
        let start = std::time::Instant::now();
        let ifaces = c
            .ports
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut wire = Wire {
                    port: i as u8,
                    path: Arc::clone(path),
                    pending: None,
                    mtu: usize::from(p.mtu) + 14,
                };
                let mut cfg = IfaceConfig::new(HardwareAddress::Ethernet(EthernetAddress(p.mac.0)));
                cfg.random_seed = u64::from(p.mac.0[5]) | (i as u64) << 8;
                let mut iface = Interface::new(cfg, &mut wire, Instant::from_millis(0));
                iface.update_ip_addrs(|a| {
                    for net in p.addresses.iter().take(MAX_ADDRS) {
                        let ip = match net.addr() {
                            std::net::IpAddr::V4(v) => IpAddress::Ipv4(v),
                            std::net::IpAddr::V6(v) => IpAddress::Ipv6(v),
                        };
                        let _ = a.push(IpCidr::new(ip, net.prefix_len()));
                    }
                });
                (iface, wire)
            })
            .collect();
        LocalStack {
            ifaces,
            sockets: SocketSet::new(vec![]),
            start,
        }
    }

    fn now(&self) -> Instant {
        Instant::from_millis(self.start.elapsed().as_millis() as i64)
    }

    /// Delivers one frame handed up by a worker; replies are queued down.
    pub fn deliver(&mut self, frame: &Frame) {
        let now = self.now();
        let Some((iface, wire)) = self.ifaces.get_mut(usize::from(frame.port)) else {
            return;
        };
        wire.pending = Some(frame.bytes().to_vec());
        iface.poll(now, wire, &mut self.sockets);
        wire.pending = None;
    }

    /// Runs the stack's timers (ARP and NDP retries, cache expiry).
    pub fn tick(&mut self) {
        let now = self.now();
        for (iface, wire) in &mut self.ifaces {
            iface.poll(now, wire, &mut self.sockets);
        }
    }
}
