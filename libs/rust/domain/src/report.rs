//! How an error is shown in logs, events and operator messages: its whole cause chain, once.
//! Error types keep their own message short and hand the cause on through `source()`, so printing
//! an error with [`Report`] never repeats a cause.

use std::error::Error;
use std::fmt;

/// Displays an error and every cause under it, joined by `: `.
pub struct Report<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

impl fmt::Debug for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The error and its causes as one line.
pub fn chain(e: &(dyn Error + 'static)) -> String {
    Report(e).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot store the run")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("database unavailable")]
    struct Inner(#[source] std::io::Error);

    #[test]
    fn every_cause_is_shown_once() {
        let e = Outer(Inner(std::io::Error::other("connection refused")));
        assert_eq!(chain(&e), "cannot store the run: database unavailable: connection refused");
    }
}
