//! The UDP sockets QUIC runs on: the hub's endpoint and the agents' shared client endpoints
//! open them here, so both get the same buffers.
//!
//! The kernel's default receive buffer (about 208 KiB on Linux) overflows when many handshakes
//! arrive at once — a hub accepting a burst of agents, or a process spawning many agents over
//! one shared endpoint — and every datagram dropped in a handshake costs a retransmission
//! timeout (about a second before the first round trip is known). Both buffers are therefore
//! asked for [`SOCKET_BUFFER_BYTES`]; the kernel caps the request at `net.core.rmem_max` and
//! `net.core.wmem_max`, and a smaller buffer than asked for is not an error.

use std::net::{SocketAddr, UdpSocket};

/// The receive and send buffer size asked for every QUIC socket.
pub const SOCKET_BUFFER_BYTES: usize = 4 << 20;

/// A UDP socket bound to `addr`, with [`SOCKET_BUFFER_BYTES`] buffers where the kernel allows.
pub fn quic_socket(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    // Best effort: the kernel's limits decide what is granted.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_bind_with_buffers_at_least_the_default() {
        let socket = quic_socket("127.0.0.1:0".parse().unwrap()).unwrap();
        assert!(socket.local_addr().unwrap().port() > 0);
        let sized = socket2::SockRef::from(&socket);
        // Linux reports twice the size granted; the default is about 208 KiB.
        assert!(sized.recv_buffer_size().unwrap() >= 208 * 1024);
    }
}
