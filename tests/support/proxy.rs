//! A loopback HTTP proxy in front of moto that fails chosen AWS operations,
//! to drive the runner's API-error paths against the real server. It is not a
//! fake of AWS: every request it does not fail goes to moto unchanged.
//!
//! Two ways to fail: [`FailingProxy::start`] answers 503 to every request of
//! one operation until [`FailingProxy::heal`]; [`FailingProxy::storm`] answers
//! a deterministic share of the requests of chosen operations with a chosen
//! error ([`Answer`]) for a bounded window. Every request is counted per
//! operation and per answer ([`FailingProxy::answered`]), so a test can tell
//! the SDK's retries from gameday's.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running proxy; dropping it stops accepting connections.
pub struct FailingProxy {
    /// The endpoint to give the runner.
    pub endpoint: String,
    failing: Arc<AtomicBool>,
    /// Requests seen, per AWS operation (see [`operation`]):
    /// how many, and the milliseconds moto took to answer them in all.
    counts: Arc<Mutex<BTreeMap<String, (u64, f64)>>>,
    /// The storm in progress, if any, and every request's answer.
    weather: Arc<Mutex<Weather>>,
    task: tokio::task::JoinHandle<()>,
}

/// An error answer in the shape EC2 (`<Response><Errors><Error>`, the EC2
/// Query protocol) or Auto Scaling and CloudWatch (`<ErrorResponse><Error>`,
/// the Query protocol) give it, chosen by the request's API version; the
/// SDK's parsers read the code from there and its retry classifiers look at
/// the code (throttling) and the HTTP status (500, 502, 503, 504).
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl Answer {
    /// 400 `Throttling`: what Auto Scaling and CloudWatch answer when throttled.
    pub fn throttling() -> Answer {
        Answer::new(400, "Throttling", "Rate exceeded")
    }

    /// 400 `RequestLimitExceeded`: what EC2 answers when throttled.
    pub fn request_limit_exceeded() -> Answer {
        Answer::new(400, "RequestLimitExceeded", "Request limit exceeded.")
    }

    /// 503 `ServiceUnavailable`.
    pub fn unavailable() -> Answer {
        Answer::new(503, "ServiceUnavailable", "injected by the test proxy")
    }

    /// 500 `InternalError`.
    pub fn internal() -> Answer {
        Answer::new(500, "InternalError", "injected by the test proxy")
    }

    /// A permanent 4xx error: `code` (`UnauthorizedOperation`, `AccessDenied`) with `message`.
    pub fn permanent(code: &str, message: &str) -> Answer {
        Answer::new(400, code, message)
    }

    fn new(status: u16, code: &str, message: &str) -> Answer {
        Answer {
            status,
            code: code.to_string(),
            message: message.to_string(),
        }
    }

    /// The HTTP response, in the error shape of the request's protocol.
    fn response(&self, request: &str) -> String {
        let body = if request.contains("Version=2016-11-15") {
            format!(
                "<Response><Errors><Error><Code>{}</Code><Message>{}</Message></Error></Errors><RequestID>test</RequestID></Response>",
                self.code, self.message
            )
        } else {
            let kind = if self.status >= 500 { "Receiver" } else { "Sender" };
            format!(
                "<ErrorResponse><Error><Type>{kind}</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>test</RequestId></ErrorResponse>",
                self.code, self.message
            )
        };
        let reason = match self.status {
            500 => "Internal Server Error",
            503 => "Service Unavailable",
            _ => "Bad Request",
        };
        format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n{body}",
            self.status,
            body.len()
        )
    }
}

/// A storm: for `window` from when it starts, `fail` of every `of` requests of
/// each of `operations` (all operations when empty) get `answer`, counted per
/// operation from the storm's start (with 1 of 2, the first, third, fifth...).
#[derive(Clone, Debug)]
pub struct Storm {
    pub operations: Vec<String>,
    pub fail: u64,
    pub of: u64,
    pub answer: Answer,
    pub window: Duration,
}

impl Storm {
    /// Every other request of `operations` (all when empty) answered `answer` for `window`.
    pub fn every_other(operations: &[&str], answer: Answer, window: Duration) -> Storm {
        Storm {
            operations: operations.iter().map(|s| s.to_string()).collect(),
            fail: 1,
            of: 2,
            answer,
            window,
        }
    }

    /// Every request of `operations` answered `answer` for `window`.
    pub fn every(operations: &[&str], answer: Answer, window: Duration) -> Storm {
        Storm {
            fail: 1,
            of: 1,
            ..Storm::every_other(operations, answer, window)
        }
    }
}

#[derive(Default)]
struct Weather {
    storm: Option<(Storm, Instant, BTreeMap<String, u64>)>,
    /// Requests per (operation, answer): the error code, or `ok` for moto's answer.
    answers: BTreeMap<(String, String), u64>,
}

impl Weather {
    /// The error to answer `op` with now, if the storm says so.
    fn verdict(&mut self, op: &str) -> Option<Answer> {
        let (storm, until, seen) = self.storm.as_mut()?;
        if Instant::now() >= *until {
            self.storm = None;
            return None;
        }
        if !storm.operations.is_empty() && !storm.operations.iter().any(|o| o == op) {
            return None;
        }
        let n = seen.entry(op.to_string()).or_default();
        let fail = *n % storm.of.max(1) < storm.fail;
        *n += 1;
        fail.then(|| storm.answer.clone())
    }

    fn record(&mut self, op: &str, answer: &str) {
        *self
            .answers
            .entry((op.to_string(), answer.to_string()))
            .or_default() += 1;
    }
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
        let weather = Arc::new(Mutex::new(Weather::default()));
        let (flag, seen, sky) = (failing.clone(), counts.clone(), weather.clone());
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (upstream, needle, flag, seen, sky) = (
                    upstream.clone(),
                    needle.clone(),
                    flag.clone(),
                    seen.clone(),
                    sky.clone(),
                );
                tokio::spawn(async move {
                    let _ = serve(conn, &upstream, &needle, &flag, &seen, &sky).await;
                });
            }
        });
        FailingProxy {
            endpoint,
            failing,
            counts,
            weather,
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

    /// Stops failing: every request goes through from now on (ends a storm too).
    pub fn heal(&self) {
        self.failing.store(false, Ordering::SeqCst);
        if let Ok(mut w) = self.weather.lock() {
            w.storm = None;
        }
    }

    /// Starts `storm` now (replacing any storm in progress); it ends by itself
    /// after its window, or at [`FailingProxy::heal`].
    pub fn storm(&self, storm: Storm) {
        if let Ok(mut w) = self.weather.lock() {
            let until = Instant::now() + storm.window;
            w.storm = Some((storm, until, BTreeMap::new()));
        }
    }

    /// Requests of `operation` answered with `answer` so far: an error code
    /// (`Throttling`, `ServiceUnavailable`), or `ok` for those moto answered.
    pub fn answered(&self, operation: &str, answer: &str) -> u64 {
        self.weather
            .lock()
            .ok()
            .and_then(|w| {
                w.answers
                    .get(&(operation.to_string(), answer.to_string()))
                    .copied()
            })
            .unwrap_or(0)
    }

    /// Every (operation, answer) seen so far with its count, for messages.
    pub fn answers(&self) -> BTreeMap<(String, String), u64> {
        self.weather.lock().map(|w| w.answers.clone()).unwrap_or_default()
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

/// The AWS operation of a request: `Action=` of the Query protocol (EC2,
/// Auto Scaling, CloudWatch, ...), the `X-Amz-Target` header of the JSON
/// protocol (DynamoDB: `TransactWriteItems`), or for S3 (a REST API: the
/// signature's credential scope names the service) the operation the method
/// and query make (`PutObject`, `GetObject`, `ListObjectsV2`, ...).
fn operation(text: &str) -> Option<String> {
    let head = &text[..text.find("\r\n\r\n").unwrap_or(text.len())];
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    };
    if let Some(target) = header("x-amz-target") {
        return Some(target.rsplit('.').next().unwrap_or(target).to_string());
    }
    if header("authorization").is_some_and(|a| a.contains("/s3/aws4_request")) {
        let mut line = head.lines().next().unwrap_or_default().split_whitespace();
        let (method, target) = (line.next().unwrap_or_default(), line.next().unwrap_or_default());
        let query = target.split_once('?').map(|(_, q)| q).unwrap_or_default();
        let op = match method {
            "PUT" => "PutObject",
            "HEAD" => "HeadObject",
            "DELETE" => "DeleteObject",
            "GET" if query.contains("list-type=2") => "ListObjectsV2",
            "GET" if query.contains("prefix") || query.contains("delimiter") => "ListObjects",
            "GET" => "GetObject",
            _ => "S3Other",
        };
        return Some(op.to_string());
    }
    text.find("Action=").map(|at| {
        text[at + 7..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect()
    })
}

async fn serve(
    mut conn: TcpStream,
    upstream: &str,
    needle: &str,
    failing: &AtomicBool,
    counts: &Mutex<BTreeMap<String, (u64, f64)>>,
    weather: &Mutex<Weather>,
) -> std::io::Result<()> {
    while let Some(request) = read_request(&mut conn).await? {
        let text = String::from_utf8_lossy(&request);
        let op = operation(&text);
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
        let asked = Instant::now();
        let op_name = op.clone().unwrap_or_default();
        let answer = if failing.load(Ordering::SeqCst) && text.contains(needle) {
            Some(Answer::unavailable())
        } else {
            weather.lock().ok().and_then(|mut w| w.verdict(&op_name))
        };
        if let Ok(mut w) = weather.lock() {
            w.record(&op_name, answer.as_ref().map_or("ok", |a| a.code.as_str()));
        }
        if let Some(answer) = answer {
            conn.write_all(answer.response(&text).as_bytes()).await?;
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
