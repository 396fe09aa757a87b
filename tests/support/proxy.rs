//! A loopback HTTP proxy in front of moto that fails chosen AWS operations,
//! to drive the runner's API-error paths against the real server. It is not a
//! fake of AWS: every request it does not fail goes to moto unchanged.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running proxy; dropping it stops accepting connections.
pub struct FailingProxy {
    /// The endpoint to give the runner.
    pub endpoint: String,
    failing: Arc<AtomicBool>,
    /// Requests seen, per AWS operation (`Action=` of the Query protocol):
    /// how many, and the milliseconds moto took to answer them in all.
    counts: Arc<Mutex<BTreeMap<String, (u64, f64)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FailingProxy {
    /// Proxies to `upstream` (`http://127.0.0.1:PORT`), answering 503
    /// `ServiceUnavailable` to every request whose body contains `Action=<operation>`.
    pub async fn start(upstream: &str, operation: &str) -> FailingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("proxy addr"));
        let upstream = upstream.trim_start_matches("http://").to_string();
        let needle = format!("Action={operation}");
        let failing = Arc::new(AtomicBool::new(true));
        let counts = Arc::new(Mutex::new(BTreeMap::new()));
        let (flag, seen) = (failing.clone(), counts.clone());
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (upstream, needle, flag, seen) =
                    (upstream.clone(), needle.clone(), flag.clone(), seen.clone());
                tokio::spawn(async move {
                    let _ = serve(conn, &upstream, &needle, &flag, &seen).await;
                });
            }
        });
        FailingProxy {
            endpoint,
            failing,
            counts,
            task,
        }
    }

    /// A proxy that fails nothing and only counts requests per operation.
    pub async fn counting(upstream: &str) -> FailingProxy {
        let p = FailingProxy::start(upstream, "").await;
        p.heal();
        p
    }

    /// Requests seen so far, per operation (retries count as requests).
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.counts
            .lock()
            .map(|c| c.iter().map(|(k, (n, _))| (k.clone(), *n)).collect())
            .unwrap_or_default()
    }

    /// Milliseconds spent waiting for answers so far, per operation.
    pub fn times(&self) -> BTreeMap<String, f64> {
        self.counts
            .lock()
            .map(|c| c.iter().map(|(k, (_, ms))| (k.clone(), *ms)).collect())
            .unwrap_or_default()
    }

    /// Stops failing: every request goes through from now on.
    pub fn heal(&self) {
        self.failing.store(false, Ordering::SeqCst);
    }
}

impl Drop for FailingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one HTTP/1.1 request (headers and Content-Length body).
async fn read_request(conn: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < header_end + len {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(Some(buf))
}

async fn serve(
    mut conn: TcpStream,
    upstream: &str,
    needle: &str,
    failing: &AtomicBool,
    counts: &Mutex<BTreeMap<String, (u64, f64)>>,
) -> std::io::Result<()> {
    while let Some(request) = read_request(&mut conn).await? {
        let text = String::from_utf8_lossy(&request);
        let op: Option<String> = text.find("Action=").map(|at| {
            text[at + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect()
        });
        if let (Some(op), Ok(mut c)) = (&op, counts.lock()) {
            c.entry(op.clone()).or_default().0 += 1;
        }
        let logged: Option<String> = std::env::var_os("GAMEDAY_PROXY_LOG").map(|_| {
            text.split("\r\n\r\n")
                .nth(1)
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect()
        });
        let asked = std::time::Instant::now();
        if failing.load(Ordering::SeqCst) && String::from_utf8_lossy(&request).contains(needle) {
            let body = "<Response><Errors><Error><Code>ServiceUnavailable</Code><Message>injected by the test proxy</Message></Error></Errors><RequestID>test</RequestID></Response>";
            let reply = format!(
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            conn.write_all(reply.as_bytes()).await?;
            continue;
        }
        // One upstream connection per request, closed by moto after its answer.
        let text = String::from_utf8_lossy(&request);
        let request = match text.find("\r\n") {
            Some(i) => {
                let mut r = request[..i + 2].to_vec();
                r.extend_from_slice(b"Connection: close\r\n");
                let rest: Vec<u8> = request[i + 2..].to_vec();
                let rest_text = String::from_utf8_lossy(&rest);
                // Drop the client's own Connection header; ours says close.
                let filtered: String = rest_text
                    .split_inclusive("\r\n")
                    .filter(|l| !l.to_lowercase().starts_with("connection:"))
                    .collect();
                r.extend_from_slice(filtered.as_bytes());
                r
            }
            None => request,
        };
        let mut up = TcpStream::connect(upstream).await?;
        up.write_all(&request).await?;
        let mut response = Vec::new();
        up.read_to_end(&mut response).await?;
        if let (Some(op), Ok(mut c)) = (&op, counts.lock()) {
            c.entry(op.clone()).or_default().1 += asked.elapsed().as_secs_f64() * 1000.0;
        }
        if let Some(body) = logged {
            // GAMEDAY_PROXY_LOG: each request's time and body, to see where a benchmark's time goes.
            eprintln!("proxy: {} ms {body}", asked.elapsed().as_millis());
        }
        conn.write_all(&response).await?;
        return Ok(()); // the response says Connection: close
    }
    Ok(())
}
