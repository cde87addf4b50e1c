//! Exit codes. Commands return `anyhow::Result<()>`; these two error types
//! carry a specific exit code through it, and `code_for` maps any error to
//! the code `main` exits with.

use std::fmt;
use std::io;

/// Bad configuration or usage: exit 64 (`EX_USAGE`), like clap's own errors.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The command already printed what went wrong (e.g. every validation
/// error of a file); exit with `code` without printing anything more.
#[derive(Debug)]
pub struct Reported {
    pub code: u8,
}

impl fmt::Display for Reported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "failed (exit code {})", self.code)
    }
}

impl std::error::Error for Reported {}

pub const USAGE: u8 = 64;

pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

/// What `main` does with an error: the exit code, and whether to print it.
pub fn code_for(err: &anyhow::Error) -> (u8, bool) {
    if let Some(r) = err.downcast_ref::<Reported>() {
        return (r.code, false);
    }
    if err.downcast_ref::<UsageError>().is_some() {
        return (USAGE, true);
    }
    // A closed stdout (`liveseg replay ... | head`) is not a failure.
    let broken_pipe = err.chain().any(|e| {
        e.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    });
    if broken_pipe { (0, false) } else { (1, true) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;

    #[test]
    fn codes() {
        assert_eq!(code_for(&usage("bad flag")), (64, true));
        assert_eq!(
            code_for(&anyhow::Error::new(Reported { code: 1 })),
            (1, false)
        );
        let pipe: anyhow::Result<()> =
            Err(io::Error::from(io::ErrorKind::BrokenPipe)).context("writing stdout");
        assert_eq!(code_for(&pipe.expect_err("error")), (0, false));
        assert_eq!(code_for(&anyhow::anyhow!("boom")), (1, true));
    }
}
