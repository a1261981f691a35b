//! Several statements of one transaction sent to the database as one command where the
//! driver allows it.
//!
//! sqlx runs every SQLite statement on the connection's worker thread: each one is a
//! hand-off there and back, two thread switches, and on the one core a server shares
//! with its worker those switches were about half of what an append cost
//! (docs/benchmarks.md, "2026-12-05 (evening) — hand-offs per write"). SQLite takes several `;`-separated
//! statements in one command, so a write's version, messages, head and change counter
//! go in one hand-off. PostgreSQL's extended protocol prepares one statement at a time,
//! so there the same statements run one after another.
//!
//! Statements are written with their own `$1…$k` placeholders, as everywhere else;
//! [`Batch::joined`] renumbers them into one sequence.

/// A value bound to a placeholder.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Arg<'a> {
    Text(Option<&'a str>),
    Owned(Option<String>),
    Int(Option<i64>),
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(s: &'a str) -> Self {
        Arg::Text(Some(s))
    }
}

impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(s: Option<&'a str>) -> Self {
        Arg::Text(s)
    }
}

impl From<String> for Arg<'_> {
    fn from(s: String) -> Self {
        Arg::Owned(Some(s))
    }
}

impl From<Option<String>> for Arg<'_> {
    fn from(s: Option<String>) -> Self {
        Arg::Owned(s)
    }
}

impl From<i64> for Arg<'_> {
    fn from(n: i64) -> Self {
        Arg::Int(Some(n))
    }
}

impl From<Option<i64>> for Arg<'_> {
    fn from(n: Option<i64>) -> Self {
        Arg::Int(n)
    }
}

/// One statement and its arguments, in placeholder order.
#[derive(Debug)]
pub(crate) struct Statement<'a> {
    pub sql: String,
    pub args: Vec<Arg<'a>>,
}

/// Statements in the order they run. Only the last may return rows.
#[derive(Debug, Default)]
pub(crate) struct Batch<'a> {
    statements: Vec<Statement<'a>>,
}

impl<'a> Batch<'a> {
    pub fn push(&mut self, sql: impl Into<String>, args: Vec<Arg<'a>>) {
        self.statements.push(Statement { sql: sql.into(), args });
    }

    pub fn is_empty(&self) -> bool {
        self.statements.is_empty()
    }

    pub fn into_statements(self) -> Vec<Statement<'a>> {
        self.statements
    }

    /// One `;`-separated text whose placeholders number the arguments of all
    /// statements in turn, and those arguments.
    pub fn joined(self) -> Statement<'a> {
        let mut sql = String::new();
        let mut args = Vec::new();
        for s in self.statements {
            if !sql.is_empty() {
                sql.push_str(";\n");
            }
            renumber_into(&mut sql, &s.sql, args.len());
            args.extend(s.args);
        }
        Statement { sql, args }
    }
}

/// Appends `sql` with every `$n` written as `$(n + offset)`. Our statements have no
/// string literals or identifiers with `$` in them.
fn renumber_into(out: &mut String, sql: &str, offset: usize) {
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        match rest[..digits].parse::<usize>() {
            Ok(n) => out.push_str(&(n + offset).to_string()),
            Err(_) => out.push_str(&rest[..digits]),
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
}

/// Instantiates `run_batch` for a backend: one command (`one_command = true`) or one
/// statement at a time.
macro_rules! impl_batch {
    ($db:ty, one_command = $one:literal) => {
        fn bind_args<'q>(
            mut q: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments>,
            args: Vec<crate::store::batch::Arg<'_>>,
        ) -> sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments> {
            use crate::store::batch::Arg;
            for a in args {
                q = match a {
                    Arg::Text(s) => q.bind(s),
                    Arg::Owned(s) => q.bind(s),
                    Arg::Int(n) => q.bind(n),
                };
            }
            q
        }

        /// Runs the batch on `conn` (a transaction's); the first row of its last statement, if any.
        async fn run_batch(
            conn: &mut <$db as sqlx::Database>::Connection,
            batch: crate::store::batch::Batch<'_>,
        ) -> Result<Option<<$db as sqlx::Database>::Row>, StoreError> {
            if batch.is_empty() {
                return Ok(None);
            }
            if $one {
                let s = batch.joined();
                return bind_args(sqlx::query(sqlx::AssertSqlSafe(s.sql)), s.args)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(map_sqlx);
            }
            let mut statements = batch.into_statements();
            let last = statements.pop();
            for s in statements {
                bind_args(sqlx::query(sqlx::AssertSqlSafe(s.sql)), s.args)
                    .execute(&mut *conn)
                    .await
                    .map_err(map_sqlx)?;
            }
            match last {
                Some(s) => bind_args(sqlx::query(sqlx::AssertSqlSafe(s.sql)), s.args)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(map_sqlx),
                None => Ok(None),
            }
        }
    };
}

pub(crate) use impl_batch;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_number_the_arguments_of_all_statements_in_turn() {
        let mut b = Batch::default();
        b.push("INSERT INTO t (a, b) VALUES ($1, $2)", vec!["x".into(), 1i64.into()]);
        b.push("UPDATE u SET c = $2 WHERE d = $1 AND e = $10", (0..10).map(|n| Arg::Int(Some(n))).collect());
        b.push("SELECT n FROM v WHERE w = $1", vec![Arg::Text(None)]);
        let s = b.joined();
        assert_eq!(
            s.sql,
            "INSERT INTO t (a, b) VALUES ($1, $2);\nUPDATE u SET c = $4 WHERE d = $3 AND e = $12;\n\
             SELECT n FROM v WHERE w = $13"
        );
        assert_eq!(s.args.len(), 13);
        assert_eq!(s.args[0], Arg::Text(Some("x")));
        assert_eq!(s.args[12], Arg::Text(None));
    }

    #[test]
    fn a_dollar_without_digits_is_left_alone() {
        let mut out = String::new();
        renumber_into(&mut out, "SELECT $ , $1x", 5);
        assert_eq!(out, "SELECT $ , $6x");
    }
}
