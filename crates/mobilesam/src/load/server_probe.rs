//! What the load client reads about the server besides its answers: the session gauges
//! from its Prometheus page and its resident memory from `/proc`.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// Cached sessions (gauge).
pub const SESSIONS: &str = "mobilesam_sessions";
/// Bytes held by cached session embeddings (gauge).
pub const SESSION_CACHE_BYTES: &str = "mobilesam_session_cache_bytes";

/// `GET /metrics` from the server's metrics listener, as `name{labels}` -> value.
pub fn scrape(addr: SocketAddr) -> Result<HashMap<String, f64>> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("cannot connect to the metrics listener {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read the metrics page from {addr}"))?;
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("{addr} did not answer with HTTP");
    };
    if !head.starts_with("HTTP/1.1 200") {
        bail!(
            "{addr} answered {}",
            head.lines().next().unwrap_or_default()
        );
    }
    Ok(parse_metrics(body))
}

/// Parses Prometheus text exposition lines into `name{labels}` -> value.
pub fn parse_metrics(body: &str) -> HashMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// Resident and peak resident memory of a process, in bytes, from `/proc/PID/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Memory {
    /// `VmRSS`.
    pub rss_bytes: u64,
    /// `VmHWM`, the peak RSS so far.
    pub peak_rss_bytes: u64,
}

/// Reads `/proc/PID/status`.
pub fn memory(pid: u32) -> Result<Memory> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let field = |name: &str| -> Result<u64> {
        let line = text
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("{path} has no {name}"))?;
        let kib: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .with_context(|| format!("cannot parse {line:?}"))?;
        Ok(kib * 1024)
    };
    Ok(Memory {
        rss_bytes: field("VmRSS:")?,
        peak_rss_bytes: field("VmHWM:")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exposition_lines() {
        let m = parse_metrics(
            "# HELP x y\nmobilesam_sessions 2\nmobilesam_session_cache_bytes 8388608\n\
             mobilesam_requests_total{kind=\"prompt\",code=\"OK\"} 5\n",
        );
        assert_eq!(m[SESSIONS], 2.0);
        assert_eq!(m[SESSION_CACHE_BYTES], 8_388_608.0);
        assert_eq!(
            m["mobilesam_requests_total{kind=\"prompt\",code=\"OK\"}"],
            5.0
        );
    }

    #[test]
    fn reads_its_own_memory() {
        let m = memory(std::process::id()).expect("own status");
        assert!(m.rss_bytes > 0 && m.peak_rss_bytes >= m.rss_bytes);
    }
}
