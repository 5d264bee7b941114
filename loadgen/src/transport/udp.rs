//! UDP channels: one connected socket per channel, batched with `sendmmsg`/`recvmmsg`.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use socket2::Socket;

use super::Received;
use crate::net::{self, DATAGRAM_BYTES_MAX, Epoll, MsgBatch};

struct Sock {
    socket: Socket,
    port: u16,
}

pub(crate) struct Datagrams {
    socks: Vec<Sock>,
    epoll: Epoll,
    recv: MsgBatch,
}

impl Datagrams {
    /// `channels` sockets bound to `bind` (ephemeral ports), connected to `target`.
    pub(crate) fn open(
        bind: SocketAddr,
        target: SocketAddr,
        channels: usize,
        batch: usize,
    ) -> io::Result<Self> {
        let epoll = Epoll::new(channels)?;
        let mut socks = Vec::with_capacity(channels);
        for i in 0..channels {
            let (socket, port) = net::udp_socket(bind, Some(target), false)?;
            epoll.add(socket.as_raw_fd(), i as u64)?;
            socks.push(Sock { socket, port });
        }
        Ok(Self {
            socks,
            epoll,
            recv: MsgBatch::new(batch, DATAGRAM_BYTES_MAX),
        })
    }

    pub(crate) fn channels(&self) -> usize {
        self.socks.len()
    }

    pub(crate) fn port(&self, ch: usize) -> u16 {
        self.socks[ch].port
    }

    pub(crate) fn send(&mut self, ch: usize, batch: &mut MsgBatch, n: usize) -> usize {
        let fd = self.socks[ch].socket.as_raw_fd();
        let mut done = 0;
        // A full socket buffer takes part of a batch; try the rest once more, then leave it to
        // retransmission (or the timeout) like a real UDP client would.
        for _ in 0..2 {
            let sent = if done == 0 {
                batch.send(fd, n, false)
            } else {
                // Rare path: the unsent tail, one message at a time.
                let mut sent = 0;
                for i in done..n {
                    if net::send_one(fd, batch.msg(i)).is_err() {
                        break;
                    }
                    sent += 1;
                }
                Ok(sent)
            };
            match sent {
                Ok(k) => done += k,
                Err(_) => break,
            }
            if done == n {
                break;
            }
        }
        done
    }

    pub(crate) fn send_one(&mut self, ch: usize, msg: &[u8]) -> bool {
        net::send_one(self.socks[ch].socket.as_raw_fd(), msg).is_ok()
    }

    pub(crate) fn wait(&mut self, timeout_ns: u64, ready: &mut Vec<usize>) -> io::Result<()> {
        ready.clear();
        ready.extend(self.epoll.wait(timeout_ns)?);
        Ok(())
    }

    /// One recvmmsg. An error (ECONNREFUSED: an ICMP port unreachable from a target that is
    /// not listening yet) is the caller's to count.
    pub(crate) fn recv(&mut self, ch: usize) -> io::Result<Received> {
        let fd = self.socks[ch].socket.as_raw_fd();
        let n = self.recv.recv(fd, libc::MSG_DONTWAIT, false)?;
        Ok(Received {
            messages: n,
            drained: n < self.recv.capacity(),
        })
    }

    pub(crate) fn message(&self, i: usize) -> &[u8] {
        self.recv.msg(i)
    }
}
