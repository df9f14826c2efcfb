//! Setting the box's clock from NTP servers (SNTP, RFC 4330), in-process.
//!
//! RK3588 boards usually have no RTC battery: they boot at whatever time the
//! kernel starts with, and every event stamped then is wrong. Why here and
//! not busybox `ntpd`: the emulated board's busybox (Debian's) has no `ntpd`
//! applet and Yocto's is a build option, so a daemon would be one more thing
//! that differs between the image we test and the image we ship; this client
//! is one task on the runtime that already exists, with one 48-byte UDP
//! exchange per round (the `sntpc` crate speaks the protocol, `sntpc-net-tokio` lends it tokio's socket).
//!
//! A round asks the servers in order (the configured ones, else those the
//! DHCP lease offered, which `/etc/udhcpc.script` leaves in a file, else
//! [`FALLBACK`]) and takes
//! the first good answer: an offset of [`kernel::STEP_THRESHOLD_US`] or more
//! is stepped, a smaller one slewed, and the kernel is told its clock is
//! synchronised (which is what `clock::synchronized` and the events'
//! `clock_unsynced` flag read). The next round is [`RESYNC`] later, well
//! inside the 9 hours after which the kernel declares the clock unsynchronised
//! again by itself; after a failed round it retries sooner, with backoff.
//!
//! Bounded: at most [`MAX_SERVERS`] servers, the DHCP file read within
//! [`DHCP_FILE_MAX`] bytes, one socket per query, each query within
//! [`QUERY_TIMEOUT`]. No thread: host names resolve on the runtime's one
//! blocking thread (started with the runtime).

pub mod kernel;
mod server;
#[cfg(test)]
mod tests;

pub use kernel::{Kernel, KernelClock};
pub use server::{Server, ServerError};

use crate::backoff::{seed_from, Backoff, Jitter};
use crate::shutdown::Shutdown;
use std::fmt;
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

/// Servers asked per round, configured and offered together.
pub const MAX_SERVERS: usize = 8;
/// The DHCP servers file is read up to this many bytes.
pub const DHCP_FILE_MAX: u64 = 1024;
/// One query's bound: resolving, sending and the answer.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Time between good rounds.
pub const RESYNC: Duration = Duration::from_secs(15 * 60);
/// Retry after a failed round: from this ...
const RETRY_MIN: Duration = Duration::from_secs(8);
/// ... growing to this.
const RETRY_MAX: Duration = Duration::from_secs(5 * 60);

/// Where the board's udhcpc hook (through `vigil-system`) leaves the NTP
/// servers of the lease (DHCP option 42).
pub const DHCP_FILE: &str = "/run/vigil-ntp.dhcp";
/// Asked when nothing is configured and the lease offered no server (most
/// home routers offer none): the NTP Pool's public servers.
pub const FALLBACK: &str = "pool.ntp.org";

/// Where the client finds its servers.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// From the configuration (`[system] ntp`), asked in this order.
    pub configured: Vec<Server>,
    /// A file of server addresses separated by white space, written by the
    /// DHCP client; used when `configured` is empty.
    pub dhcp_file: Option<PathBuf>,
    /// Used when neither of the above gives a server.
    pub fallback: Vec<Server>,
}

impl Plan {
    /// The box's plan: `configured`, else the lease's, else [`FALLBACK`].
    pub fn for_box(configured: Vec<Server>) -> Plan {
        Plan {
            configured,
            dhcp_file: Some(PathBuf::from(DHCP_FILE)),
            fallback: Server::parse(FALLBACK).into_iter().collect(),
        }
    }

    /// The servers for the next round.
    fn servers(&self) -> Vec<Server> {
        if !self.configured.is_empty() {
            return self.configured.iter().take(MAX_SERVERS).cloned().collect();
        }
        let offered = self.dhcp_file.as_deref().map(offered).unwrap_or_default();
        if !offered.is_empty() {
            return offered;
        }
        self.fallback.iter().take(MAX_SERVERS).cloned().collect()
    }
}

/// The servers in the DHCP file, read within [`DHCP_FILE_MAX`] bytes; none
/// when it is absent or unreadable.
fn offered(path: &std::path::Path) -> Vec<Server> {
    let mut text = String::new();
    let read =
        std::fs::File::open(path).and_then(|f| f.take(DHCP_FILE_MAX).read_to_string(&mut text));
    if read.is_err() {
        return Vec::new();
    }
    text.split_whitespace()
        .filter_map(|s| Server::parse(s).ok())
        .take(MAX_SERVERS)
        .collect()
}

/// What a good round did to the clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Correction {
    /// The clock jumped by this many microseconds.
    Stepped(i64),
    /// The kernel slews this many microseconds away.
    Slewed(i64),
}

/// A good round: which server answered and what was done.
#[derive(Clone, Debug)]
pub struct Synced {
    /// The server that answered.
    pub server: Server,
    /// What was done to the clock.
    pub correction: Correction,
    /// The round trip of the answer, in microseconds.
    pub roundtrip_us: u64,
}

/// Why one server gave no usable time.
#[derive(Debug)]
pub enum QueryError {
    /// The name did not resolve.
    Resolve(std::io::Error),
    /// No UDP socket.
    Socket(std::io::Error),
    /// No answer within [`QUERY_TIMEOUT`].
    Timeout,
    /// An answer that is not a valid server answer, or one from a server
    /// that says it is not synchronised itself (`sntpc` checks the leap
    /// indicator, stratum, root distance and timestamps).
    Protocol(sntpc::Error),
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryError::Resolve(e) => write!(f, "cannot resolve: {e}"),
            QueryError::Socket(e) => write!(f, "no UDP socket: {e}"),
            QueryError::Timeout => write!(f, "no answer within {QUERY_TIMEOUT:?}"),
            QueryError::Protocol(e) => write!(f, "answer refused: {e:?}"),
        }
    }
}

impl std::error::Error for QueryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            QueryError::Resolve(e) | QueryError::Socket(e) => Some(e),
            _ => None,
        }
    }
}

/// Why a round did not set the clock.
#[derive(Debug)]
pub enum RoundError {
    /// No server is configured and DHCP offered none.
    NoServers,
    /// Every server failed; the last failure.
    NoAnswer {
        /// The last server asked.
        server: Server,
        /// Why it gave no time.
        error: QueryError,
    },
    /// A good answer, but the kernel refused the change (no `CAP_SYS_TIME`).
    Kernel(std::io::Error),
}

impl fmt::Display for RoundError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoundError::NoServers => {
                f.write_str("no NTP server: none configured ([system] ntp) and none from DHCP")
            }
            RoundError::NoAnswer { server, error } => {
                write!(f, "no NTP server answered; last, {server}: {error}")
            }
            RoundError::Kernel(e) => write!(f, "the kernel refused to set the clock: {e}"),
        }
    }
}

impl std::error::Error for RoundError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RoundError::NoAnswer { error, .. } => Some(error),
            RoundError::Kernel(e) => Some(e),
            RoundError::NoServers => None,
        }
    }
}

/// Asks one server for the clock's offset: `(offset_us, roundtrip_us)`.
async fn query(server: &Server) -> Result<(i64, u64), QueryError> {
    let ask = async {
        let addr = server.resolve().await.map_err(QueryError::Resolve)?;
        let bind: std::net::SocketAddr = if addr.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = tokio::net::UdpSocket::bind(bind)
            .await
            .map_err(QueryError::Socket)?;
        let context = sntpc::NtpContext::new(sntpc::StdTimestampGen::default());
        let socket = sntpc_net_tokio::UdpSocketWrapper::new(socket);
        sntpc::get_time(addr, &socket, context)
            .await
            .map_err(QueryError::Protocol)
    };
    let answer = tokio::time::timeout(QUERY_TIMEOUT, ask)
        .await
        .map_err(|_| QueryError::Timeout)??;
    Ok((answer.offset, answer.roundtrip))
}

/// One round: the first server that answers sets the clock.
pub async fn sync_once(plan: &Plan, clock: &mut dyn KernelClock) -> Result<Synced, RoundError> {
    let mut last = None;
    for server in plan.servers() {
        match query(&server).await {
            Ok((offset_us, roundtrip_us)) => {
                let correction = if offset_us.abs() >= kernel::STEP_THRESHOLD_US {
                    clock.step(offset_us).map_err(RoundError::Kernel)?;
                    Correction::Stepped(offset_us)
                } else {
                    clock.slew(offset_us).map_err(RoundError::Kernel)?;
                    Correction::Slewed(offset_us)
                };
                // Half the round trip bounds how wrong the answer can be;
                // a millisecond more for the server's own precision.
                let max_error = i64::try_from(roundtrip_us / 2)
                    .unwrap_or(i64::MAX)
                    .saturating_add(1_000);
                clock
                    .mark_synchronized(max_error)
                    .map_err(RoundError::Kernel)?;
                return Ok(Synced {
                    server,
                    correction,
                    roundtrip_us,
                });
            }
            Err(error) => last = Some((server, error)),
        }
    }
    match last {
        Some((server, error)) => Err(RoundError::NoAnswer { server, error }),
        None => Err(RoundError::NoServers),
    }
}

/// Keeps the clock set until shutdown: a round now, then every [`RESYNC`],
/// sooner (with backoff) after a failed round. Logs the first failure of a
/// run of failures and every good round that stepped the clock.
pub async fn run(plan: Plan, mut clock: Box<dyn KernelClock>, mut shutdown: Shutdown) {
    let mut backoff = Backoff::new(
        RETRY_MIN,
        RETRY_MAX,
        Jitter::Full,
        Duration::ZERO,
        seed_from("timesync"),
    );
    let mut failing = false;
    loop {
        let wait = match sync_once(&plan, clock.as_mut()).await {
            Ok(synced) => {
                match synced.correction {
                    Correction::Stepped(us) => log::info!(
                        "clock: stepped by {:+.3} s from {} (round trip {} ms)",
                        us as f64 / 1e6,
                        synced.server,
                        synced.roundtrip_us / 1000
                    ),
                    Correction::Slewed(us) if failing => log::info!(
                        "clock: synchronised with {} again (offset {:+.3} s)",
                        synced.server,
                        us as f64 / 1e6
                    ),
                    Correction::Slewed(_) => {}
                }
                failing = false;
                backoff.reset();
                RESYNC
            }
            Err(e) => {
                if !failing {
                    log::warn!("clock: {e}; retrying");
                }
                failing = true;
                backoff.next_delay()
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.requested() => return,
        }
    }
}
