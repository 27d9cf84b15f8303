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

#[cfg(test)]
mod tests {
    use super::*;

    fn shell(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    }

    #[tokio::test]
    async fn the_address_line_is_read() {
        let relay = spawn_relay(
            shell("echo 'listening on 127.0.0.1:4000'; sleep 5"),
            Duration::from_secs(5),
        )
        .await
        .expect("started");
        assert_eq!(relay.addr, SocketAddr::from(([127, 0, 0, 1], 4000)));
    }

    #[tokio::test]
    async fn an_exit_before_listening_is_told_from_a_bad_line_and_a_hang() {
        let exited = spawn_relay(shell("exit 1"), Duration::from_secs(5))
            .await
            .expect_err("no relay");
        assert_eq!(exited.kind(), std::io::ErrorKind::UnexpectedEof);
        let garbled = spawn_relay(shell("echo hello"), Duration::from_secs(5))
            .await
            .expect_err("no address");
        assert_eq!(garbled.kind(), std::io::ErrorKind::Other);
        let silent = spawn_relay(shell("sleep 5"), Duration::from_millis(100))
            .await
            .expect_err("no line in time");
        assert_eq!(silent.kind(), std::io::ErrorKind::TimedOut);
    }
}
