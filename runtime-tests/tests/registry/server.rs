//! A registry that misbehaves on purpose: a plain HTTP/1.1 server on
//! 127.0.0.1 whose every answer a test decides, and which counts what it
//! was asked. (The well-behaved registry, TLS and auth, is Debian's
//! docker-registry in integration/clients/registry.bats.)

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Request {
    pub path: String,
    pub headers: HashMap<String, String>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// START of a `Range: bytes=START-` header.
    pub fn range_start(&self) -> Option<usize> {
        self.header("range")?
            .strip_prefix("bytes=")?
            .trim_end_matches('-')
            .parse()
            .ok()
    }
}

pub enum Reply {
    /// Status, headers, body; the Content-Length is the body's.
    Full(u16, Vec<(String, String)>, Vec<u8>),
    /// Claims `claimed` bytes, sends the body given, then closes.
    Cut(u16, Vec<(String, String)>, Vec<u8>, usize),
    /// Reads the request and never answers.
    Stall,
}

pub fn ok(ctype: &str, body: Vec<u8>) -> Reply {
    Reply::Full(200, vec![("Content-Type".into(), ctype.into())], body)
}

pub fn status(code: u16) -> Reply {
    Reply::Full(
        code,
        vec![],
        format!("{{\"errors\":[{{\"code\":\"E{code}\"}}]}}").into_bytes(),
    )
}

type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

/// What the log holds for a connection that opened with a TLS handshake.
pub const TLS_PROBE: &str = "<tls-probe>";

pub struct Server {
    pub port: u16,
    /// Every path asked for, in order (with " range=N" when resumed).
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    pub fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Server {
        Server::start_on("127.0.0.1", handler)
    }

    /// On another loopback address: another host, as far as URLs go.
    pub fn start_on(
        addr: &str,
        handler: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> Server {
        let listener = TcpListener::bind((addr, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let l2 = log.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (h, log) = (handler.clone(), l2.clone());
                std::thread::spawn(move || serve(conn, &*h, &log));
            }
        });
        Server { port, log }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn asked(&self, needle: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.contains(needle))
            .count()
    }

    pub fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

fn serve(conn: TcpStream, handler: &Handler, log: &Mutex<Vec<String>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    // A TLS ClientHello (hpcc probing for HTTPS on a loopback host):
    // logged, so a test that wants no connection at all sees it, then
    // closed, as a plain HTTP server that is not Go's would.
    let mut first = [0u8; 1];
    match conn.peek(&mut first) {
        Ok(1) if first[0] == 0x16 => {
            log.lock().unwrap().push(TLS_PROBE.to_string());
            return;
        }
        Ok(1) => {}
        _ => return,
    }
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut conn = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let req = Request { path, headers };
        let mut entry = req.path.clone();
        if let Some(r) = req.range_start() {
            entry.push_str(&format!(" range={r}"));
        }
        log.lock().unwrap().push(entry);
        let (code, hdrs, body, claimed, close) = match handler(&req) {
            Reply::Full(c, h, b) => {
                let n = b.len();
                (c, h, b, n, false)
            }
            Reply::Cut(c, h, b, n) => (c, h, b, n, true),
            Reply::Stall => {
                std::thread::sleep(Duration::from_secs(120));
                return;
            }
        };
        let mut head = format!("HTTP/1.1 {code} X\r\nContent-Length: {claimed}\r\n");
        for (k, v) in hdrs {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        if conn.write_all(head.as_bytes()).is_err() || conn.write_all(&body).is_err() {
            return;
        }
        let _ = conn.flush();
        if close {
            let _ = conn.shutdown(std::net::Shutdown::Both);
            return;
        }
        // Drain nothing more: requests have no bodies.
        let _ = (&mut reader).take(0).read(&mut [0u8; 0]);
    }
}
