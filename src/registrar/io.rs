//! What goes into the registrar and what comes out, whatever the transport.
//!
//! A request comes in with its [`Source`] (transport, remote address, listen index and,
//! on a connection, the connection's id); the registrar answers with one [`Action`]. The
//! runtime carries the action out: it sends a reply (on the datagram socket of the listen
//! index, or on the connection, possibly on another core), forwards the request to the
//! core that owns it, or counts a drop. The registrar never learns how.

use std::net::SocketAddr;

use crate::location::Transport;
use crate::sip;

/// A connection held by one core: its index there and a generation, so an id whose
/// connection closed and whose slot was reused names nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId {
    /// The core whose loop holds the connection (answers cross the mesh to it).
    pub core: u16,
    /// The connection's slot on that core.
    pub slot: u32,
    /// Bumped each time the slot is reused.
    pub generation: u32,
}

impl From<ConnId> for crate::location::FlowId {
    fn from(c: ConnId) -> Self {
        Self {
            core: c.core,
            slot: c.slot,
            generation: c.generation,
        }
    }
}

impl From<crate::location::FlowId> for ConnId {
    fn from(f: crate::location::FlowId) -> Self {
        Self {
            core: f.core,
            slot: f.slot,
            generation: f.generation,
        }
    }
}

/// Where a request came from and how it arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Source {
    /// The transport it arrived on.
    pub transport: Transport,
    /// The remote address and port it came from.
    pub remote: SocketAddr,
    /// Index of the local listening address (`--listen` order) it arrived on.
    pub listen: u16,
    /// The connection it arrived on (stream transports); `None` for datagrams.
    pub conn: Option<ConnId>,
}

impl Source {
    /// A datagram from `remote` on listen address `listen`.
    pub const fn udp(remote: SocketAddr, listen: u16) -> Self {
        Self {
            transport: Transport::Udp,
            remote,
            listen,
            conn: None,
        }
    }
}

/// Where a response goes (RFC 3261 §18.2.2), as [`reply_destination`] decides it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Destination {
    /// The transport to send on (the request's).
    pub transport: Transport,
    /// The address to send to (datagrams), or to connect to if the connection is gone.
    pub addr: SocketAddr,
    /// The listen index the response leaves from (the one the request reached).
    pub listen: u16,
    /// The connection to write it on, first (stream transports).
    pub conn: Option<ConnId>,
}

/// What the registrar wants done with a request it was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// A response was written to the reply buffer: send it to `to`, once the journal is
    /// durable up to `durable_after` (the journal position its answer reflects; the
    /// runtime holds it in sync durability, and sends it at once otherwise).
    Reply {
        /// Where it goes.
        to: Destination,
        /// Journal bytes (since start) that must be durable before it leaves.
        durable_after: u64,
    },
    /// Another shard owns it (the owner hash, see `route`): nothing was touched. The
    /// runtime sends the request to `placement`'s owner, which prepares it again.
    Forward {
        /// The owner hash.
        hash: u64,
    },
    /// Shared location: the request waits for the backend to commit
    /// [`Registrar::commit_request`](super::Registrar::commit_request)`(id)`; the
    /// runtime then calls [`Registrar::resume`](super::Registrar::resume) with its
    /// answer, which gives the reply.
    Commit {
        /// The pending commit.
        id: super::shared::CommitId,
    },
    /// Handled, nothing to send (an ACK absorbed).
    Nothing,
    /// Dropped without an answer, and counted.
    Dropped(DropReason),
}

/// Why a datagram was dropped without an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// A CRLF keep-alive (RFC 5626 §3.5.1).
    KeepAlive,
    /// A SIP response: a registrar sends no requests, so none is expected.
    Response,
    /// Unparseable, and no Via to answer to.
    Unanswerable,
    /// Larger than the datagram limit.
    TooLarge,
}

/// The default port of a transport when the Via's sent-by names none (RFC 3261 §18.2.2,
/// §19.1.2: 5060, or 5061 for TLS).
const fn default_port(transport: Transport) -> u16 {
    match transport {
        Transport::Tls | Transport::Wss => 5061,
        Transport::Udp | Transport::Tcp | Transport::Ws => 5060,
    }
}

/// Where a response goes (RFC 3261 §18.2.2):
/// - over a connection (TCP, TLS, WS), on the connection the request came in on; if it
///   has closed, to the source address (the `received` address) at the sent-by port;
/// - over UDP, to the source address at the source port when the request asked for
///   `rport` (RFC 3581 §4), else at the sent-by port.
///
/// The sent-by port defaults to the transport's (5060, 5061 for TLS). `maddr` is not
/// honoured: a registrar answers unicast only.
pub fn reply_destination(via: &sip::Via<'_>, source: Source) -> Destination {
    let port = if source.conn.is_none() && via.rport.is_some() {
        source.remote.port()
    } else {
        via.port.unwrap_or(default_port(source.transport))
    };
    Destination {
        transport: source.transport,
        addr: SocketAddr::new(source.remote.ip(), port),
        listen: source.listen,
        conn: source.conn,
    }
}

impl super::Registrar {
    /// Answer a message from a stream that cannot be framed (RFC 3261 §18.3: no or a
    /// bad Content-Length, 400; larger than the connection takes, 513) with `status`
    /// and `reason`, addressed from what `head` holds (the header section, possibly cut
    /// short). Nothing else is read or changed. Unanswerable without a usable top Via.
    pub fn refuse_stream(
        &mut self,
        source: Source,
        head: &[u8],
        status: u16,
        reason: &str,
        arena: &bumpalo::Bump,
        out: &mut Vec<u8>,
    ) -> Action {
        let echo = match sip::parse_request(head, arena) {
            Ok(req) => req.echo,
            Err(sip::Rejected {
                echo: Some(echo), ..
            }) => echo,
            Err(_) => return Action::Dropped(DropReason::Unanswerable),
        };
        out.clear();
        self.respond_rejected(source, &echo, status, reason, out);
        Action::Reply {
            to: reply_destination(&echo.top_via, source),
            durable_after: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn via(port: Option<u16>, rport: bool) -> sip::Via<'static> {
        sip::Via {
            raw: b"SIP/2.0/UDP h",
            transport: sip::Transport::Udp,
            host: b"h",
            port,
            branch: None,
            rport: rport.then_some(None),
            received: None,
            maddr: None,
            params: b"",
            rport_insert_at: 0,
        }
    }

    const REMOTE: &str = "192.0.2.7:40001";

    #[test]
    fn udp_uses_rport_or_the_sent_by_port() {
        let src = Source::udp(REMOTE.parse().unwrap(), 2);
        let d = reply_destination(&via(Some(5070), true), src);
        assert_eq!(d.addr, REMOTE.parse().unwrap());
        assert_eq!(d.listen, 2);
        let d = reply_destination(&via(Some(5070), false), src);
        assert_eq!(d.addr, "192.0.2.7:5070".parse().unwrap());
        let d = reply_destination(&via(None, false), src);
        assert_eq!(d.addr, "192.0.2.7:5060".parse().unwrap());
    }

    #[test]
    fn a_connection_answers_on_itself_with_the_transport_default_port() {
        let conn = ConnId {
            core: 1,
            slot: 9,
            generation: 3,
        };
        let src = Source {
            transport: Transport::Tls,
            remote: REMOTE.parse().unwrap(),
            listen: 0,
            conn: Some(conn),
        };
        // rport is a UDP rule (RFC 3581): the connection decides.
        let d = reply_destination(&via(None, true), src);
        assert_eq!(d.conn, Some(conn));
        assert_eq!(d.transport, Transport::Tls);
        assert_eq!(d.addr, "192.0.2.7:5061".parse().unwrap());
    }
}
