//! Errors of the store, and the one table that says which database errors are the job's fault
//! and which are the environment's.
//!
//! A job must never be failed by a database that is restarting, failing over, overloaded or
//! cancelling statements: those errors leave the job as it was and the caller retries later
//! (DESIGN §3 rule 6). A failover shows itself through several SQLSTATEs at once — the old
//! primary's connections are terminated (57P01), new ones are refused while it shuts down
//! (57P03) or land on a standby that refuses writes (25006) — so the table is written from
//! what a failover, an overload and an operator's `pg_cancel_backend` actually produce.
//!
//! | SQLSTATE | condition | class | connection |
//! |---|---|---|---|
//! | `08xxx` | connection exception (lost, refused, protocol) | transient | discarded |
//! | `53xxx` | insufficient resources (too many connections, disk full, out of memory) | transient | kept |
//! | `57P01` | admin_shutdown (terminated by an operator, a shutdown or a promotion) | transient | discarded |
//! | `57P02` | crash_shutdown | transient | discarded |
//! | `57P03` | cannot_connect_now (starting up, shutting down, in recovery) | transient | discarded |
//! | `57P04`, `57P05`, … | database_dropped, idle_session_timeout and later `57P` codes | transient | discarded |
//! | `57014` | query_canceled (`pg_cancel_backend`, `statement_timeout`) | transient | kept |
//! | `55P03` | lock_not_available (`lock_timeout`, `NOWAIT`) | transient | kept |
//! | `40001` | serialization_failure | transient | kept |
//! | `40P01` | deadlock_detected | transient | kept |
//! | `25006` | read_only_sql_transaction (the session is on a standby or made read-only) | transient | discarded |
//! | anything else | constraint violations, bad data, … | the job's own | kept |
//!
//! Errors that never reached the server's SQL — I/O, TLS, protocol errors, a pool that timed
//! out or closed — are transient as well. "Discarded" means the pool must not hand that
//! connection out again: a broken connection fails its next check, and a read-only one is
//! refused by the writability check the pool runs on every connection it opens or hands out
//! (`super::pool`), so the pool reconnects — through the stable endpoint, to the new primary.

/// Errors of the store. The worker decides retry vs. fail from [`StoreError::is_transient`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {}", database_message(.0))]
    Database(#[from] sqlx::Error),
    #[error("migration error: {}", migrate_message(.0))]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("validation failed: {0}")]
    Validation(String),
    /// The server reached refuses writes (a standby, or made read-only): the environment's.
    #[error("database is {0}")]
    ReadOnly(String),
}

/// What an error says about the job and about the connection that produced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The environment's failure: retry later, never fail the job. `discard`: the connection
    /// that saw it cannot serve writes again (terminated, or on a read-only server).
    Transient { discard: bool },
    /// The statement itself was refused (a constraint, bad data): the job's own failure.
    Permanent,
}

impl ErrorClass {
    pub fn is_transient(self) -> bool {
        matches!(self, ErrorClass::Transient { .. })
    }
}

/// How a row of [`SQLSTATE_TABLE`] matches a code.
#[derive(Debug, Clone, Copy)]
enum Code {
    /// Every code starting with this (a class, `08`, or a subclass, `57P`).
    Prefix(&'static str),
    /// Exactly this code.
    Exact(&'static str),
}

const KEEP: ErrorClass = ErrorClass::Transient { discard: false };
const DISCARD: ErrorClass = ErrorClass::Transient { discard: true };

/// The table of the module docs, as data: the first matching row wins; no row, permanent.
const SQLSTATE_TABLE: [(Code, ErrorClass); 9] = [
    (Code::Prefix("08"), DISCARD),
    (Code::Prefix("53"), KEEP),
    (Code::Prefix("57P"), DISCARD),
    (Code::Exact("57014"), KEEP),
    (Code::Exact("55P03"), KEEP),
    (Code::Exact("40001"), KEEP),
    (Code::Exact("40P01"), KEEP),
    (Code::Exact("25006"), DISCARD),
    // Listed for the reader: what the table means by "anything else".
    (Code::Prefix(""), ErrorClass::Permanent),
];

/// The class of a SQLSTATE code, from [`SQLSTATE_TABLE`].
pub fn classify_sqlstate(code: &str) -> ErrorClass {
    SQLSTATE_TABLE
        .iter()
        .find(|(pattern, _)| match pattern {
            Code::Prefix(p) => code.starts_with(p),
            Code::Exact(c) => code == *c,
        })
        .map_or(ErrorClass::Permanent, |(_, class)| *class)
}

/// The class of an sqlx error: the table for a server error, transient for everything that
/// never got an answer from SQL (I/O, TLS, protocol, the pool).
pub fn classify_sqlx(e: &sqlx::Error) -> ErrorClass {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => DISCARD,
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => KEEP,
        sqlx::Error::Database(db) => db
            .code()
            .map_or(ErrorClass::Permanent, |code| classify_sqlstate(&code)),
        _ => ErrorClass::Permanent,
    }
}

impl StoreError {
    /// A lock wait gave up (`55P03 lock_not_available`, from a `lock_timeout`).
    pub fn is_lock_timeout(&self) -> bool {
        self.sql_state().is_some_and(|code| code == "55P03")
    }

    /// What this error says about the job and the connection ([`SQLSTATE_TABLE`]).
    pub fn class(&self) -> ErrorClass {
        match self {
            StoreError::Database(e) => classify_sqlx(e),
            StoreError::Migrate(sqlx::migrate::MigrateError::Execute(e)) => classify_sqlx(e),
            StoreError::ReadOnly(_) => DISCARD,
            _ => ErrorClass::Permanent,
        }
    }

    /// A failure of the connection or the server rather than of the data: retrying later can
    /// succeed, so it must never settle a job `failed` (DESIGN §3 rule 6).
    pub fn is_transient(&self) -> bool {
        self.class().is_transient()
    }

    /// The schema is not there (yet): a table or column the statements expect does not exist,
    /// which means `decay-worker migrate` has not run against this database.
    pub fn is_schema_missing(&self) -> bool {
        // 42P01: undefined_table; 42703: undefined_column (an older schema).
        self.sql_state()
            .is_some_and(|code| code == "42P01" || code == "42703")
    }

    /// A row with this key exists already (23505: unique_violation).
    pub fn is_unique_violation(&self) -> bool {
        self.sql_state().is_some_and(|code| code == "23505")
    }

    /// The SQLSTATE of a database error, if this is one.
    fn sql_state(&self) -> Option<String> {
        let e = match self {
            StoreError::Database(e)
            | StoreError::Migrate(sqlx::migrate::MigrateError::Execute(e)) => e,
            _ => return None,
        };
        match e {
            sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
            _ => None,
        }
    }
}

/// The text of a database error for an operator: the server's message and its detail, without
/// the `at line N` sqlx appends (a line of PostgreSQL's own C source, meaningless to us).
fn database_message(e: &sqlx::Error) -> String {
    let sqlx::Error::Database(db) = e else {
        return e.to_string();
    };
    let detail = db
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .and_then(|pg| pg.detail());
    match detail {
        Some(detail) => format!("{} ({detail})", db.message()),
        None => db.message().to_string(),
    }
}

/// A migration error's text, its database error cleaned as [`database_message`] does.
fn migrate_message(e: &sqlx::migrate::MigrateError) -> String {
    use sqlx::migrate::MigrateError;
    match e {
        MigrateError::Execute(db) => {
            format!("while executing migrations: {}", database_message(db))
        }
        MigrateError::ExecuteMigration(db, version) => format!(
            "while executing migration {version}: {}",
            database_message(db)
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every row of the documented table, plus the codes around it that must stay permanent.
    #[test]
    fn the_sqlstate_table_is_the_documented_one() {
        let cases = [
            ("08000", DISCARD), // connection_exception
            ("08003", DISCARD), // connection_does_not_exist
            ("08006", DISCARD), // connection_failure
            ("08P01", DISCARD), // protocol_violation
            ("53000", KEEP),    // insufficient_resources
            ("53100", KEEP),    // disk_full
            ("53200", KEEP),    // out_of_memory
            ("53300", KEEP),    // too_many_connections
            ("57P01", DISCARD), // admin_shutdown
            ("57P02", DISCARD), // crash_shutdown
            ("57P03", DISCARD), // cannot_connect_now
            ("57P04", DISCARD), // database_dropped
            ("57P05", DISCARD), // idle_session_timeout
            ("57014", KEEP),    // query_canceled
            ("55P03", KEEP),    // lock_not_available
            ("40001", KEEP),    // serialization_failure
            ("40P01", KEEP),    // deadlock_detected
            ("25006", DISCARD), // read_only_sql_transaction
            // The job's own (or ours): never retried forever.
            ("23505", ErrorClass::Permanent), // unique_violation
            ("23514", ErrorClass::Permanent), // check_violation
            ("22P02", ErrorClass::Permanent), // invalid_text_representation
            ("42P01", ErrorClass::Permanent), // undefined_table
            ("57000", ErrorClass::Permanent), // operator_intervention (not a 57P code)
            ("55000", ErrorClass::Permanent), // object_not_in_prerequisite_state
            ("25001", ErrorClass::Permanent), // active_sql_transaction
            ("40002", ErrorClass::Permanent), // transaction_integrity_constraint_violation
            ("", ErrorClass::Permanent),
        ];
        for (code, class) in cases {
            assert_eq!(classify_sqlstate(code), class, "SQLSTATE {code:?}");
        }
    }

    #[test]
    fn errors_without_an_answer_from_sql_are_transient() {
        let io = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(classify_sqlx(&io), DISCARD);
        assert_eq!(classify_sqlx(&sqlx::Error::PoolTimedOut), KEEP);
        assert_eq!(classify_sqlx(&sqlx::Error::PoolClosed), KEEP);
        assert_eq!(
            classify_sqlx(&sqlx::Error::RowNotFound),
            ErrorClass::Permanent
        );
        assert!(StoreError::Database(sqlx::Error::PoolTimedOut).is_transient());
        assert!(!StoreError::Validation("x".into()).is_transient());
    }
}
