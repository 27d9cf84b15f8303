//! A relay process: started from a command, and found at the address it
//! prints on its first line.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// A started relay process (killed when dropped).
#[derive(Debug)]
pub struct RelayProcess {
    /// The process.
    pub child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its standard output, kept open so that the relay's writes to it
    /// do not fail.
    pub stdout: BufReader<ChildStdout>,
}

/// Starts `command` (a relay with `--listen 127.0.0.1:0` among its
/// arguments) with its standard output piped and waits up to `wait` for
/// its `listening on ADDR` line: an error of kind `TimedOut` if none came,
/// `UnexpectedEof` if the relay exited first.
pub async fn spawn_relay(mut command: Command, wait: Duration) -> std::io::Result<RelayProcess> {
    let mut child = command.stdout(Stdio::piped()).kill_on_drop(true).spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| std::io::Error::other("no standard output"))?;
    let mut stdout = BufReader::new(stdout);
    let mut line = String::new();
    tokio::time::timeout(wait, stdout.read_line(&mut line))
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the relay neither started nor exited in time",
            )
        })??;
    if line.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the relay exited before it listened",
        ));
    }
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| {
            std::io::Error::other(format!("unexpected first line from the relay: {line:?}"))
        })?;
    Ok(RelayProcess {
        child,
        addr,
        stdout,
    })
}
