//! The control socket's service: who may connect, and serving every client without ever
//! blocking the control thread's event loop.
//!
//! - The socket file is created with mode 0600 (owner: the gateway's user, root), or 0660 and
//!   the group `control_group` names, whatever the process umask.
//! - Every client's credentials are checked with `SO_PEERCRED` when it connects, whatever the
//!   file's mode says: root, the gateway's own user, or a member of `control_group` (primary or
//!   supplementary group). Anyone else gets one error line, is counted and is logged (the first
//!   time).
//! - Clients are served side by side, each a small state machine polled once a turn of the
//!   event loop: read a request line (a client that sends nothing for 50 ms asks for the
//!   counters), answer now or once a reload is built, write the answer completely, however
//!   slowly the client reads, then close. A client that does not read its answer within 10 s is
//!   dropped. At most [`MAX_CLIENTS`] at once; more are told the gateway is busy.

use anyhow::{Context, Result};
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// Clients served at once.
pub const MAX_CLIENTS: usize = 32;
/// How long a client may take to send its request line.
const REQUEST_WAIT: Duration = Duration::from_millis(50);
/// How long a client may take to read its answer.
const ANSWER_WAIT: Duration = Duration::from_secs(10);
/// The longest request line read: `explain` carries a frame in hex (the largest frame a
/// buffer holds, 16 KiB, is 32 KiB of hex).
const REQUEST_MAX: usize = 40 * 1024;

/// Who may use the control socket besides root and the gateway's own user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Access {
    /// The group of `control_group`, if any.
    pub group: Option<u32>,
}

/// A peer's credentials, as `SO_PEERCRED` gives them, and its supplementary groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// User ID.
    pub uid: u32,
    /// Primary group ID.
    pub gid: u32,
    /// Supplementary groups (from `/proc/PID/status`).
    pub groups: Vec<u32>,
}

impl Access {
    /// Whether `peer` may use a gateway running as user `own_uid`.
    pub fn allows(&self, peer: &Peer, own_uid: u32) -> bool {
        peer.uid == 0
            || peer.uid == own_uid
            || self
                .group
                .is_some_and(|g| peer.gid == g || peer.groups.contains(&g))
    }
}

/// Resolves `control_group`: a group name from `/etc/group`, or a numeric group ID.
///
/// # Errors
/// A name that `/etc/group` does not have.
pub fn resolve_group(name: &str) -> Result<u32> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(gid);
    }
    let groups = std::fs::read_to_string("/etc/group").context("reading /etc/group")?;
    group_in(&groups, name)
        .with_context(|| format!("control_group {name:?}: no such group in /etc/group"))
}

fn group_in(etc_group: &str, name: &str) -> Option<u32> {
    etc_group.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next() == Some(name))
            .then(|| f.nth(1).and_then(|g| g.parse().ok()))
            .flatten()
    })
}

/// The supplementary groups of process `pid`, from the `Groups:` line of its status.
fn groups_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("Groups:").map(|g| {
                    g.split_whitespace()
                        .filter_map(|n| n.parse().ok())
                        .collect()
                })
            })
        })
        .unwrap_or_default()
}

/// Binds the control socket at `path` (replacing a stale one): mode 0600, or 0660 with group
/// `access.group`, whatever the process umask. Whoever can connect can reload the
/// configuration and change routes.
///
/// # Errors
/// Binding, or setting the mode or group.
pub fn bind(path: &Path, access: Access) -> Result<mio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(path);
    let l = mio::net::UnixListener::bind(path)
        .with_context(|| format!("control socket {}", path.display()))?;
    let mode = if let Some(g) = access.group {
        std::os::unix::fs::chown(path, None, Some(g))
            .with_context(|| format!("control socket {}: setting group {g}", path.display()))?;
        0o660
    } else {
        0o600
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("control socket {}: setting mode {mode:o}", path.display()))?;
    Ok(l)
}

/// What the control thread makes of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The answer, now.
    Now(String),
    /// The answer comes with the reload of this generation ([`Server::finish_reload`]).
    AfterReload(u64),
}

enum State {
    Reading(Vec<u8>),
    Waiting(u64),
    Writing(Vec<u8>, usize),
}

struct Client {
    conn: mio::net::UnixStream,
    state: State,
    deadline: Instant,
}

/// What the service counted, for `gateway stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Clients accepted and served.
    pub served: u64,
    /// Clients refused by their credentials.
    pub refused: u64,
    /// Clients turned away because [`MAX_CLIENTS`] were being served.
    pub busy: u64,
    /// Clients dropped for not sending or not reading in time, or for a broken connection.
    pub dropped: u64,
}

/// The control socket and its clients.
pub struct Server {
    listener: mio::net::UnixListener,
    access: Access,
    own_uid: u32,
    clients: Vec<Client>,
    /// Refused clients, told why and kept until they hang up (or a second passes): closing a
    /// Unix socket whose request is unread resets it, and the client would read the reset
    /// instead of the refusal.
    refused: Vec<(mio::net::UnixStream, Instant)>,
    counters: Counters,
}

impl Server {
    /// Serves `listener` to the peers `access` allows.
    pub fn new(listener: mio::net::UnixListener, access: Access) -> Self {
        Server {
            listener,
            access,
            own_uid: rustix::process::geteuid().as_raw(),
            clients: Vec::new(),
            refused: Vec::new(),
            counters: Counters::default(),
        }
    }

    /// The listener, to register with the event loop (a new client wakes it up).
    pub fn listener(&mut self) -> &mut mio::net::UnixListener {
        &mut self.listener
    }

    /// What was counted so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Clients being served.
    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    /// One turn: accepts new clients, reads requests, hands each complete request to
    /// `handle`, writes what can be written. Never blocks.
    pub fn turn(&mut self, mut handle: impl FnMut(&str) -> Answer) {
        self.accept();
        let now = Instant::now();
        self.refused.retain_mut(|(conn, until)| {
            let mut sink = [0u8; 256];
            loop {
                match conn.read(&mut sink) {
                    Ok(0) => return false,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return now < *until,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => return false,
                }
            }
        });
        for c in &mut self.clients {
            if let State::Reading(buf) = &mut c.state {
                let mut chunk = [0u8; 4096];
                let ended = loop {
                    if buf.len() >= REQUEST_MAX || buf.contains(&b'\n') {
                        break true;
                    }
                    match c.conn.read(&mut chunk) {
                        Ok(0) => break true,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(_) => break true,
                    }
                };
                // A client that sends nothing in time asks for the counters.
                if ended || now >= c.deadline {
                    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
                    let request = String::from_utf8_lossy(line).trim().to_string();
                    c.state = match handle(&request) {
                        Answer::Now(body) => State::Writing(body.into_bytes(), 0),
                        Answer::AfterReload(generation) => State::Waiting(generation),
                    };
                    c.deadline = now + ANSWER_WAIT;
                }
            }
        }
        self.write_and_reap(now);
    }

    /// Answers every client waiting for a reload of generation `generation` or earlier.
    pub fn finish_reload(&mut self, generation: u64, answer: &str) {
        let now = Instant::now();
        for c in &mut self.clients {
            if matches!(c.state, State::Waiting(g) if g <= generation) {
                c.state = State::Writing(answer.as_bytes().to_vec(), 0);
                c.deadline = now + ANSWER_WAIT;
            }
        }
        self.write_and_reap(now);
    }

    fn accept(&mut self) {
        loop {
            let (mut conn, _) = match self.listener.accept() {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            let peer = match rustix::net::sockopt::socket_peercred(&conn) {
                Ok(cred) => Peer {
                    uid: cred.uid.as_raw(),
                    gid: cred.gid.as_raw(),
                    groups: groups_of(cred.pid.as_raw_nonzero().get() as u32),
                },
                Err(_) => Peer {
                    uid: u32::MAX,
                    gid: u32::MAX,
                    groups: Vec::new(),
                },
            };
            if !self.access.allows(&peer, self.own_uid) {
                if self.counters.refused == 0 {
                    datapath::log::event(
                        "control_refused",
                        &[
                            ("uid", &peer.uid),
                            ("gid", &peer.gid),
                            (
                                "note",
                                &"not root, the gateway's user or a member of control_group; \
                                  counted as control.refused, logged once",
                            ),
                        ],
                    );
                }
                self.counters.refused += 1;
                // One line into an empty socket buffer does not block.
                let _ = conn.write(b"error: permission denied\n");
                self.linger(conn);
                continue;
            }
            if self.clients.len() >= MAX_CLIENTS {
                self.counters.busy += 1;
                let _ = conn.write(b"error: busy: too many control clients, try again\n");
                self.linger(conn);
                continue;
            }
            self.clients.push(Client {
                conn,
                state: State::Reading(Vec::new()),
                deadline: Instant::now() + REQUEST_WAIT,
            });
        }
    }

    /// Keeps a refused client until it hangs up (bounded in number and time; see `refused`).
    fn linger(&mut self, conn: mio::net::UnixStream) {
        if self.refused.len() < MAX_CLIENTS {
            let _ = conn.shutdown(std::net::Shutdown::Write);
            self.refused
                .push((conn, Instant::now() + Duration::from_secs(1)));
        }
    }

    fn write_and_reap(&mut self, now: Instant) {
        let counters = &mut self.counters;
        self.clients.retain_mut(|c| {
            let State::Writing(body, at) = &mut c.state else {
                // A reload answer has no deadline: the reload ends.
                return true;
            };
            while *at < body.len() {
                match c.conn.write(&body[*at..]) {
                    Ok(0) => break,
                    Ok(n) => *at += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        counters.dropped += 1;
                        return false;
                    }
                }
            }
            if *at >= body.len() {
                counters.served += 1;
                return false;
            }
            if now >= c.deadline {
                counters.dropped += 1;
                return false;
            }
            true
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::os::unix::net::UnixStream;

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("gw-ctl-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Turns the server until `done`, or fails after 5 s.
    fn turn_until(s: &mut Server, mut done: impl FnMut(&mut Server) -> bool, body: &str) {
        let end = Instant::now() + Duration::from_secs(5);
        while !done(s) {
            assert!(Instant::now() < end, "server did not get there");
            s.turn(|_| Answer::Now(body.to_string()));
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn the_socket_is_created_for_its_owner_only_or_its_group() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let d = dir("mode");
        let path = d.join("ctl.sock");
        let _l = bind(&path, Access::default()).unwrap();
        let m = std::fs::metadata(&path).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
        let _l = bind(&path, Access { group: Some(4242) }).unwrap();
        let m = std::fs::metadata(&path).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o660);
        assert_eq!(m.gid(), 4242);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn access_is_root_the_owner_or_the_group() {
        let peer = |uid, gid, groups: &[u32]| Peer {
            uid,
            gid,
            groups: groups.to_vec(),
        };
        let none = Access::default();
        let group = Access { group: Some(50) };
        assert!(none.allows(&peer(0, 0, &[]), 1000));
        assert!(none.allows(&peer(1000, 7, &[]), 1000));
        assert!(!none.allows(&peer(1001, 50, &[50]), 1000));
        assert!(group.allows(&peer(1001, 50, &[]), 1000));
        assert!(group.allows(&peer(1001, 7, &[3, 50]), 1000));
        assert!(!group.allows(&peer(1001, 7, &[3]), 1000));
    }

    #[test]
    fn group_names_resolve_from_etc_group() {
        let etc = "root:x:0:\nwheel:x:10:alice\ngwadmin:x:4242:bob,carol\n";
        assert_eq!(group_in(etc, "gwadmin"), Some(4242));
        assert_eq!(group_in(etc, "wheel"), Some(10));
        assert_eq!(group_in(etc, "gw"), None);
        assert_eq!(resolve_group("77").unwrap(), 77);
        assert!(resolve_group("no-such-group-here").is_err());
    }

    #[test]
    fn a_client_that_does_not_read_stalls_nobody_and_gets_its_whole_answer() {
        let d = dir("slow");
        let path = d.join("ctl.sock");
        let mut s = Server::new(bind(&path, Access::default()).unwrap(), Access::default());
        // An answer far larger than a socket buffer.
        let big: String = "0123456789abcdef".repeat(256 * 1024) + "\n";
        let mut slow = UnixStream::connect(&path).unwrap();
        slow.write_all(b"stats\n").unwrap();
        turn_until(&mut s, |s| s.clients() == 1, &big);
        // The slow client has not read a byte; another client is answered meanwhile.
        let mut quick = UnixStream::connect(&path).unwrap();
        quick.write_all(b"stats\n").unwrap();
        quick.set_nonblocking(true).unwrap();
        let mut got = Vec::new();
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            s.turn(|r| {
                assert_eq!(r, "stats");
                Answer::Now("small\n".to_string())
            });
            let mut chunk = [0u8; 64];
            match quick.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
                Err(_) => assert!(Instant::now() < end, "quick client not answered"),
            }
        }
        assert_eq!(got, b"small\n");
        // Now the slow client reads, in small pieces, and gets every byte.
        slow.set_nonblocking(true).unwrap();
        let mut all = Vec::new();
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            s.turn(|_| Answer::Now(String::new()));
            let mut chunk = [0u8; 4096];
            match slow.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => all.extend_from_slice(&chunk[..n]),
                Err(_) => assert!(Instant::now() < end, "slow client not answered"),
            }
        }
        assert_eq!(all.len(), big.len());
        assert!(all == big.as_bytes());
        assert_eq!(s.counters().served, 2);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_silent_client_gets_the_default_and_a_reload_waits_for_its_build() {
        let d = dir("reload");
        let path = d.join("ctl.sock");
        let mut s = Server::new(bind(&path, Access::default()).unwrap(), Access::default());
        let silent = UnixStream::connect(&path).unwrap();
        let mut reload = UnixStream::connect(&path).unwrap();
        reload.write_all(b"reload\n").unwrap();
        let mut seen = Vec::new();
        let end = Instant::now() + Duration::from_secs(5);
        while seen.len() < 2 {
            assert!(Instant::now() < end);
            s.turn(|r| {
                seen.push(r.to_string());
                if r == "reload" {
                    Answer::AfterReload(1)
                } else {
                    Answer::Now("counters\n".to_string())
                }
            });
            std::thread::sleep(Duration::from_millis(5));
        }
        seen.sort();
        assert_eq!(seen, ["", "reload"]);
        let mut out = String::new();
        (&silent).read_to_string(&mut out).unwrap();
        assert_eq!(out, "counters\n");
        assert_eq!(s.clients(), 1, "the reload client waits");
        s.finish_reload(1, "ok: reloaded\n");
        let mut out = String::new();
        reload.read_to_string(&mut out).unwrap();
        assert_eq!(out, "ok: reloaded\n");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn clients_beyond_the_limit_are_told_the_gateway_is_busy() {
        let d = dir("busy");
        let path = d.join("ctl.sock");
        let mut s = Server::new(bind(&path, Access::default()).unwrap(), Access::default());
        let held: Vec<_> = (0..MAX_CLIENTS)
            .map(|_| {
                let mut c = UnixStream::connect(&path).unwrap();
                c.write_all(b"reload\n").unwrap();
                c
            })
            .collect();
        let end = Instant::now() + Duration::from_secs(5);
        while s.clients() < MAX_CLIENTS {
            assert!(Instant::now() < end);
            s.turn(|_| Answer::AfterReload(1));
        }
        let mut extra = UnixStream::connect(&path).unwrap();
        s.turn(|_| Answer::AfterReload(1));
        let mut out = String::new();
        extra.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("error: busy"), "{out}");
        assert_eq!(s.counters().busy, 1);
        drop(held);
        let _ = std::fs::remove_dir_all(&d);
    }
}
