//! The event stream (every state change, numbered) and the e-mail outbox (messages waiting to
//! be sent, retried with backoff until the SMTP server takes them).

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::{now, Store, StoreError};

/// One event as stored: its sequence number, time and JSON body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredEvent {
    /// The event's sequence number (increasing, never reused).
    pub seq: i64,
    /// Seconds since the epoch.
    pub at: i64,
    /// What happened: `run`, `job`, `device`, `erase`, `bay`.
    pub kind: String,
    /// The event's fields.
    pub body: serde_json::Value,
}

/// One message in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    /// The row id.
    pub id: i64,
    /// The envelope's sender.
    pub sender: String,
    /// The envelope's one recipient.
    pub recipient: String,
    /// The subject, for logs.
    pub subject: String,
    /// The whole RFC 5322 message.
    pub message: String,
    /// Attempts so far.
    pub attempts: u32,
}

impl Store {
    /// Appends an event; returns its sequence number.
    ///
    /// # Errors
    ///
    /// The database fails.
    pub fn append_event(
        &self,
        kind: &str,
        body: &serde_json::Value,
    ) -> Result<StoredEvent, StoreError> {
        let conn = self.conn();
        let at = now();
        conn.execute(
            "INSERT INTO event (at, kind, body) VALUES (?1, ?2, ?3)",
            params![at, kind, body.to_string()],
        )
        .map_err(|e| self.sql(e))?;
        Ok(StoredEvent {
            seq: conn.last_insert_rowid(),
            at,
            kind: kind.to_owned(),
            body: body.clone(),
        })
    }

    /// Events after sequence number `since`, oldest first, at most `limit`.
    ///
    /// # Errors
    ///
    /// The database fails.
    pub fn events_since(&self, since: i64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT seq, at, kind, body FROM event WHERE seq > ?1 ORDER BY seq LIMIT ?2")
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map(params![since, limit], |r| {
                let body: String = r.get(3)?;
                Ok(StoredEvent {
                    seq: r.get(0)?,
                    at: r.get(1)?,
                    kind: r.get(2)?,
                    body: serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
                })
            })
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sql(e))
    }

    /// Queues a message unless one with the same `dedup` key was queued before (a resumed
    /// run reports the same result again); returns whether it was queued.
    ///
    /// # Errors
    ///
    /// The database fails.
    pub fn enqueue_mail(
        &self,
        dedup: &str,
        sender: &str,
        recipient: &str,
        subject: &str,
        message: &str,
    ) -> Result<bool, StoreError> {
        let at = now();
        let n = self
            .conn()
            .execute(
                "INSERT OR IGNORE INTO outbox (dedup, created_at, sender, recipient, subject, message, next_attempt_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?2)",
                params![dedup, at, sender, recipient, subject, message],
            )
            .map_err(|e| self.sql(e))?;
        Ok(n == 1)
    }

    /// Unsent messages due at `at` (seconds since the epoch), oldest first.
    ///
    /// # Errors
    ///
    /// The database fails.
    pub fn due_mail(&self, at: i64, limit: u32) -> Result<Vec<OutboxMessage>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT id, sender, recipient, subject, message, attempts FROM outbox
                 WHERE sent_at IS NULL AND next_attempt_at <= ?1 ORDER BY id LIMIT ?2",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map(params![at, limit], |r| {
                Ok(OutboxMessage {
                    id: r.get(0)?,
                    sender: r.get(1)?,
                    recipient: r.get(2)?,
                    subject: r.get(3)?,
                    message: r.get(4)?,
                    attempts: u32::try_from(r.get::<_, i64>(5)?).unwrap_or(u32::MAX),
                })
            })
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sql(e))
    }

    /// When the next unsent message is due, if any.
    ///
    /// # Errors
    ///
    /// The database fails.
    pub fn next_mail_due(&self) -> Result<Option<i64>, StoreError> {
        self.conn()
            .query_row(
                "SELECT MIN(next_attempt_at) FROM outbox WHERE sent_at IS NULL",
                [],
                |r| r.get::<_, Option<i64>>(0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(|e| self.sql(e))
    }

    /// Unsent messages.
    ///
    /// # Errors
    ///
    /// The database fails.
    pub fn pending_mail(&self) -> Result<u64, StoreError> {
        self.conn()
            .query_row(
                "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| u64::try_from(n).unwrap_or(0))
            .map_err(|e| self.sql(e))
    }

    /// Marks message `id` sent.
    ///
    /// # Errors
    ///
    /// The database fails.
    pub fn mail_sent(&self, id: i64) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "UPDATE outbox SET sent_at = ?2, last_error = '' WHERE id = ?1",
                params![id, now()],
            )
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// Records a failed attempt at message `id`; the next one is due at `next_at`.
    ///
    /// # Errors
    ///
    /// The database fails.
    pub fn mail_failed(&self, id: i64, error: &str, next_at: i64) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3 WHERE id = ?1",
                params![id, error, next_at],
            )
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// Makes every unsent message due now (at start: the outage may be over).
    ///
    /// # Errors
    ///
    /// The database fails.
    pub fn retry_mail_now(&self) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "UPDATE outbox SET next_attempt_at = ?1 WHERE sent_at IS NULL",
                params![now()],
            )
            .map_err(|e| self.sql(e))?;
        Ok(())
    }
}
