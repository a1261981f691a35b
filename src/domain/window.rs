//! Windows on a long history: agents that need only the recent turns read those, not
//! the whole history. Positions are 1-based: message 1 is the first of the history.

use std::ops::Range;

use super::Error;

/// Which messages of a history to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HistoryWindow {
    /// The last `n` messages (all of them when the history is shorter).
    Last(usize),
    /// Messages after position `after` (0: from the first), at most `limit` of them.
    After { after: usize, limit: Option<usize> },
}

/// The most messages one window or page may ask for.
pub const MAX_WINDOW: usize = 10_000;

/// The largest position a query may name: positions are stored as 64-bit signed
/// integers (the API's `int64`).
pub const MAX_POSITION: u64 = i64::MAX as u64;

/// Checks a position given as `after`.
pub fn position(after: Option<u64>) -> Result<Option<u64>, Error> {
    match after {
        Some(a) if a > MAX_POSITION => Err(Error::invalid("after", format!("must be at most {MAX_POSITION}"))),
        other => Ok(other),
    }
}

impl HistoryWindow {
    /// The window a request's `last`, `after` and `limit` ask for; `None` for the
    /// whole history. `last` and `after` exclude each other; `limit` goes with `after`.
    pub fn from_query(last: Option<u64>, after: Option<u64>, limit: Option<u64>) -> Result<Option<Self>, Error> {
        let after = position(after)?;
        let size = |name: &'static str, v: u64| -> Result<usize, Error> {
            usize::try_from(v)
                .ok()
                .filter(|v| *v <= MAX_WINDOW)
                .ok_or_else(|| Error::invalid(name, format!("must be at most {MAX_WINDOW}")))
        };
        match (last, after, limit) {
            (None, None, None) => Ok(None),
            (Some(_), Some(_), _) => Err(Error::invalid("last", "cannot be combined with after; choose one")),
            (Some(_), None, Some(_)) => Err(Error::invalid("limit", "goes with after, not with last")),
            (Some(n), None, None) => Ok(Some(HistoryWindow::Last(size("last", n)?))),
            (None, after, limit) => {
                let limit = limit.map(|l| size("limit", l)).transpose()?;
                if limit == Some(0) {
                    return Err(Error::invalid("limit", "must be at least 1"));
                }
                let after = usize::try_from(after.unwrap_or(0)).unwrap_or(usize::MAX);
                Ok(Some(HistoryWindow::After { after, limit }))
            }
        }
    }

    /// The indexes (0-based) of the window in a history of `len` messages; empty when
    /// `after` is at or past the end.
    pub fn range(self, len: usize) -> Range<usize> {
        match self {
            HistoryWindow::Last(n) => len.saturating_sub(n)..len,
            HistoryWindow::After { after, limit } => {
                let start = after.min(len);
                let end = limit.map_or(len, |l| start.saturating_add(l).min(len));
                start..end
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::HistoryWindow::{After, Last};
    use super::*;

    #[test]
    fn ranges_at_the_edges() {
        assert_eq!(Last(3).range(10), 7..10);
        assert_eq!(Last(30).range(10), 0..10);
        assert_eq!(Last(0).range(10), 10..10);
        assert_eq!(Last(5).range(0), 0..0);
        assert_eq!(After { after: 0, limit: None }.range(4), 0..4);
        assert_eq!(After { after: 2, limit: Some(1) }.range(4), 2..3);
        assert_eq!(After { after: 4, limit: Some(10) }.range(4), 4..4);
        assert_eq!(After { after: 99, limit: None }.range(4), 4..4);
    }

    #[test]
    fn queries() {
        assert_eq!(HistoryWindow::from_query(None, None, None).unwrap(), None);
        assert_eq!(HistoryWindow::from_query(Some(5), None, None).unwrap(), Some(Last(5)));
        assert_eq!(
            HistoryWindow::from_query(None, Some(3), Some(2)).unwrap(),
            Some(After { after: 3, limit: Some(2) })
        );
        assert_eq!(HistoryWindow::from_query(None, None, Some(2)).unwrap(), Some(After { after: 0, limit: Some(2) }));
        assert!(HistoryWindow::from_query(Some(1), Some(1), None).is_err());
        assert!(HistoryWindow::from_query(Some(1), None, Some(1)).is_err());
        assert!(HistoryWindow::from_query(None, None, Some(0)).is_err());
        assert!(HistoryWindow::from_query(Some(10_001), None, None).is_err());
    }
}
