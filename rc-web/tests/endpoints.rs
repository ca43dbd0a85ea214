//! Starts the real rc-web binary on 127.0.0.1 with a free port and talks HTTP to it.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    process::{Child, ChildStderr, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

struct Server {
    child: Child,
    address: SocketAddr,
    log_lines: mpsc::Receiver<String>,
}

impl Server {
    /// Spawns rc-web with PORT=0 and reads the bound address from its log.
    fn start() -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rc-web"))
            .env("BIND_ADDRESS", "127.0.0.1")
            .env("PORT", "0")
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn rc-web");
        let (sender, log_lines) = mpsc::channel();
        forward_lines(child.stderr.take().unwrap(), sender);
        let first_line = log_lines
            .recv_timeout(Duration::from_secs(10))
            .expect("rc-web printed no startup line within 10 s");
        let address = first_line
            .rsplit("listening on ")
            .next()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or_else(|| panic!("no address in startup line {first_line:?}"));
        Server {
            child,
            address,
            log_lines,
        }
    }

    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let mut stream = TcpStream::connect(self.address).expect("connect to rc-web");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.address,
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body).unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).expect("read response");
        Reply::parse(&raw)
    }

    fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let reply = self.request("GET", path, &[], b"");
        let json = serde_json::from_slice(&reply.body)
            .unwrap_or_else(|error| panic!("{path}: body is not JSON ({error}): {:?}", reply.body));
        (reply.status, json)
    }

    /// Sends a signal with the system `kill` and waits (bounded) for the exit.
    fn stop_with(mut self, signal: &str) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-s", signal, &pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill -s {signal} {pid} failed");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "rc-web did not stop within 10 s of {signal}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn logged_lines(&self) -> Vec<String> {
        self.log_lines.try_iter().collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn forward_lines(stderr: ChildStderr, sender: mpsc::Sender<String>) {
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn parse(raw: &[u8]) -> Reply {
        let split = raw
            .windows(4)
            .position(|window| window == b"\r\n\r\n")
            .expect("response has no header end");
        let head = String::from_utf8_lossy(&raw[..split]).to_string();
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|status_line| status_line.split_whitespace().nth(1))
            .and_then(|code| code.parse().ok())
            .expect("status line");
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
            .collect();
        Reply {
            status,
            headers,
            body: raw[split + 4..].to_vec(),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

#[test]
fn every_endpoint_answers() {
    let server = Server::start();

    let (status, health) = server.get_json("/healthz");
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));

    let (status, ready) = server.get_json("/readyz");
    assert_eq!((status, ready["status"].as_str()), (200, Some("ready")));

    let (status, version) = server.get_json("/version");
    assert_eq!(status, 200);
    assert_eq!(version["name"], "rc-web");
    assert_eq!(version["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(version["arch"], std::env::consts::ARCH);

    let (status, hello) = server.get_json("/hello");
    assert_eq!(
        (status, hello["message"].as_str()),
        (200, Some("Hello, world!"))
    );
    let (_, hello) = server.get_json("/hello?name=arm64");
    assert_eq!(hello["message"], "Hello, arm64!");

    let payload = br#"{"ping":[1,2,3]}"#;
    let echoed = server.request(
        "POST",
        "/echo",
        &[("Content-Type", "application/json")],
        payload,
    );
    assert_eq!(echoed.status, 200);
    assert_eq!(echoed.body, payload);
    assert_eq!(echoed.header("content-type"), Some("application/json"));

    let missing = server.request("GET", "/nope", &[], b"");
    assert_eq!(missing.status, 404);
    let wrong_method = server.request("GET", "/echo", &[], b"");
    assert_eq!(wrong_method.status, 405);

    let status = server.stop_with("TERM");
    assert!(
        status.success(),
        "rc-web exited with {status} after SIGTERM"
    );
}

#[test]
fn requests_are_logged_and_sigint_stops_gracefully() {
    let server = Server::start();
    server.get_json("/healthz");
    server.request("POST", "/echo", &[], b"x");
    // The log line is written after the response; give the reader thread a moment.
    thread::sleep(Duration::from_millis(200));
    let lines = server.logged_lines();
    assert!(
        lines.iter().any(|line| line.contains("GET /healthz 200")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|line| line.contains("POST /echo 200")),
        "{lines:?}"
    );
    let status = server.stop_with("INT");
    assert!(status.success(), "rc-web exited with {status} after SIGINT");
}

#[test]
fn bad_configuration_exits_with_a_clear_message() {
    let output = Command::new(env!("CARGO_BIN_EXE_rc-web"))
        .env("PORT", "not-a-port")
        .output()
        .expect("spawn rc-web");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("PORT=\"not-a-port\" is not a port number"),
        "{stderr}"
    );
}
