//! A recording relay between the demo's `valuecard` commands and `valuecard-backend`.
//!
//! Every request of the commands, and every answer, passes through here and is kept, so
//! that the demo can show what the bank, the center and the arbiter were told, and check
//! that the bank's messages and the center's share nothing. What a party was told bounds
//! what it can know: its databases can only hold that, its own keys and its clock.
//!
//! HTTP is spoken by libraries on both sides: `tiny_http` takes the commands' requests, and
//! each is forwarded with a `ureq` client of the relay's own.

use std::io::{self, Read};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tiny_http::{Header, Request, Response, Server};
use ureq::Agent;

/// No request or answer of the API comes near this.
const MAX_BODY: u64 = 16 << 20;
/// The bank makes missing denomination keys on demand: an answer may take minutes.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(600);
/// The request headers worth passing on; the relay's own client sets the others.
const FORWARDED_HEADERS: [&str; 3] = ["content-type", "authorization", "accept"];

/// One request and its answer, as they went over the wire.
#[derive(Clone, Debug)]
pub struct Message {
    /// When the request arrived, in Unix seconds.
    pub at: u64,
    pub method: String,
    /// The path and query, e.g. `/bank/v1/withdrawals`.
    pub target: String,
    pub request: Vec<u8>,
    pub status: u16,
    pub answer: Vec<u8>,
}

impl Message {
    /// The path without its query.
    pub fn route(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The role the route belongs to: `bank`, `center` or `arbiter` (its first segment).
    pub fn role(&self) -> &str {
        self.route()
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or("")
    }

    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// The relay: listens on a free loopback port until dropped.
pub struct Relay {
    pub url: String,
    server: Arc<Server>,
    messages: Arc<Mutex<Vec<Message>>>,
    /// Takes the requests, each to a thread of its own, and ends once they are answered.
    dispatch: Option<JoinHandle<()>>,
}

impl Relay {
    /// Starts relaying to `upstream` (scheme, host and port).
    pub fn start(upstream: &str) -> io::Result<Relay> {
        let server = Arc::new(Server::http("127.0.0.1:0").map_err(io::Error::other)?);
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| io::Error::other("the relay listens on no IP address"))?;
        let messages = Arc::new(Mutex::new(Vec::new()));
        let agent: Agent = Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(UPSTREAM_TIMEOUT))
            .build()
            .into();
        let upstream = upstream.trim_end_matches('/').to_string();
        let (incoming, log) = (server.clone(), messages.clone());
        let dispatch = std::thread::spawn(move || {
            // The scope waits for the requests still being answered: none is cut off, and
            // no thread outlives the relay.
            std::thread::scope(|scope| {
                for request in incoming.incoming_requests() {
                    let (agent, upstream, log) = (&agent, upstream.as_str(), &*log);
                    scope.spawn(move || serve(request, agent, upstream, log));
                }
            });
        });
        Ok(Relay {
            url: format!("http://{addr}"),
            server,
            messages,
            dispatch: Some(dispatch),
        })
    }

    /// How many messages went through so far.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// The messages from the `from`-th on.
    pub fn since(&self, from: usize) -> Vec<Message> {
        self.lock()
            .get(from..)
            .map(<[Message]>::to_vec)
            .unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Message>> {
        self.messages.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // Ends the dispatching thread's loop once the requests already taken are handed on;
        // the server itself, and with it the listening socket, goes with the last `Arc`.
        self.server.unblock();
        if let Some(dispatch) = self.dispatch.take() {
            let _ = dispatch.join();
        }
    }
}

/// The backend's answer: status, content type and body. A backend that cannot be reached
/// is a 502 from the relay itself.
fn forward(
    agent: &Agent,
    upstream: &str,
    method: &str,
    target: &str,
    headers: &[Header],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let url = format!("{upstream}{target}");
    let pass = headers
        .iter()
        .map(|h| (h.field.as_str().as_str(), h.value.as_str()))
        .filter(|(name, _)| {
            FORWARDED_HEADERS
                .iter()
                .any(|forwarded| name.eq_ignore_ascii_case(forwarded))
        });
    let answer = match method {
        "GET" => pass
            .fold(agent.get(&url), |b, (n, v)| b.header(n, v))
            .call(),
        "POST" => pass
            .fold(agent.post(&url), |b, (n, v)| b.header(n, v))
            .send(body),
        other => {
            let text = format!("the demo's relay passes GET and POST only, not {other}");
            return (405, "text/plain".into(), text.into_bytes());
        }
    };
    let failed = |e: ureq::Error| {
        let text = format!("the demo's relay could not reach the backend: {e}");
        (502, "text/plain".to_string(), text.into_bytes())
    };
    let mut response = match answer {
        Ok(response) => response,
        Err(e) => return failed(e),
    };
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_string();
    match response
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_vec()
    {
        Ok(body) => (status, content_type, body),
        Err(e) => failed(e),
    }
}

/// An answer of the relay's own, to a request it could not read (and so did not pass on).
fn refuse(request: Request, status: u16, text: &str) {
    let _ = request.respond(Response::from_string(text).with_status_code(status));
}

fn serve(mut request: Request, agent: &Agent, upstream: &str, log: &Mutex<Vec<Message>>) {
    let at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut body = Vec::new();
    // tiny_http has undone the Content-Length or chunked framing.
    if let Err(e) = request
        .as_reader()
        .take(MAX_BODY + 1)
        .read_to_end(&mut body)
    {
        return refuse(request, 400, &format!("the request's body broke off: {e}"));
    }
    if body.len() as u64 > MAX_BODY {
        return refuse(
            request,
            413,
            "the request's body is too large for the demo's relay",
        );
    }
    let method = request.method().as_str().to_string();
    let target = request.url().to_string();
    let (status, content_type, answer) =
        forward(agent, upstream, &method, &target, request.headers(), &body);
    let mut response = Response::from_data(answer.clone())
        .with_status_code(status)
        // A Content-Length, as the backend's answers come, never chunks.
        .with_chunked_threshold(usize::MAX);
    if let Ok(header) = Header::from_bytes("Content-Type", content_type) {
        response.add_header(header);
    }
    // Kept before the client has its answer: once a command is done, its messages are all
    // in the log.
    log.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Message {
            at,
            method,
            target,
            request: body,
            status,
            answer,
        });
    let _ = request.respond(response);
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::TcpStream;

    use serde_json::Value;

    use super::*;

    /// A backend that answers every request with its own method, target, body and
    /// authorization, in JSON; 404 for a target that mentions `missing`. It runs until the
    /// test ends.
    fn echo_server() -> String {
        let server = Server::http("127.0.0.1:0").expect("bind");
        let addr = server.server_addr().to_ip().expect("an IP address");
        std::thread::spawn(move || {
            for mut request in server.incoming_requests() {
                let mut body = String::new();
                request.as_reader().read_to_string(&mut body).expect("body");
                let header = |name: &'static str| {
                    request
                        .headers()
                        .iter()
                        .find(|h| h.field.equiv(name))
                        .map(|h| h.value.to_string())
                };
                let echo = serde_json::json!({
                    "method": request.method().as_str(),
                    "target": request.url(),
                    "body": body,
                    "authorization": header("authorization"),
                });
                let status = if request.url().contains("missing") {
                    404
                } else {
                    200
                };
                let content_type =
                    Header::from_bytes("Content-Type", "application/json").expect("header");
                let response = Response::from_string(echo.to_string())
                    .with_status_code(status)
                    .with_header(content_type);
                let _ = request.respond(response);
            }
        });
        format!("http://{addr}")
    }

    fn client() -> Agent {
        Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into()
    }

    #[test]
    fn relays_and_records_requests_and_answers() {
        let relay = Relay::start(&echo_server()).expect("relay");
        let agent = client();
        let mut answer = agent
            .post(&format!("{}/bank/v1/withdrawals", relay.url))
            .header("Authorization", "Bearer t")
            .send_json(serde_json::json!({"account": "123"}))
            .expect("post");
        assert_eq!(
            answer.headers().get("content-type").expect("content type"),
            "application/json"
        );
        let answer = answer.body_mut().read_json::<Value>().expect("json");
        assert_eq!(answer["target"], "/bank/v1/withdrawals");
        let sent: Value =
            serde_json::from_str(answer["body"].as_str().expect("body")).expect("json");
        assert_eq!(sent, serde_json::json!({"account": "123"}));
        assert_eq!(answer["authorization"], "Bearer t");
        let missing = agent
            .get(&format!("{}/center/v1/missing?x=1", relay.url))
            .call()
            .expect("get");
        assert_eq!(missing.status().as_u16(), 404);

        let log = relay.since(0);
        assert_eq!(log.len(), 2);
        assert_eq!(relay.len(), 2);
        assert_eq!((log[0].role(), log[0].ok()), ("bank", true));
        assert_eq!(log[0].method, "POST");
        assert_eq!(
            serde_json::from_slice::<Value>(&log[0].request).expect("json"),
            sent
        );
        let answer: Value = serde_json::from_slice(&log[0].answer).expect("json");
        assert_eq!(answer["method"], "POST");
        assert_eq!(
            (log[1].method.as_str(), log[1].target.as_str()),
            ("GET", "/center/v1/missing?x=1")
        );
        assert_eq!(
            (log[1].role(), log[1].route(), log[1].status, log[1].ok()),
            ("center", "/center/v1/missing", 404, false)
        );
        assert!(log[0].at > 0 && log[1].at >= log[0].at);
        assert_eq!(relay.since(1).len(), 1);
        assert!(relay.since(5).is_empty());
    }

    #[test]
    fn relays_chunked_bodies() {
        let relay = Relay::start(&echo_server()).expect("relay");
        let mut stream =
            TcpStream::connect(relay.url.trim_start_matches("http://")).expect("connect");
        stream
            .write_all(
                b"POST /arbiter/v1/x HTTP/1.1\r\nHost: relay\r\nTransfer-Encoding: chunked\r\n\
                  Connection: close\r\n\r\n3\r\nabc\r\n2;e=1\r\nde\r\n0\r\n\r\n",
            )
            .expect("write");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("read");
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
        assert!(answer.contains(r#""body":"abcde""#), "{answer}");
        let log = relay.since(0);
        assert_eq!(
            (log[0].role(), log[0].request.as_slice()),
            ("arbiter", &b"abcde"[..])
        );
    }

    #[test]
    fn answers_502_when_the_backend_is_gone_and_stops_cleanly() {
        // A port that nothing listens on any more.
        let gone = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            format!("http://{}", listener.local_addr().expect("addr"))
        };
        let relay = Relay::start(&gone).expect("relay");
        let agent = client();
        let answer = agent
            .get(&format!("{}/bank/v1/keys", relay.url))
            .call()
            .expect("get");
        assert_eq!(answer.status().as_u16(), 502);
        assert_eq!(relay.since(0)[0].status, 502);

        // The agent keeps its connection to the relay open: the relay stops all the same,
        // and then takes no more connections.
        let addr = relay.url.trim_start_matches("http://").to_string();
        drop(relay);
        let refused = (0..50).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            TcpStream::connect(&addr).is_err()
        });
        assert!(refused, "the relay still listens once dropped");
    }
}
