//! Logs off the request path.
//!
//! Every log line goes to stderr through one non-blocking writer (`tracing-appender`,
//! lossy): a request thread hands the finished line to a bounded queue and a writer
//! thread makes the system calls (batched), so a slow or blocked stderr never stalls the runtime.
//! When the queue is full the line is dropped and counted ([`dropped_lines`], exported
//! as `ctxguard_log_lines_dropped_total`): logs are best effort. Audit records are not
//! logs and never go this way.
//!
//! The per-request access line is the one written on every request, so it skips the
//! generic formatter: [`access`] writes it by hand into one buffer (the fields are
//! known; nothing to look up or escape but the path) — a fraction of a microsecond
//! where the `tracing` JSON formatter took several.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::OnceLock;
use std::time::Duration;

use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Text,
}

/// Lines that may wait for the writer thread before new ones are dropped.
pub const QUEUE_LINES: usize = 64 * 1024;

struct Sink {
    writer: NonBlocking,
    format: Format,
    dropped: ErrorCounter,
}

static SINK: OnceLock<Sink> = OnceLock::new();

/// Flushes the queued lines when dropped (keep it until the process ends).
pub struct LogGuard {
    _flush: Option<WorkerGuard>,
}

/// Starts the writer thread for stderr and returns the writer for the `tracing`
/// subscriber. Only the first call in a process installs it (tests start several
/// servers in one process); later calls get a writer to the same sink.
pub fn install(format: Format) -> (NonBlocking, LogGuard) {
    let mut guard = None;
    let sink = SINK.get_or_init(|| {
        // The writer thread drains the queue, then flushes: under load one system call
        // carries many lines; idle, each line is written at once.
        let (writer, g) = queue(std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr()), QUEUE_LINES);
        guard = Some(g);
        let dropped = writer.error_counter();
        Sink { writer, format, dropped }
    });
    (sink.writer.clone(), LogGuard { _flush: guard })
}

/// A lossy queue of `lines` lines in front of `out`, written by its own thread.
fn queue<W: std::io::Write + Send + 'static>(out: W, lines: usize) -> (NonBlocking, WorkerGuard) {
    NonBlockingBuilder::default().lossy(true).buffered_lines_limit(lines).thread_name("ctxguard-log").finish(out)
}

/// Lines dropped because the writer could not keep up.
pub fn dropped_lines() -> u64 {
    SINK.get().map_or(0, |s| s.dropped.dropped_lines() as u64)
}

/// One request's access line.
pub struct Access<'a> {
    pub request_id: &'a str,
    pub method: &'a str,
    /// The path without the query (which is never logged).
    pub path: &'a str,
    pub status: u16,
    pub latency: Duration,
}

/// Writes the access line of a request, if the `ctxguard::access` target is enabled
/// at info level (`--log`), without blocking. (Callers check the same first, to skip
/// gathering the fields.)
pub fn access(a: &Access<'_>) {
    if !tracing::enabled!(target: "ctxguard::access", tracing::Level::INFO) {
        return;
    }
    let Some(sink) = SINK.get() else { return };
    let line = format_line(sink.format, chrono::Utc::now(), a);
    // A full queue drops the line (and counts it); the writer never blocks.
    let mut writer = sink.writer.clone();
    let _ = writer.write_all(line.as_bytes());
}

fn format_line(format: Format, now: chrono::DateTime<chrono::Utc>, a: &Access<'_>) -> String {
    let mut line = String::with_capacity(160 + a.path.len());
    // Not `format(...)`: that parses its pattern on every call.
    let at = now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let ms = a.latency.as_secs_f64() * 1e3;
    match format {
        Format::Json => {
            let _ = write!(
                line,
                r#"{{"timestamp":"{at}","level":"INFO","fields":{{"message":"response","status":{},"latency_ms":{ms:.3}}},"target":"ctxguard::access","span":{{"request_id":""#,
                a.status
            );
            json_escape(&mut line, a.request_id);
            line.push_str(r#"","method":""#);
            json_escape(&mut line, a.method);
            line.push_str(r#"","path":""#);
            json_escape(&mut line, a.path);
            line.push_str("\"}}\n");
        }
        Format::Text => {
            let _ = writeln!(
                line,
                "{at}  INFO request{{request_id={} method={} path={}}}: ctxguard::access: response status={} latency_ms={ms:.3}",
                a.request_id,
                a.method,
                a.path.escape_debug(),
                a.status
            );
        }
    }
    line
}

/// Appends `s` as the inside of a JSON string: unescaped runs are copied whole (every
/// byte that needs escaping is ASCII, so the runs end on character boundaries).
fn json_escape(out: &mut String, s: &str) {
    let mut run = 0;
    for (i, b) in s.bytes().enumerate() {
        if b != b'"' && b != b'\\' && b >= 0x20 {
            continue;
        }
        out.push_str(&s[run..i]);
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            _ => {
                let _ = write!(out, "\\u{:04x}", b);
            }
        }
        run = i + 1;
    }
    out.push_str(&s[run..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stuck stderr (a full pipe nobody reads) never blocks a writer: lines past the
    /// queue are dropped and counted.
    #[test]
    fn a_stuck_writer_drops_and_counts_instead_of_blocking() {
        struct Stuck;
        impl std::io::Write for Stuck {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                std::thread::sleep(Duration::from_secs(3600));
                Ok(0)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let (mut writer, guard) = queue(Stuck, 16);
        let counter = writer.error_counter();
        let started = std::time::Instant::now();
        for _ in 0..10_000 {
            writer.write_all(b"a line\n").unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(2), "writing took {:?}", started.elapsed());
        assert!(counter.dropped_lines() >= 10_000 - 17, "dropped {}", counter.dropped_lines());
        std::mem::forget(guard); // its drop would wait for the stuck thread
    }

    #[test]
    fn the_json_access_line_is_json_with_every_field() {
        let at =
            chrono::DateTime::parse_from_rfc3339("2026-12-04T12:00:00.123456Z").unwrap().with_timezone(&chrono::Utc);
        let a = Access {
            request_id: "3f1c0f8e-1111-4222-8333-944455556666",
            method: "GET",
            path: "/context/\"odd\\path\u{1}é€/x",
            status: 404,
            latency: Duration::from_micros(1234),
        };
        let line = format_line(Format::Json, at, &a);
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1, "{line}");
        let v: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(v["timestamp"], "2026-12-04T12:00:00.123456Z");
        assert_eq!(v["fields"]["status"], 404);
        assert_eq!(v["fields"]["latency_ms"], 1.234);
        assert_eq!(v["span"]["request_id"], a.request_id);
        assert_eq!(v["span"]["path"], a.path, "escaped and read back unchanged");
        assert_eq!(v["target"], "ctxguard::access");
        let text = format_line(Format::Text, at, &a);
        assert!(text.contains("status=404") && text.contains(a.request_id) && !text.contains('\u{1}'), "{text}");
    }
}
