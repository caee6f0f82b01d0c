//! The public edge under abuse, against the gateway binary: a client that never finishes its
//! request head is dropped, a body that never finishes gets 408, requests beyond the in-flight
//! cap are shed at once with 503 and `Retry-After`, and beyond the connection cap the gateway
//! stops accepting until a connection closes — after which it answers again.

use crate::gateway_env;
use ck8s_testkit::process::{ServiceProcess, free_port, http_get};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long a test waits for something that must happen before calling it a failure.
const GUARD: Duration = Duration::from_secs(15);

fn gateway(limits: &[(&str, &str)]) -> ServiceProcess {
    // control-plane is not needed: these requests never reach it.
    let mut env = gateway_env(&format!("http://127.0.0.1:{}", free_port()));
    env.extend(limits.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    ServiceProcess::start(crate::BIN, &env, &["http", "admin"])
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(GUARD)).unwrap();
    s
}

/// Reads until the server closes; `None` when the guard ran out first.
fn read_to_close(s: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// A signed-looking webhook POST (the gateway reads the body before it checks the signature)
/// whose body is announced as 100 bytes and stops after 10.
fn slow_body(addr: SocketAddr) -> TcpStream {
    let mut s = connect(addr);
    let head = format!(
        "POST /api/v1/webhooks/github HTTP/1.1\r\nHost: {addr}\r\nX-GitHub-Event: ping\r\nX-GitHub-Delivery: d-1\r\n\
         X-Hub-Signature-256: sha256={zeros}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"zen\": \"a",
        zeros = "0".repeat(64)
    );
    s.write_all(head.as_bytes()).unwrap();
    s
}

#[test]
fn slow_heads_are_dropped_and_slow_bodies_time_out() {
    let gw = gateway(&[("CODEXK8S_HTTP_HEADER_READ_TIMEOUT", "500ms"), ("CODEXK8S_HTTP_REQUEST_TIMEOUT", "1s")]);
    let addr = gw.addr("http");

    // Half a request head, then silence: the gateway closes the connection.
    let mut s = connect(addr);
    s.write_all(b"POST /api/v1/webhooks/github HTTP/1.1\r\nHost: x\r\n").unwrap();
    let answer = read_to_close(&mut s);
    assert!(answer.is_some(), "a half-sent head held the connection past {GUARD:?}");

    // A body that never finishes: 408, and the connection ends.
    let mut s = slow_body(addr);
    let answer = read_to_close(&mut s).expect("a slow body held the connection past the guard");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // A well-behaved client is still served.
    assert_eq!(http_get(addr, "/healthz").0, 200);
}

#[test]
fn beyond_the_caps_requests_are_shed_and_connections_wait() {
    let gw = gateway(&[
        ("CODEXK8S_HTTP_MAX_IN_FLIGHT", "2"),
        ("CODEXK8S_HTTP_MAX_CONNECTIONS", "3"),
        ("CODEXK8S_HTTP_REQUEST_TIMEOUT", "60s"),
        ("CODEXK8S_HTTP_HEADER_READ_TIMEOUT", "60s"),
    ]);
    let addr = gw.addr("http");

    // Two requests whose bodies never finish take both in-flight slots; a third request is shed
    // at once. (The two are handled once the gateway has read their heads: ask until it has. The
    // gateway may read a probe's head before a held one's, and then sheds the held one: open it
    // again.)
    let mut held = vec![slow_body(addr), slow_body(addr)];
    let started = Instant::now();
    let shed = loop {
        for h in held.iter_mut() {
            if answered(h) {
                *h = slow_body(addr);
            }
        }
        let (status, body) = raw_get(addr, "/healthz");
        if status.starts_with("HTTP/1.1 503") {
            break body;
        }
        assert!(started.elapsed() < GUARD, "never shed: {status}\n{}", gw.output());
    };
    assert!(shed.to_ascii_lowercase().contains("retry-after: 1") && shed.contains("busy"), "{shed}");

    // With the third connection open and idle, the cap of three is reached: a fourth client's
    // request is not taken while they stay open…
    let idle = connect(addr);
    let mut fourth = connect(addr);
    fourth.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    fourth.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut byte = [0u8; 1];
    let early = fourth.read(&mut byte);
    assert!(early.is_err(), "a connection beyond the cap was served: {early:?}");
    // …and is served as soon as one closes (still shed: both slots are held).
    drop(idle);
    fourth.set_read_timeout(Some(GUARD)).unwrap();
    let answer = read_to_close(&mut fourth).expect("the waiting connection was never served");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");

    // Once the slow clients go away, everything is served again.
    drop(held);
    let started = Instant::now();
    while http_get(addr, "/healthz").0 != 200 {
        assert!(started.elapsed() < GUARD, "never served again");
    }
    // The admin port has caps of its own: the public port's load never blinds it.
    assert_eq!(http_get(gw.addr("admin"), "/metrics").0, 200);
}

/// Whether the gateway has already answered (or closed) a held connection.
fn answered(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let answered = !matches!(s.peek(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    s.set_nonblocking(false).unwrap();
    answered
}

/// A GET on a fresh connection: (status line, whole answer).
fn raw_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = connect(addr);
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let answer = read_to_close(&mut s).unwrap_or_default();
    (answer.lines().next().unwrap_or_default().to_string(), answer)
}
