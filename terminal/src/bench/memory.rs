//! A process's peak memory: VmHWM ("high water mark", the peak resident set) from
//! /proc/<pid>/status. Linux only, as vpcd is.

use super::{BenchError, Result};

/// The peak resident set of process `pid`, KiB.
pub(super) fn peak_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|source| BenchError::Io {
        what: format!("read {path}"),
        source,
    })?;
    vm_hwm(&status).ok_or_else(|| BenchError::Check(format!("{path} has no VmHWM line")))
}

fn vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    // `VmHWM:	    5432 kB`
    let mut words = line.split_whitespace().skip(1);
    let value = words.next()?.parse().ok()?;
    (words.next() == Some("kB")).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_high_water_mark() {
        let status = "Name:\tvaluecard-card\nVmPeak:\t   12000 kB\nVmHWM:\t    5432 kB\nVmRSS:\t    5000 kB\n";
        assert_eq!(vm_hwm(status), Some(5432));
        assert_eq!(vm_hwm("Name:\tx\n"), None);
        assert!(peak_kib(std::process::id()).expect("our own status") > 0);
    }
}
