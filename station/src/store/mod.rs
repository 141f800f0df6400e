//! The job store: accounts, their access keys, jobs and artifacts, in SQLite (WAL) in the data
//! directory. Schema changes are numbered migrations applied at open.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rand::Rng;
use rusqlite::{params, Connection, OptionalExtension};

use crate::job::{new_job_id, LocationCode, ProgressCode};
use crate::keys::{KeyError, StationKey};

mod journal;
mod notify;
mod runs;

pub use journal::JobJournal;
pub use notify::{OutboxMessage, StoredEvent};
pub use runs::{AuditEntry, EraseRecordRow, RunRecord, RunState};

/// The store's file inside the data directory.
pub const DATABASE_FILE: &str = "station.db";

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("station database {path}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// The data directory could not be created.
    #[error("data directory {path}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A secret could not be decrypted.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A stored value is not what the code expects (a newer schema, or damage).
    #[error("station database {path}: {what}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What.
        what: String,
    },
    /// An account name is taken.
    #[error("an account named `{0}` already exists")]
    AccountExists(String),
}

/// Each migration moves the schema from version N to N+1.
const MIGRATIONS: &[&str] = &[
    // 1: accounts, access keys, jobs, artifacts.
    "CREATE TABLE account (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE access_key (
        access_key_id TEXT PRIMARY KEY,
        account_id INTEGER NOT NULL REFERENCES account(id),
        secret_sealed BLOB NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE job (
        job_id TEXT PRIMARY KEY,
        account_id INTEGER NOT NULL REFERENCES account(id),
        job_type TEXT NOT NULL,
        kind TEXT NOT NULL,
        manifest TEXT NOT NULL,
        manifest_addendum TEXT,
        location_code TEXT NOT NULL,
        progress_code TEXT NOT NULL,
        error_count INTEGER NOT NULL DEFAULT 0,
        log_bucket TEXT NOT NULL,
        log_key TEXT NOT NULL,
        signature TEXT NOT NULL,
        carrier TEXT,
        tracking_number TEXT,
        created_at INTEGER NOT NULL,
        seq INTEGER NOT NULL
    );
    CREATE INDEX job_by_account ON job(account_id, seq);
    CREATE TABLE artifact (
        job_id TEXT NOT NULL REFERENCES job(job_id),
        position INTEGER NOT NULL,
        description TEXT NOT NULL,
        url TEXT NOT NULL,
        PRIMARY KEY (job_id, position)
    );
    CREATE TABLE document (
        token TEXT PRIMARY KEY,
        job_id TEXT,
        content_type TEXT NOT NULL,
        body BLOB NOT NULL,
        created_at INTEGER NOT NULL
    );",
    // 2: the daemon's memory: devices seen, each device's run through the station with its
    // transitions, the transfer journal, erase records and the operators' audit trail.
    "CREATE TABLE device (
        id INTEGER PRIMARY KEY,
        identity TEXT NOT NULL,
        devnode TEXT NOT NULL,
        bay TEXT NOT NULL,
        details TEXT NOT NULL,
        seen_at INTEGER NOT NULL
    );
    CREATE TABLE run (
        id INTEGER PRIMARY KEY,
        device_id INTEGER NOT NULL REFERENCES device(id),
        identity TEXT NOT NULL,
        bay TEXT NOT NULL,
        job_id TEXT REFERENCES job(job_id),
        state TEXT NOT NULL,
        message TEXT NOT NULL,
        erase_started INTEGER NOT NULL DEFAULT 0,
        erase_written INTEGER NOT NULL DEFAULT 0,
        erase_verified INTEGER NOT NULL DEFAULT 0,
        erase_checked INTEGER NOT NULL DEFAULT 0,
        destroy INTEGER NOT NULL DEFAULT 0,
        started_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE INDEX run_by_identity ON run(identity, id);
    CREATE TABLE transition (
        run_id INTEGER NOT NULL REFERENCES run(id),
        at INTEGER NOT NULL,
        state TEXT NOT NULL,
        message TEXT NOT NULL
    );
    CREATE INDEX transition_by_run ON transition(run_id);
    CREATE TABLE journal_file (
        job_id TEXT NOT NULL,
        key TEXT NOT NULL,
        size INTEGER NOT NULL,
        md5 TEXT NOT NULL,
        etag TEXT NOT NULL,
        content_type TEXT NOT NULL,
        PRIMARY KEY (job_id, key)
    );
    CREATE TABLE journal_upload (
        job_id TEXT NOT NULL,
        key TEXT NOT NULL,
        upload_id TEXT NOT NULL,
        PRIMARY KEY (job_id, key)
    );
    CREATE TABLE journal_part (
        job_id TEXT NOT NULL,
        key TEXT NOT NULL,
        upload_id TEXT NOT NULL,
        number INTEGER NOT NULL,
        etag TEXT NOT NULL,
        size INTEGER NOT NULL,
        PRIMARY KEY (job_id, key, upload_id, number)
    );
    CREATE TABLE erase_record (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES run(id),
        job_id TEXT,
        device TEXT NOT NULL,
        bytes_written INTEGER NOT NULL,
        bytes_verified INTEGER NOT NULL,
        method TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        ended_at INTEGER NOT NULL,
        result TEXT NOT NULL,
        certificate TEXT NOT NULL
    );
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        uid INTEGER NOT NULL,
        action TEXT NOT NULL,
        detail TEXT NOT NULL
    );",
    // 3: the event stream and the e-mail outbox.
    "CREATE TABLE event (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        kind TEXT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        dedup TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL,
        sender TEXT NOT NULL,
        recipient TEXT NOT NULL,
        subject TEXT NOT NULL,
        message TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        last_error TEXT NOT NULL DEFAULT '',
        sent_at INTEGER
    );
    CREATE INDEX outbox_pending ON outbox (next_attempt_at) WHERE sent_at IS NULL;",
];

/// An access key's secret, wiped when dropped.
pub type Secret = zeroize::Zeroizing<Vec<u8>>;

/// An account, as authentication finds it.
#[derive(Debug, Clone)]
pub struct Account {
    /// The account's row id.
    pub id: i64,
    /// Its name.
    pub name: String,
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    /// The job ID.
    pub job_id: String,
    /// The owning account.
    pub account_id: i64,
    /// `Import` or `Export`.
    pub job_type: String,
    /// The manifest's kind (`s3-import`, ...).
    pub kind: String,
    /// The manifest as submitted (secrets included; never returned unredacted).
    pub manifest: String,
    /// The ManifestAddendum, if any.
    pub manifest_addendum: Option<String>,
    /// Where the device is.
    pub location: LocationCode,
    /// How the job is going.
    pub progress: ProgressCode,
    /// Errors in the log.
    pub error_count: u64,
    /// The log's bucket.
    pub log_bucket: String,
    /// The log's key.
    pub log_key: String,
    /// The job's signature (base64).
    pub signature: String,
    /// The return carrier, once returned.
    pub carrier: Option<String>,
    /// The return tracking number, once returned.
    pub tracking_number: Option<String>,
    /// Seconds since the epoch.
    pub created_at: i64,
}

/// An artifact of a job (the EBS/Glacier PDF).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// What it is.
    pub description: String,
    /// Where to get it.
    pub url: String,
}

/// The station's database.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
    key: Arc<StationKey>,
}

impl Store {
    /// Opens (creating if needed) the database in `data_dir` and applies migrations.
    ///
    /// # Errors
    ///
    /// The directory or database cannot be created or opened, or is from a newer version.
    pub fn open(data_dir: &Path, key: Arc<StationKey>) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::Io {
            path: data_dir.to_owned(),
            source,
        })?;
        let path = data_dir.join(DATABASE_FILE);
        let sql = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let mut conn = Connection::open(&path).map_err(sql)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(sql)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(sql)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(sql)?;
        let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
        if version > known {
            return Err(StoreError::Corrupt {
                path,
                what: format!("schema version {version} is newer than this station's ({known}); upgrade the station"),
            });
        }
        for (i, migration) in MIGRATIONS
            .iter()
            .enumerate()
            .skip(usize::try_from(version).unwrap_or(0))
        {
            let tx = conn.transaction().map_err(sql)?;
            tx.execute_batch(migration).map_err(sql)?;
            tx.pragma_update(None, "user_version", i + 1).map_err(sql)?;
            tx.commit().map_err(sql)?;
        }
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path,
            key,
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back).
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn sql(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// The station key the store seals secrets with.
    pub fn key(&self) -> &StationKey {
        &self.key
    }

    /// Creates an account with one access key; returns (access key ID, secret access key).
    ///
    /// # Errors
    ///
    /// The name is taken, or the database fails.
    pub fn create_account(&self, name: &str) -> Result<(String, String), StoreError> {
        let access_key_id = random_string(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16);
        let access_key_id = format!("AKIA{access_key_id}");
        let secret = random_string(
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
            40,
        );
        let sealed = self.key.seal(secret.as_bytes());
        let now = now();
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.sql(e))?;
        let inserted = tx.execute(
            "INSERT INTO account (name, created_at) VALUES (?1, ?2)",
            params![name, now],
        );
        match inserted {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                return Err(StoreError::AccountExists(name.to_owned()));
            }
            Err(e) => return Err(self.sql(e)),
            Ok(_) => {}
        }
        let account_id = tx.last_insert_rowid();
        tx.execute(
            "INSERT INTO access_key (access_key_id, account_id, secret_sealed, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![access_key_id, account_id, sealed, now],
        )
        .map_err(|e| self.sql(e))?;
        tx.commit().map_err(|e| self.sql(e))?;
        Ok((access_key_id, secret))
    }

    /// The account and secret key of an access key ID.
    ///
    /// # Errors
    ///
    /// The database fails or the secret does not decrypt.
    pub fn access_key(&self, access_key_id: &str) -> Result<Option<(Account, Secret)>, StoreError> {
        let row: Option<(i64, String, Vec<u8>)> = self
            .conn()
            .query_row(
                "SELECT a.id, a.name, k.secret_sealed FROM access_key k JOIN account a ON a.id = k.account_id WHERE k.access_key_id = ?1",
                params![access_key_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(|e| self.sql(e))?;
        let Some((id, name, sealed)) = row else {
            return Ok(None);
        };
        let secret = self.key.unseal(&sealed)?;
        Ok(Some((Account { id, name }, secret)))
    }

    /// Inserts a new job with a fresh unique ID built by `make` from that ID.
    ///
    /// # Errors
    ///
    /// The database fails.
    pub fn insert_job(&self, make: impl Fn(&str) -> JobRecord) -> Result<JobRecord, StoreError> {
        let conn = self.conn();
        for _ in 0..32 {
            let job = make(&new_job_id());
            let seq: i64 = conn
                .query_row("SELECT COALESCE(MAX(seq), 0) + 1 FROM job", [], |r| {
                    r.get(0)
                })
                .map_err(|e| self.sql(e))?;
            let inserted = conn.execute(
                "INSERT INTO job (job_id, account_id, job_type, kind, manifest, manifest_addendum,
                    location_code, progress_code, error_count, log_bucket, log_key, signature,
                    carrier, tracking_number, created_at, seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
                params![
                    job.job_id,
                    job.account_id,
                    job.job_type,
                    job.kind,
                    job.manifest,
                    job.manifest_addendum,
                    job.location.as_str(),
                    job.progress.as_str(),
                    i64::try_from(job.error_count).unwrap_or(i64::MAX),
                    job.log_bucket,
                    job.log_key,
                    job.signature,
                    job.carrier,
                    job.tracking_number,
                    job.created_at,
                    seq,
                ],
            );
            match inserted {
                Ok(_) => return Ok(job),
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    continue; // The ID was taken: draw another.
                }
                Err(e) => return Err(self.sql(e)),
            }
        }
        Err(StoreError::Corrupt {
            path: self.path.clone(),
            what: "no free job ID after 32 attempts".into(),
        })
    }

    fn row_to_job(&self, r: &rusqlite::Row<'_>) -> rusqlite::Result<(JobRecord, String, String)> {
        let location: String = r.get(6)?;
        let progress: String = r.get(7)?;
        let error_count: i64 = r.get(8)?;
        Ok((
            JobRecord {
                job_id: r.get(0)?,
                account_id: r.get(1)?,
                job_type: r.get(2)?,
                kind: r.get(3)?,
                manifest: r.get(4)?,
                manifest_addendum: r.get(5)?,
                location: LocationCode::NotReceived,
                progress: ProgressCode::Pending,
                error_count: u64::try_from(error_count).unwrap_or(0),
                log_bucket: r.get(9)?,
                log_key: r.get(10)?,
                signature: r.get(11)?,
                carrier: r.get(12)?,
                tracking_number: r.get(13)?,
                created_at: r.get(14)?,
            },
            location,
            progress,
        ))
    }

    fn finish_row(
        &self,
        (mut job, location, progress): (JobRecord, String, String),
    ) -> Result<JobRecord, StoreError> {
        let corrupt = |what: String| StoreError::Corrupt {
            path: self.path.clone(),
            what,
        };
        job.location = LocationCode::parse(&location)
            .ok_or_else(|| corrupt(format!("job {}: location code `{location}`", job.job_id)))?;
        job.progress = ProgressCode::parse(&progress)
            .ok_or_else(|| corrupt(format!("job {}: progress code `{progress}`", job.job_id)))?;
        Ok(job)
    }

    const JOB_COLUMNS: &'static str =
        "job_id, account_id, job_type, kind, manifest, manifest_addendum,
        location_code, progress_code, error_count, log_bucket, log_key, signature, carrier,
        tracking_number, created_at";

    /// A job by ID, whoever owns it.
    ///
    /// # Errors
    ///
    /// The database fails.
    pub fn job(&self, job_id: &str) -> Result<Option<JobRecord>, StoreError> {
        let row = self
            .conn()
            .query_row(
                &format!("SELECT {} FROM job WHERE job_id = ?1", Self::JOB_COLUMNS),
                params![job_id],
                |r| self.row_to_job(r),
            )
            .optional()
            .map_err(|e| self.sql(e))?;
        row.map(|r| self.finish_row(r)).transpose()
    }

    /// An account's jobs, newest first, after `marker` (a job ID), at most `max`; and whether
    /// more follow.
    ///
    /// # Errors
    ///
    /// The database fails.
    pub fn list_jobs(
        &self,
        account_id: i64,
        marker: Option<&str>,
        max: usize,
    ) -> Result<(Vec<JobRecord>, bool), StoreError> {
        let conn = self.conn();
        let marker_seq: i64 = match marker {
            Some(m) => conn
                .query_row(
                    "SELECT seq FROM job WHERE job_id = ?1 AND account_id = ?2",
                    params![m, account_id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| self.sql(e))?
                .unwrap_or(i64::MAX),
            None => i64::MAX,
        };
        let limit = i64::try_from(max).unwrap_or(i64::MAX - 1) + 1;
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {} FROM job WHERE account_id = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3",
                Self::JOB_COLUMNS
            ))
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map(params![account_id, marker_seq, limit], |r| {
                self.row_to_job(r)
            })
            .map_err(|e| self.sql(e))?;
        let mut jobs = Vec::new();
        for row in rows {
            jobs.push(self.finish_row(row.map_err(|e| self.sql(e))?)?);
        }
        let truncated = jobs.len() > max;
        jobs.truncate(max);
        Ok((jobs, truncated))
    }

    /// The newest jobs of every account, newest first (the operator's view).
    ///
    /// # Errors
    ///
    /// The database fails or a stored value is damaged.
    pub fn recent_jobs(&self, max: usize) -> Result<Vec<JobRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {} FROM job ORDER BY seq DESC LIMIT ?1",
                Self::JOB_COLUMNS
            ))
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map(params![i64::try_from(max).unwrap_or(i64::MAX)], |r| {
                self.row_to_job(r)
            })
            .map_err(|e| self.sql(e))?;
        let mut jobs = Vec::new();
        for row in rows {
            jobs.push(self.finish_row(row.map_err(|e| self.sql(e))?)?);
        }
        Ok(jobs)
    }

    /// How many jobs the account created since `since` (seconds since the epoch).
    ///
    /// # Errors
    ///
    /// The database fails.
    pub fn jobs_created_since(&self, account_id: i64, since: i64) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn()
            .query_row(
                "SELECT COUNT(*) FROM job WHERE account_id = ?1 AND created_at >= ?2",
                params![account_id, since],
                |r| r.get(0),
            )
            .map_err(|e| self.sql(e))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Replaces a job's manifest (UpdateJob).
    ///
    /// # Errors
    ///
    /// The database fails.
    pub fn update_manifest(
        &self,
        job_id: &str,
        job_type: &str,
        kind: &str,
        manifest: &str,
        log_bucket: &str,
        log_key: &str,
    ) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "UPDATE job SET job_type = ?2, kind = ?3, manifest = ?4, log_bucket = ?5, log_key = ?6 WHERE job_id = ?1",
                params![job_id, job_type, kind, manifest, log_bucket, log_key],
            )
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// Sets a job's progress code.
    ///
    /// # Errors
    ///
    /// The database fails.
    pub fn set_progress(&self, job_id: &str, progress: ProgressCode) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "UPDATE job SET progress_code = ?2 WHERE job_id = ?1",
                params![job_id, progress.as_str()],
            )
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// Replaces a job's artifacts.
    ///
    /// # Errors
    ///
    /// The database fails.
    pub fn set_artifacts(&self, job_id: &str, artifacts: &[Artifact]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.sql(e))?;
        tx.execute("DELETE FROM artifact WHERE job_id = ?1", params![job_id])
            .map_err(|e| self.sql(e))?;
        for (i, a) in artifacts.iter().enumerate() {
            tx.execute(
                "INSERT INTO artifact (job_id, position, description, url) VALUES (?1, ?2, ?3, ?4)",
                params![job_id, i64::try_from(i).unwrap_or(0), a.description, a.url],
            )
            .map_err(|e| self.sql(e))?;
        }
        tx.commit().map_err(|e| self.sql(e))
    }

    /// A job's artifacts.
    ///
    /// # Errors
    ///
    /// The database fails.
    pub fn artifacts(&self, job_id: &str) -> Result<Vec<Artifact>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT description, url FROM artifact WHERE job_id = ?1 ORDER BY position")
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map(params![job_id], |r| {
                Ok(Artifact {
                    description: r.get(0)?,
                    url: r.get(1)?,
                })
            })
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.sql(e))
    }

    /// Stores a document (a PDF) under an unguessable token; returns the token.
    ///
    /// # Errors
    ///
    /// The database fails.
    pub fn put_document(
        &self,
        job_id: Option<&str>,
        content_type: &str,
        body: &[u8],
    ) -> Result<String, StoreError> {
        let token = random_string(b"abcdefghijklmnopqrstuvwxyz0123456789", 32);
        self.conn()
            .execute(
                "INSERT INTO document (token, job_id, content_type, body, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![token, job_id, content_type, body, now()],
            )
            .map_err(|e| self.sql(e))?;
        Ok(token)
    }

    /// A document by token: (content type, body).
    ///
    /// # Errors
    ///
    /// The database fails.
    pub fn document(&self, token: &str) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        self.conn()
            .query_row(
                "SELECT content_type, body FROM document WHERE token = ?1",
                params![token],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.sql(e))
    }
}

fn random_string(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())]))
        .collect()
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let key =
            StationKey::load_or_create(&dir.path().join("key")).unwrap_or_else(|e| panic!("{e}"));
        let store =
            Store::open(&dir.path().join("data"), Arc::new(key)).unwrap_or_else(|e| panic!("{e}"));
        (dir, store)
    }

    fn job(account_id: i64, id: &str) -> JobRecord {
        JobRecord {
            job_id: id.to_owned(),
            account_id,
            job_type: "Import".into(),
            kind: "s3-import".into(),
            manifest: "m".into(),
            manifest_addendum: None,
            location: LocationCode::NotReceived,
            progress: ProgressCode::Pending,
            error_count: 0,
            log_bucket: "b".into(),
            log_key: format!("import-log-{id}"),
            signature: "s".into(),
            carrier: None,
            tracking_number: None,
            created_at: now(),
        }
    }

    #[test]
    fn accounts_keys_and_secrets() {
        let (_dir, store) = store();
        let (id, secret) = store
            .create_account("acme")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(id.starts_with("AKIA") && id.len() == 20, "{id}");
        assert_eq!(secret.len(), 40);
        let (account, stored) = store
            .access_key(&id)
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("no key"));
        assert_eq!(account.name, "acme");
        assert_eq!(stored.as_slice(), secret.as_bytes());
        assert!(matches!(
            store.create_account("acme"),
            Err(StoreError::AccountExists(_))
        ));
        assert!(store
            .access_key("AKIANOPE")
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none());
        // The secret is not stored in the clear.
        let raw = std::fs::read(&store.path).unwrap_or_default();
        assert!(!raw.windows(secret.len()).any(|w| w == secret.as_bytes()));
    }

    #[test]
    fn jobs_list_newest_first_with_markers() {
        let (_dir, store) = store();
        let account = |name: &str| {
            let (key, _) = store.create_account(name).unwrap_or_else(|e| panic!("{e}"));
            let found = store.access_key(&key).unwrap_or_else(|e| panic!("{e}"));
            found
                .map(|(a, _)| a.id)
                .unwrap_or_else(|| panic!("no account"))
        };
        let (one, two) = (account("one"), account("two"));
        let mut ids = Vec::new();
        for _ in 0..5 {
            let j = store
                .insert_job(|id| job(one, id))
                .unwrap_or_else(|e| panic!("{e}"));
            ids.push(j.job_id);
        }
        store
            .insert_job(|id| job(two, id))
            .unwrap_or_else(|e| panic!("{e}"));
        let (page, more) = store
            .list_jobs(one, None, 2)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(more);
        assert_eq!(
            page.iter().map(|j| j.job_id.clone()).collect::<Vec<_>>(),
            vec![ids[4].clone(), ids[3].clone()]
        );
        let (page, more) = store
            .list_jobs(one, Some(&ids[3]), 10)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!more);
        assert_eq!(page.len(), 3);
        assert_eq!(store.jobs_created_since(one, now() - 60).unwrap_or(0), 5);
        store
            .set_progress(&ids[0], ProgressCode::Canceled)
            .unwrap_or_else(|e| panic!("{e}"));
        let j = store.job(&ids[0]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(j.map(|j| j.progress), Some(ProgressCode::Canceled));
    }
}
