//! One client connection's decisions, without I/O: what each line it sends leads to (an answer, a call for the
//! server to make, or the end of the connection with a last error), `hello` first, and the request budget.

use std::time::Instant;

use kanade_shared::client_ipc::{
    self as ipc, HELLO, HelloParams, MAX_LINE_BYTES, MAX_REQUESTS_PER_SECOND, REQUEST_BURST, Request, RequestId,
    Response, RpcError,
};

/// What the transport could not make a line of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineFault {
    /// Longer than [`MAX_LINE_BYTES`].
    TooLong,
    /// Not UTF-8.
    NotText,
}

/// What a line leads to.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Answer this at once (an error the client may correct).
    Answer(Response),
    /// `hello` was accepted: the server answers `id` with who the client is, speaking `protocol`.
    Greet { id: RequestId, protocol: u32 },
    /// A request for the server to carry out.
    Call(Request),
    /// Send this last error and close the connection.
    Close(Response),
}

/// A client connection's state.
#[derive(Debug)]
pub struct Session {
    protocol: Option<u32>,
    budget: Budget,
}

impl Session {
    pub fn new(now: Instant) -> Self {
        Self { protocol: None, budget: Budget::new(now) }
    }

    /// The protocol `hello` chose; `None` before it.
    pub fn protocol(&self) -> Option<u32> {
        self.protocol
    }

    /// Decides what `line` (or what stopped the transport from reading one) leads to.
    pub fn on_line(&mut self, line: Result<&str, LineFault>, now: Instant) -> Step {
        let line = match line {
            Ok(line) => line,
            Err(LineFault::TooLong) => {
                return close(None, "line_too_long", format!("a message is longer than {MAX_LINE_BYTES} bytes"));
            }
            Err(LineFault::NotText) => {
                return Step::Close(Response::error(
                    None,
                    RpcError::new(ipc::code::PARSE_ERROR, "parse_error", "a message is not UTF-8"),
                ));
            }
        };
        if !self.budget.take(now) {
            return close(
                None,
                "too_fast",
                format!(
                    "more than {MAX_REQUESTS_PER_SECOND} requests a second (bursts of {REQUEST_BURST}); connect again \
                     and send fewer"
                ),
            );
        }
        let request = match ipc::parse_request(line) {
            Ok(request) => request,
            // Before `hello` nothing is known of the client: anything unreadable ends it.
            Err((id, error)) if self.protocol.is_none() => return Step::Close(Response::error(id, error)),
            Err((id, error)) => return Step::Answer(Response::error(id, error)),
        };
        match (self.protocol, request.method.as_str()) {
            (None, HELLO) => self.hello(request),
            (None, _) => close(Some(request.id), "hello_first", "the first request must be `hello`"),
            (Some(_), HELLO) => Step::Answer(Response::error(
                Some(request.id),
                RpcError::refused("already_greeted", "`hello` was said already on this connection"),
            )),
            (Some(_), _) => Step::Call(request),
        }
    }

    fn hello(&mut self, request: Request) -> Step {
        let params: HelloParams = match request.params() {
            Ok(params) => params,
            Err(error) => return Step::Close(Response::error(Some(request.id), error)),
        };
        if params.client.chars().count() > ipc::MAX_CLIENT_NAME || params.client.chars().any(char::is_control) {
            return close(
                Some(request.id),
                "invalid_params",
                format!(
                    "`client` must be at most {} characters, none of them control characters",
                    ipc::MAX_CLIENT_NAME
                ),
            );
        }
        match params.protocols.iter().copied().filter(|p| *p <= ipc::PROTOCOL).max() {
            Some(protocol) if protocol >= 1 => {
                self.protocol = Some(protocol);
                Step::Greet { id: request.id, protocol }
            }
            _ => close(
                Some(request.id),
                "unsupported_protocol",
                format!("this agent speaks protocol {}; the client offered {:?}", ipc::PROTOCOL, params.protocols),
            ),
        }
    }
}

fn close(id: Option<RequestId>, reason: &str, message: impl Into<String>) -> Step {
    Step::Close(Response::error(id, RpcError::refused(reason, message)))
}

/// A token bucket: [`REQUEST_BURST`] requests at once, refilled at [`MAX_REQUESTS_PER_SECOND`].
#[derive(Debug)]
struct Budget {
    tokens: f64,
    at: Instant,
}

impl Budget {
    fn new(now: Instant) -> Self {
        Self { tokens: f64::from(REQUEST_BURST), at: now }
    }

    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * f64::from(MAX_REQUESTS_PER_SECOND)).min(f64::from(REQUEST_BURST));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kanade_shared::client_ipc::{Outcome, PROTOCOL};

    use super::*;

    const HELLO_LINE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"hello","params":{"protocols":[1,7],"client":"t"}}"#;
    const STATUS_LINE: &str = r#"{"jsonrpc":"2.0","id":2,"method":"status"}"#;

    fn reason(step: &Step) -> String {
        match step {
            Step::Answer(r) | Step::Close(r) => match &r.outcome {
                Outcome::Error(e) => e.reason().to_owned(),
                Outcome::Result(_) => "result".to_owned(),
            },
            Step::Greet { .. } => "greet".to_owned(),
            Step::Call(r) => format!("call {}", r.method),
        }
    }

    #[test]
    fn hello_comes_first_picks_the_highest_common_protocol_and_is_said_once() {
        let now = Instant::now();
        let mut session = Session::new(now);
        let step = session.on_line(Ok(STATUS_LINE), now);
        assert!(matches!(step, Step::Close(_)), "{step:?}");
        assert_eq!(reason(&step), "hello_first");

        let mut session = Session::new(now);
        assert_eq!(session.on_line(Ok(HELLO_LINE), now), Step::Greet { id: RequestId::Number(1), protocol: PROTOCOL });
        assert_eq!(session.protocol(), Some(PROTOCOL));
        assert_eq!(reason(&session.on_line(Ok(STATUS_LINE), now)), "call status");
        let again = session.on_line(Ok(HELLO_LINE), now);
        assert!(matches!(again, Step::Answer(_)));
        assert_eq!(reason(&again), "already_greeted");
        // Once greeted, a broken request is answered and the connection stays.
        let broken = session.on_line(Ok("{oops"), now);
        assert!(matches!(broken, Step::Answer(_)));
        assert_eq!(reason(&broken), "parse_error");
    }

    #[test]
    fn a_client_that_speaks_no_common_protocol_or_names_itself_badly_is_closed() {
        let now = Instant::now();
        for (line, why) in [
            (r#"{"jsonrpc":"2.0","id":1,"method":"hello","params":{"protocols":[2,3]}}"#, "unsupported_protocol"),
            (r#"{"jsonrpc":"2.0","id":1,"method":"hello","params":{"protocols":[]}}"#, "unsupported_protocol"),
            (r#"{"jsonrpc":"2.0","id":1,"method":"hello","params":{"protocols":[0]}}"#, "unsupported_protocol"),
            (r#"{"jsonrpc":"2.0","id":1,"method":"hello","params":{}}"#, "invalid_params"),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"hello","params":{"protocols":[1],"client":"a\u0007"}}"#,
                "invalid_params",
            ),
            ("not json at all", "parse_error"),
        ] {
            let step = Session::new(now).on_line(Ok(line), now);
            assert!(matches!(step, Step::Close(_)), "{line}: {step:?}");
            assert_eq!(reason(&step), why, "{line}");
        }
        let long = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"hello","params":{{"protocols":[1],"client":"{}"}}}}"#,
            "x".repeat(129)
        );
        assert_eq!(reason(&Session::new(now).on_line(Ok(&long), now)), "invalid_params");
        assert_eq!(reason(&Session::new(now).on_line(Err(LineFault::TooLong), now)), "line_too_long");
        assert_eq!(reason(&Session::new(now).on_line(Err(LineFault::NotText), now)), "parse_error");
    }

    #[test]
    fn a_burst_is_allowed_a_flood_is_closed_and_the_budget_refills() {
        let start = Instant::now();
        let mut session = Session::new(start);
        assert!(matches!(session.on_line(Ok(HELLO_LINE), start), Step::Greet { .. }));
        for i in 1..REQUEST_BURST {
            assert!(matches!(session.on_line(Ok(STATUS_LINE), start), Step::Call(_)), "request {i} of the burst");
        }
        let flood = session.on_line(Ok(STATUS_LINE), start);
        assert!(matches!(flood, Step::Close(_)));
        assert_eq!(reason(&flood), "too_fast");

        // A steady client well under the rate is never refused.
        let mut steady = Session::new(start);
        let mut now = start;
        assert!(matches!(steady.on_line(Ok(HELLO_LINE), now), Step::Greet { .. }));
        for _ in 0..1_000 {
            now += Duration::from_millis(1_000 / u64::from(MAX_REQUESTS_PER_SECOND) + 1);
            assert!(matches!(steady.on_line(Ok(STATUS_LINE), now), Step::Call(_)));
        }
    }
}
