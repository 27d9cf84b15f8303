//! A private PostgreSQL server for tests: `initdb` into a temporary
//! directory (as the `postgres` user when the tests run as root), a free
//! port on 127.0.0.1, the Unix socket in that directory; stopped and
//! removed on drop.
//!
//! Without PostgreSQL's binaries the tests that need it print why and
//! return; with `TACIT_REQUIRE_POSTGRES=1` (CI) they fail instead.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A running private server.
#[derive(Debug)]
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

/// Where PostgreSQL's server binaries are: `TACIT_PG_BIN`, or the newest
/// `/usr/lib/postgresql/*/bin` with an `initdb`.
fn bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("TACIT_PG_BIN") {
        let dir = PathBuf::from(dir);
        return dir.join("initdb").exists().then_some(dir);
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    dirs.sort();
    dirs.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl Postgres {
    /// Starts a server, or explains why not and returns `None` (a failure
    /// when `TACIT_REQUIRE_POSTGRES=1`).
    pub fn start() -> Option<Self> {
        let required = std::env::var("TACIT_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
        let Some(bin) = bin_dir() else {
            assert!(
                !required,
                "TACIT_REQUIRE_POSTGRES=1 but no PostgreSQL server binaries (TACIT_PG_BIN or /usr/lib/postgresql/*/bin)"
            );
            eprintln!(
                "skipped: no PostgreSQL server binaries (TACIT_PG_BIN or /usr/lib/postgresql/*/bin/initdb)"
            );
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("tacit-relay-pg-")
            .tempdir()
            .unwrap();
        let as_postgres = is_root();
        if as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = Self {
            dir,
            bin,
            port,
            as_postgres,
        };
        let data = pg.data();
        pg.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        pg.pg_ctl(&["start", "-w", "-t", "60"]);
        pg.run(
            "createdb",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                "tacit",
            ],
        );
        Some(pg)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The socket directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The URL of the test database, as `--db` takes it.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/tacit", self.port)
    }

    /// Runs one of the server's binaries (as `postgres` when root) and
    /// checks that it succeeded.
    fn run(&self, program: &str, args: &[&str]) {
        let path = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let out = command
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{program} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn pg_ctl(&self, action: &[&str]) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let data = self.data();
        let log = self.dir.path().join("server.log");
        let mut args = vec![
            "-D",
            data.to_str().unwrap(),
            "-l",
            log.to_str().unwrap(),
            "-o",
            &options,
        ];
        args.extend_from_slice(action);
        self.run("pg_ctl", &args);
    }

    /// Restarts the server: `mode` is `fast` (clients are disconnected,
    /// a checkpoint is written) or `immediate` (as a crash: recovery
    /// replays the WAL at start).
    pub fn restart(&self, mode: &str) {
        self.pg_ctl(&["restart", "-w", "-t", "60", "-m", mode]);
    }

    /// Stops the server (`immediate`: as a crash).
    pub fn stop(&self, mode: &str) {
        self.pg_ctl(&["stop", "-w", "-m", mode]);
    }

    /// Starts the stopped server again.
    pub fn start_again(&self) {
        self.pg_ctl(&["start", "-w", "-t", "60"]);
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data();
        let path = self.bin.join("pg_ctl");
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let _ = command
            .args(["-D", data.to_str().unwrap_or(""), "-m", "immediate", "stop"])
            .output();
    }
}
