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

    /// Microseconds of CPU since the mark.
    pub(crate) fn since(self, pid: Option<u32>) -> Option<u64> {
        let end = pid.and_then(cpu_us)?;
        Some(end.saturating_sub(self.0?))
    }
}
