//! The log line format: tracing-subscriber's `Full` format, written
//! faster for the events logged outside any span (a request's `done`
//! line is one): the timestamp's date and time are formatted once a second
//! per thread, and fields are written without the styling machinery.
//! Lines read the same either way; events inside spans (peer links) and
//! coloured output (a terminal) go through the stock formatter.

use std::cell::RefCell;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{Format, Full, Writer};
use tracing_subscriber::fmt::time::SystemTime as StockTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The daemon's event format.
#[derive(Default)]
pub struct LineFormat {
    stock: Format<Full, StockTime>,
}

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        if writer.has_ansi_escapes() || ctx.event_scope().is_some() {
            return self.stock.format_event(ctx, writer, event);
        }
        let meta = event.metadata();
        write_timestamp(&mut writer, SystemTime::now())?;
        write!(writer, " {:>5} {}: ", meta.level().as_str(), meta.target())?;
        let mut fields = Fields {
            writer: &mut writer,
            first: true,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_char('\n')
    }
}

/// Writes fields as the stock format does: the message bare, then
/// `name=value`, strings quoted, all separated by spaces.
struct Fields<'a, 'w> {
    writer: &'a mut Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    fn field(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        if self.result.is_err() {
            return;
        }
        let space = if std::mem::take(&mut self.first) {
            ""
        } else {
            " "
        };
        self.result = if field.name() == "message" {
            write!(self.writer, "{space}{value}")
        } else {
            write!(self.writer, "{space}{}={value}", field.name())
        };
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.field(field, format_args!("{value}"));
        } else {
            self.field(field, format_args!("{value:?}"));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, format_args!("{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, format_args!("{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, format_args!("{value}"));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.field(field, format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, format_args!("{value:?}"));
    }
}

thread_local! {
    /// `YYYY-MM-DDTHH:MM:SS` of the last second this thread logged in.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// `2026-12-01T15:39:27.796714Z`, as the stock format writes it.
pub fn write_timestamp(writer: &mut impl fmt::Write, now: SystemTime) -> fmt::Result {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            cached.1.clear();
            let _ = write_date_time(&mut cached.1, secs);
            cached.0 = secs;
        }
        // Pieces, not `write!`: this is on every request's line.
        let mut micros = [b'0'; 6];
        let mut n = since.subsec_micros();
        for digit in micros.iter_mut().rev() {
            *digit = b'0' + (n % 10) as u8;
            n /= 10;
        }
        writer.write_str(&cached.1)?;
        writer.write_char('.')?;
        writer.write_str(std::str::from_utf8(&micros).unwrap_or("000000"))?;
        writer.write_char('Z')
    })
}

/// `YYYY-MM-DDTHH:MM:SS` (UTC) of `secs` since the epoch.
fn write_date_time(out: &mut impl fmt::Write, secs: u64) -> fmt::Result {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// The Gregorian date `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days on or after the epoch).
pub(crate) fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates() {
        // Checked with `date -u -d @N`.
        let table = [
            (0, "1970-01-01T00:00:00"),
            (951_782_400, "2000-02-29T00:00:00"),
            (1_709_251_199, "2024-02-29T23:59:59"),
            (1_764_603_567, "2025-12-01T15:39:27"),
            (4_102_444_799, "2099-12-31T23:59:59"),
        ];
        for (secs, want) in table {
            let mut got = String::new();
            write_date_time(&mut got, secs).expect("formats");
            assert_eq!(got, want, "{secs}");
        }
        let mut stamp = String::new();
        let t = UNIX_EPOCH + Duration::from_micros(1_764_603_567_000_042);
        write_timestamp(&mut stamp, t).expect("formats");
        assert_eq!(stamp, "2025-12-01T15:39:27.000042Z");
    }

    /// The fast lines read like the stock format's.
    #[test]
    fn lines_match_the_stock_format() {
        let lines = |fast: bool| {
            let buf = crate::log::SharedBuf::default();
            let out = buf.clone();
            let builder = tracing_subscriber::fmt()
                .with_ansi(false)
                .with_writer(move || out.clone());
            let subscriber: Box<dyn Subscriber + Send + Sync> = if fast {
                Box::new(builder.event_format(LineFormat::default()).finish())
            } else {
                Box::new(builder.finish())
            };
            tracing::subscriber::with_default(subscriber, || {
                let client: std::net::SocketAddr = "127.0.0.1:4000".parse().expect("addr");
                tracing::info!(
                    target: "pacmesh::request",
                    method = %http::Method::GET,
                    path = %"/core/os/x86_64/a b-1-1-any.pkg.tar.zst",
                    %client,
                    source = "local",
                    status = 206u16,
                    bytes = 4096u64,
                    ms = 0.25f64,
                    ok = true,
                    "done"
                );
                tracing::warn!(error = %"no \"such\" file", n = -3i64, "cannot read");
            });
            let text = String::from_utf8(buf.0.lock().clone()).expect("utf-8");
            // Without the timestamps, which differ.
            text.lines()
                .map(|l| l.split_once(' ').expect("a timestamp").1.to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(lines(true), lines(false));
    }
}
