//! A relay on 127.0.0.1 that holds every chunk for a while each way: a
//! registry some way off, for figure 4's release rows.

use super::*;

/// A TCP relay on 127.0.0.1 to another port there that holds every chunk for
/// `delay` in each direction: a registry `2 × delay` of round trip away, as
/// one across the internet is, with no limit on bandwidth. Stopped on drop.
pub(super) struct DelayedRelay {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl DelayedRelay {
    pub(super) fn start(target: u16, delay: Duration) -> Result<DelayedRelay> {
        use std::{net::TcpStream, sync::atomic::Ordering};
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        let port = listener.local_addr()?.port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let accept = std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let (Ok(client), Ok(server)) = (client, TcpStream::connect(("127.0.0.1", target)))
                else {
                    continue;
                };
                for (from, to) in [(&client, &server), (&server, &client)] {
                    if let (Ok(from), Ok(to)) = (from.try_clone(), to.try_clone()) {
                        Self::pump(from, to, delay);
                    }
                }
            }
        });
        Ok(DelayedRelay {
            port,
            stop,
            accept: Some(accept),
        })
    }

    /// Copies `from` to `to`, each chunk `delay` after it arrived; ends (and
    /// closes `to` for writing) when `from` does.
    fn pump(mut from: std::net::TcpStream, mut to: std::net::TcpStream, delay: Duration) {
        use std::io::{Read, Write};
        let (sender, receiver) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
        std::thread::spawn(move || {
            let mut buffer = vec![0u8; 64 * 1024];
            while let Ok(read) = from.read(&mut buffer) {
                if read == 0
                    || sender
                        .send((Instant::now() + delay, buffer[..read].to_vec()))
                        .is_err()
                {
                    break;
                }
            }
        });
        std::thread::spawn(move || {
            for (due, chunk) in receiver {
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                if to.write_all(&chunk).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(std::net::Shutdown::Write);
        });
    }

    pub(super) fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for DelayedRelay {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wakes the accept loop so it sees `stop`.
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relay_passes_every_byte_both_ways_a_round_trip_later() {
        use std::io::{Read, Write};
        let server = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let target = server.local_addr().unwrap().port();
        // Echoes what it reads until the client stops writing.
        let echo = std::thread::spawn(move || {
            let (mut stream, _) = server.accept().unwrap();
            let mut received = Vec::new();
            stream.read_to_end(&mut received).unwrap();
            stream.write_all(&received).unwrap();
        });
        let delay = Duration::from_millis(30);
        let relay = DelayedRelay::start(target, delay).unwrap();
        // More than one chunk of the relay's buffer.
        let sent: Vec<u8> = (0..200_000u32).map(|n| (n % 251) as u8).collect();
        let start = Instant::now();
        let mut client = std::net::TcpStream::connect(relay.host()).unwrap();
        client.write_all(&sent).unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let mut echoed = Vec::new();
        client.read_to_end(&mut echoed).unwrap();
        assert!(echoed == sent, "every byte, in order");
        assert!(
            start.elapsed() >= 2 * delay,
            "held {delay:?} each way: {:?}",
            start.elapsed()
        );
        echo.join().unwrap();
        drop(relay);
    }
}
