//! An operator's signals: one mechanism for every phase of a run.
//!
//! The handlers (SIGINT, SIGTERM, SIGHUP) are installed before the run touches
//! anything; if they cannot be, the run refuses (an operator's Ctrl-C would
//! otherwise kill it mid-fault with nothing rolled back). Every phase waits
//! for signals through [`Signals::next`], which journals each one with its
//! number, and reacts by the same rule ([`Received::escalation`]):
//!
//! - the first signal stops the run gracefully: before injection and during
//!   recovery the run ends as interrupted, during the fault phase it aborts
//!   and rolls back, during teardown teardown simply goes on;
//! - later ones hurry: waits are skipped (for instances to reach `running`),
//!   but no rollback or teardown call is ever skipped.
//!
//! How signals arrive is a value ([`SignalHandling`]), so unit tests can send
//! their own or make installation fail.

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

use super::Ctx;
use crate::journal::Event;

/// How the runner learns of an operator's signals.
#[derive(Debug)]
pub enum SignalHandling {
    /// SIGINT, SIGTERM and SIGHUP stop the run (with rollback).
    Standard,
    /// Signals are whatever the test sends.
    #[cfg(test)]
    Test(tokio::sync::mpsc::UnboundedReceiver<&'static str>),
    /// Installing the handlers fails (as it can when the process may not
    /// handle signals).
    #[cfg(test)]
    FailToInstall,
}

/// The handlers could not be installed.
#[derive(Debug, thiserror::Error)]
#[error("cannot install a handler for {signal}: {source}")]
pub struct SignalError {
    /// The signal whose handler failed.
    pub signal: &'static str,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// What a signal asks of the current phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Escalation {
    /// The first signal: stop gracefully (roll back whatever is in effect).
    Stop,
    /// Any later one: skip waits, never a rollback or teardown call.
    Hurry,
}

/// One signal received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Received {
    /// `SIGINT`, `SIGTERM` or `SIGHUP`.
    pub(crate) name: &'static str,
    /// Its number in the run (1 for the first).
    pub(crate) count: u32,
}

impl Received {
    /// The rule every phase follows.
    pub(crate) fn escalation(&self) -> Escalation {
        if self.count >= 2 {
            Escalation::Hurry
        } else {
            Escalation::Stop
        }
    }
}

enum Source {
    Standard {
        int: Signal,
        term: Signal,
        hup: Signal,
    },
    #[cfg(test)]
    Test(tokio::sync::mpsc::UnboundedReceiver<&'static str>),
}

/// The run's signals: where they arrive, and how many came so far.
pub(crate) struct Signals {
    source: Source,
    count: u32,
}

impl Signals {
    /// Installs the handlers. Must run inside the tokio runtime, before the
    /// run's first mutating call.
    pub(crate) fn install(kind: SignalHandling) -> Result<Signals, SignalError> {
        let source = match kind {
            SignalHandling::Standard => {
                let install =
                    |name, kind| signal(kind).map_err(|source| SignalError { signal: name, source });
                Source::Standard {
                    int: install("SIGINT", SignalKind::interrupt())?,
                    term: install("SIGTERM", SignalKind::terminate())?,
                    hup: install("SIGHUP", SignalKind::hangup())?,
                }
            }
            #[cfg(test)]
            SignalHandling::Test(rx) => Source::Test(rx),
            #[cfg(test)]
            SignalHandling::FailToInstall => {
                return Err(SignalError {
                    signal: "SIGINT",
                    source: std::io::Error::other("refused by the test"),
                });
            }
        };
        Ok(Signals { source, count: 0 })
    }

    /// Waits for the next signal and journals it. Cancel-safe: usable in `select!`.
    /// Pending forever once no more signals can come.
    pub(crate) async fn next(&mut self, ctx: &Ctx) -> Received {
        let name = match &mut self.source {
            Source::Standard { int, term, hup } => tokio::select! {
                Some(()) = int.recv() => "SIGINT",
                Some(()) = term.recv() => "SIGTERM",
                Some(()) = hup.recv() => "SIGHUP",
                else => std::future::pending().await,
            },
            #[cfg(test)]
            Source::Test(rx) => match rx.recv().await {
                Some(name) => name,
                None => std::future::pending().await,
            },
        };
        self.count += 1;
        ctx.emit_best_effort(Event::Signal {
            signal: name.to_string(),
            count: self.count,
        });
        Received {
            name,
            count: self.count,
        }
    }
}

/// Drives `work` to its end whatever signals arrive: they only hurry it
/// (the second one and later cancel `hurry`). Teardown runs this way.
pub(crate) async fn finish_despite_signals<T>(
    ctx: &Ctx,
    sigs: &mut Signals,
    hurry: &CancellationToken,
    work: impl Future<Output = T>,
) -> T {
    tokio::pin!(work);
    loop {
        tokio::select! {
            r = &mut work => return r,
            sig = sigs.next(ctx) => {
                if sig.escalation() == Escalation::Hurry {
                    hurry.cancel();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::Poll;

    use super::super::testing::*;
    use super::*;

    /// Polls `f` once: whether it is still pending (no time passes).
    async fn pending<F: Future>(f: &mut Pin<&mut F>) -> bool {
        std::future::poll_fn(|cx| Poll::Ready(f.as_mut().poll(cx).is_pending())).await
    }

    #[test]
    fn the_first_signal_stops_and_every_later_one_hurries() {
        let sig = |count| Received {
            name: "SIGTERM",
            count,
        };
        assert_eq!(sig(1).escalation(), Escalation::Stop);
        assert_eq!(sig(2).escalation(), Escalation::Hurry);
        assert_eq!(sig(5).escalation(), Escalation::Hurry);
    }

    #[tokio::test]
    async fn handlers_that_cannot_be_installed_are_an_error() {
        let e = Signals::install(SignalHandling::FailToInstall)
            .err()
            .expect("an error");
        assert_eq!(e.signal, "SIGINT");
    }

    #[tokio::test]
    async fn sigterm_during_teardown_lets_teardown_complete_and_a_second_only_hurries_it() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let endpoint = Endpoint::start().await;
        let ctx = ctx(dir.path(), &endpoint).await;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut sigs = Signals::install(SignalHandling::Test(rx)).expect("test signals");
        let hurry = CancellationToken::new();
        // Teardown's work: done when the test says so.
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<&str>();
        let work = async { done_rx.await.expect("the test finishes the work") };
        let f = finish_despite_signals(&ctx, &mut sigs, &hurry, work);
        tokio::pin!(f);

        tx.send("SIGTERM").expect("send");
        assert!(pending(&mut f).await, "teardown goes on after SIGTERM");
        assert!(!hurry.is_cancelled(), "the first signal does not hurry");

        tx.send("SIGTERM").expect("send");
        assert!(pending(&mut f).await, "teardown goes on after a second SIGTERM");
        assert!(hurry.is_cancelled(), "the second signal hurries");

        done_tx.send("torn down").expect("send");
        assert_eq!(f.await, "torn down", "teardown ran to its end");
        let events = events(dir.path());
        let signals: Vec<_> = events.iter().filter(|e| e["event"] == "signal").collect();
        assert_eq!(signals.len(), 2, "each signal is journaled");
        assert_eq!(signals[1]["count"], 2);
    }
}
