//! A minimal Hugging Face Hub on 127.0.0.1 for tests (feature `mock-server`).
//!
//! It serves the URL layout and headers `hf-hub` relies on: `GET|HEAD
//! /{owner}/{name}/resolve/{revision}/{file}` answers with `x-repo-commit` and `etag`; LFS
//! files answer `302` to `/cdn/{sha256}` with `x-linked-etag` (the sha256) and `x-linked-size`,
//! like the real Hub's redirect to its CDN; bodies honour `Range: bytes=A-[B]` with `206` and
//! `Content-Range`. Unknown repositories or files get `404`. Every request is logged so tests
//! can count them, and faults can be injected: a connection dropped mid-body, corrupt bytes.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

use crate::hub::hex;

/// The commit every mock repository is at.
pub const MOCK_COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

#[derive(Debug, Clone)]
struct MockFile {
    data: Vec<u8>,
    lfs: bool,
    sha256: String,
}

#[derive(Debug, Default)]
struct State {
    /// (repo, file) -> file.
    files: HashMap<(String, String), MockFile>,
    /// One line per request: `METHOD PATH [RANGE]`.
    log: Vec<String>,
    /// sha256 -> bytes after which the next body response is cut off (one-shot).
    interrupt: HashMap<String, usize>,
    /// sha256s whose bodies are served with one byte flipped.
    corrupt: Vec<String>,
}

/// A running mock Hub; stops when dropped.
#[derive(Debug)]
pub struct MockHub {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MockHub {
    /// Starts a server on an ephemeral port of 127.0.0.1.
    pub fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (state.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    // One request per connection (`Connection: close`); errors only end it.
                    let _ = serve(stream, addr, &s);
                }
            }
        });
        Ok(Self { addr, state, stop, thread: Some(thread) })
    }

    /// The base URL to use as `HF_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds a file to a repository (`owner/name`); `lfs` files are redirected to the CDN path
    /// and carry their sha256 in `x-linked-etag`, like the Hub's large files.
    pub fn add_file(&self, repo: &str, file: &str, data: Vec<u8>, lfs: bool) {
        let sha256 = hex(&Sha256::digest(&data));
        let mut state = self.state.lock().unwrap();
        state.files.insert((repo.to_string(), file.to_string()), MockFile { data, lfs, sha256 });
    }

    /// The next body response of that file sends only its first `after` bytes, then closes the
    /// connection (the headers still announce the full length).
    pub fn interrupt_once(&self, repo: &str, file: &str, after: usize) {
        let mut state = self.state.lock().unwrap();
        let sha = state.files[&(repo.to_string(), file.to_string())].sha256.clone();
        state.interrupt.insert(sha, after);
    }

    /// Serves that file with its first byte changed while still announcing the right sha256.
    pub fn corrupt(&self, repo: &str, file: &str) {
        let mut state = self.state.lock().unwrap();
        let sha = state.files[&(repo.to_string(), file.to_string())].sha256.clone();
        state.corrupt.push(sha);
    }

    /// The requests so far, one `METHOD PATH [RANGE]` line each.
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().log.clone()
    }
}

impl Drop for MockHub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the accept loop
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answers one request.
fn serve(stream: TcpStream, addr: SocketAddr, state: &Mutex<State>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
    let mut range = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("range") {
                range = Some(value.trim().to_string());
            }
        }
    }
    let mut out = stream;
    let mut state = state.lock().unwrap();
    state.log.push(format!("{method} {path}{}", range.as_deref().map(|r| format!(" {r}")).unwrap_or_default()));

    if let Some(sha) = path.strip_prefix("/cdn/") {
        let Some(file) = state.files.values().find(|f| f.sha256 == sha).cloned() else {
            return respond(&mut out, "404 Not Found", &[], b"", method == "HEAD");
        };
        let extra = [("etag".to_string(), format!("\"{sha}\""))];
        return send_body(&mut out, &mut state, &file, range.as_deref(), &extra, method == "HEAD");
    }

    // /{owner}/{name}/resolve/{revision}/{file}
    let segments: Vec<&str> = path.trim_start_matches('/').splitn(5, '/').collect();
    let found = match segments.as_slice() {
        [owner, name, "resolve", _revision, file] => {
            state.files.get(&(format!("{owner}/{name}"), file.to_string())).cloned()
        }
        _ => None,
    };
    let Some(file) = found else {
        let headers = [("x-error-code".to_string(), "RepoNotFound".to_string())];
        return respond(&mut out, "404 Not Found", &headers, b"Repository not found", method == "HEAD");
    };
    let mut headers = vec![("x-repo-commit".to_string(), MOCK_COMMIT.to_string())];
    if file.lfs {
        headers.push(("x-linked-etag".to_string(), format!("\"{}\"", file.sha256)));
        headers.push(("x-linked-size".to_string(), file.data.len().to_string()));
        headers.push(("etag".to_string(), format!("\"{}\"", &file.sha256[..40])));
        headers.push(("location".to_string(), format!("http://{addr}/cdn/{}", file.sha256)));
        return respond(&mut out, "302 Found", &headers, b"", method == "HEAD");
    }
    // A git blob's etag is its git sha1; any 40-hex value serves here.
    headers.push(("etag".to_string(), format!("\"{}\"", &file.sha256[..40])));
    send_body(&mut out, &mut state, &file, range.as_deref(), &headers, method == "HEAD")
}

/// Sends a file's bytes, or the requested range of them, with the fault injections applied.
fn send_body(
    out: &mut TcpStream,
    state: &mut State,
    file: &MockFile,
    range: Option<&str>,
    headers: &[(String, String)],
    head: bool,
) -> std::io::Result<()> {
    let total = file.data.len();
    let mut data = file.data.clone();
    if state.corrupt.contains(&file.sha256) && !data.is_empty() {
        data[0] ^= 0xff;
    }
    let mut headers = headers.to_vec();
    let (status, start, end) = match range.and_then(|r| parse_range(r, total)) {
        Some((a, b)) => {
            headers.push(("content-range".to_string(), format!("bytes {a}-{b}/{total}")));
            ("206 Partial Content", a, b + 1)
        }
        None => ("200 OK", 0, total),
    };
    let mut body = &data[start..end];
    let mut cut = false;
    if !head && body.len() > 1 {
        if let Some(after) = state.interrupt.remove(&file.sha256) {
            body = &body[..after.min(body.len())];
            cut = true;
        }
    }
    headers.push(("content-length".to_string(), (end - start).to_string()));
    write_head(out, status, &headers)?;
    if !head {
        out.write_all(body)?;
    }
    out.flush()?;
    if cut {
        out.shutdown(std::net::Shutdown::Both)?;
    }
    Ok(())
}

/// `bytes=A-B` or `bytes=A-` within `total`; `None` when absent or unsatisfiable.
fn parse_range(range: &str, total: usize) -> Option<(usize, usize)> {
    let (a, b) = range.strip_prefix("bytes=")?.split_once('-')?;
    let a: usize = a.trim().parse().ok()?;
    let b: usize = if b.trim().is_empty() { total.checked_sub(1)? } else { b.trim().parse().ok()? };
    (a <= b && b < total).then_some((a, b))
}

fn respond(out: &mut TcpStream, status: &str, headers: &[(String, String)], body: &[u8], head: bool) -> std::io::Result<()> {
    let mut headers = headers.to_vec();
    headers.push(("content-length".to_string(), body.len().to_string()));
    write_head(out, status, &headers)?;
    if !head {
        out.write_all(body)?;
    }
    out.flush()
}

fn write_head(out: &mut TcpStream, status: &str, headers: &[(String, String)]) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status}\r\nconnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())
}
