//! CPU time and resident memory of a process, from /proc.

use std::path::Path;
use std::sync::OnceLock;

/// Clock ticks per second (`getconf CLK_TCK`; 100 if that fails).
fn ticks_per_second() -> u64 {
    static TCK: OnceLock<u64> = OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// User plus system CPU time of `pid` (all its threads), in microseconds.
pub(crate) fn cpu_us(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, so 11 and
    // 12 after the state field (field 3 is rest[0]).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) * 1_000_000 / ticks_per_second())
}

/// Resident set size of `pid`, in bytes.
pub(crate) fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The pid in a pid file.
pub(crate) fn read_pidfile(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A process's CPU time between two points.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuMark(Option<u64>);

impl CpuMark {
    pub(crate) fn now(pid: Option<u32>) -> Self {
        Self(pid.and_then(cpu_us))
    }

    /// The process's CPU time at the mark, microseconds.
    pub(crate) fn start_us(self) -> Option<u64> {
        self.0
    }

    /// Microseconds of CPU since the mark.
    pub(crate) fn since(self, pid: Option<u32>) -> Option<u64> {
        let end = pid.and_then(cpu_us)?;
        Some(end.saturating_sub(self.0?))
    }
}

/// Fields of `/proc/PID/stat` after the command name, as numbers where
/// they parse (index 0 is the state field, field 3 of the whole line).
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    Some(
        rest.split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

/// CPU time of a server made of a parent and its child processes (the
/// PostgreSQL postmaster and its backends), in microseconds: the parent's
/// utime + stime + cutime + cstime (reaped children included) plus utime +
/// stime of every live child.
pub(crate) fn tree_cpu_us(parent: u32) -> Option<u64> {
    let own = stat_fields(parent)?;
    // utime, stime, cutime, cstime: fields 14 to 17 of the line.
    let mut ticks: u64 = own.get(11..15)?.iter().sum();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(f) = stat_fields(pid) {
            // ppid is field 4 of the line.
            if f.get(1) == Some(&u64::from(parent)) {
                ticks += f.get(11).unwrap_or(&0) + f.get(12).unwrap_or(&0);
            }
        }
    }
    Some(ticks * 1_000_000 / ticks_per_second())
}

/// CPU time of the server under load: every relay node, and the database
/// server's process tree if its pid is known.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ServerCpu {
    /// Sum over the relay nodes, microseconds.
    pub(crate) relays_us: u64,
    /// The database server, microseconds.
    pub(crate) db_us: Option<u64>,
}

impl ServerCpu {
    /// Reads it now; `None` if a relay's time cannot be read.
    pub(crate) fn now(relays: &[u32], db: Option<u32>) -> Option<Self> {
        let relays_us = relays.iter().map(|&p| cpu_us(p)).sum::<Option<u64>>()?;
        Some(Self {
            relays_us,
            db_us: db.and_then(tree_cpu_us),
        })
    }

    /// What was spent between `earlier` and `self`.
    pub(crate) fn minus(self, earlier: Self) -> Self {
        Self {
            relays_us: self.relays_us.saturating_sub(earlier.relays_us),
            db_us: match (self.db_us, earlier.db_us) {
                (Some(a), Some(b)) => Some(a.saturating_sub(b)),
                _ => None,
            },
        }
    }

    /// Relays and database together.
    pub(crate) fn total_us(self) -> u64 {
        self.relays_us + self.db_us.unwrap_or(0)
    }
}

/// Waits until a server's CPU time, as `read` gives it in microseconds,
/// grows by less than 1% of the wall time over 200 ms (at most 20 s):
/// the work it left for after the load (a relay sweeping acknowledged
/// rows, say) is then done. Answers the time read last.
pub(crate) async fn settled_cpu_us(read: impl Fn() -> Option<u64>) -> Option<u64> {
    const STEP: std::time::Duration = std::time::Duration::from_millis(200);
    let mut last = read()?;
    for _ in 0..100 {
        tokio::time::sleep(STEP).await;
        let now = read()?;
        let grew = now.saturating_sub(last);
        last = now;
        if grew < 2_000 {
            break;
        }
    }
    Some(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_cpu_counts_a_busy_child() {
        let me = std::process::id();
        let before = tree_cpu_us(me).expect("own stat");
        let mut child = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"])
            .spawn()
            .expect("sh");
        // Sampled while the child runs, then after it is reaped.
        std::thread::sleep(std::time::Duration::from_millis(300));
        let during = tree_cpu_us(me).expect("own stat");
        child.wait().expect("wait");
        let after = tree_cpu_us(me).expect("own stat");
        let child_only = after.saturating_sub(before);
        assert!(during >= before);
        assert!(
            after >= during,
            "reaped child's time lost: {during} -> {after}"
        );
        assert!(
            child_only >= 10_000,
            "child's CPU not counted: {child_only} us"
        );
    }

    #[test]
    fn server_cpu_subtracts_and_adds() {
        let a = ServerCpu {
            relays_us: 100,
            db_us: Some(50),
        };
        let b = ServerCpu {
            relays_us: 400,
            db_us: Some(250),
        };
        let d = b.minus(a);
        assert_eq!(
            d,
            ServerCpu {
                relays_us: 300,
                db_us: Some(200)
            }
        );
        assert_eq!(d.total_us(), 500);
        let no_db = ServerCpu {
            relays_us: 7,
            db_us: None,
        };
        assert_eq!(no_db.minus(a).db_us, None);
        assert_eq!(no_db.total_us(), 7);
    }
}
