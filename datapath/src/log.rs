//! Event logs: one line per event on stderr, `key=value` pairs after a timestamp, or one JSON
//! object per line for collectors (`gateway run --log-format json`). Events are rare (a port
//! opened, a reload, a route change, a neighbour learned, a link fault): never per packet.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

static JSON: AtomicBool = AtomicBool::new(false);

/// How events are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// `ts=... event=... key=value ...`
    #[default]
    Text,
    /// `{"ts":"...","event":"...","key":"value",...}`
    Json,
}

/// Sets the format of every event from now on.
pub fn set_format(f: Format) {
    JSON.store(f == Format::Json, Ordering::Relaxed);
}

/// Writes event `event` with its fields on stderr.
pub fn event(event: &str, fields: &[(&str, &dyn std::fmt::Display)]) {
    let ts = timestamp(std::time::SystemTime::now());
    let line = if JSON.load(Ordering::Relaxed) {
        render_json(&ts, event, fields)
    } else {
        render_text(&ts, event, fields)
    };
    eprintln!("{line}");
}

/// `ts=... event=... k=v ...`; values with spaces, quotes or `=` are quoted.
pub fn render_text(ts: &str, event: &str, fields: &[(&str, &dyn std::fmt::Display)]) -> String {
    let mut s = format!("ts={ts} event={event}");
    for (k, v) in fields {
        let v = v.to_string();
        if v.is_empty() || v.contains([' ', '"', '=', '\n', '\t']) {
            let _ = write!(s, " {k}={v:?}");
        } else {
            let _ = write!(s, " {k}={v}");
        }
    }
    s
}

/// One JSON object; every value a string.
pub fn render_json(ts: &str, event: &str, fields: &[(&str, &dyn std::fmt::Display)]) -> String {
    let mut s = format!("{{\"ts\":{},\"event\":{}", json_str(ts), json_str(event));
    for (k, v) in fields {
        let _ = write!(s, ",{}:{}", json_str(k), json_str(&v.to_string()));
    }
    s.push('}');
    s
}

fn json_str(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(s, "\\u{:04x}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// RFC 3339 UTC with milliseconds, from the system clock (civil date from days since the
/// epoch, as in Howard Hinnant's `civil_from_days`).
pub fn timestamp(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = |s| std::time::UNIX_EPOCH + std::time::Duration::from_millis(s);
        assert_eq!(timestamp(t(0)), "1970-01-01T00:00:00.000Z");
        // 2026-12-04T17:13:05.250Z
        assert_eq!(timestamp(t(1_796_404_385_250)), "2026-12-04T17:13:05.250Z");
        // A leap day.
        assert_eq!(timestamp(t(951_782_400_000)), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn text_quotes_what_needs_it_and_json_escapes() {
        let f: [(&str, &dyn std::fmt::Display); 3] =
            [("port", &"ext"), ("why", &"link down"), ("n", &3)];
        assert_eq!(
            render_text("T", "link", &f),
            "ts=T event=link port=ext why=\"link down\" n=3"
        );
        assert_eq!(
            render_json("T", "link", &[("msg", &"a \"b\"\n")]),
            "{\"ts\":\"T\",\"event\":\"link\",\"msg\":\"a \\\"b\\\"\\n\"}"
        );
    }
}
