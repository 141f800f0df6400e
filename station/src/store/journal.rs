//! The transfer journal: what a job's S3 import finished, so a restarted daemon sends nothing
//! twice (finished files, open multipart uploads and their finished parts).

use std::collections::BTreeMap;

use pipelines::s3_import::{FinishedFile, Journal};
use rusqlite::{params, OptionalExtension};

use super::Store;

/// One job's journal in the station database.
pub struct JobJournal {
    store: Store,
    job_id: String,
}

impl JobJournal {
    /// The journal of `job_id`.
    pub fn new(store: Store, job_id: &str) -> Self {
        Self {
            store,
            job_id: job_id.to_owned(),
        }
    }

    fn warn(&self, what: &str, e: &rusqlite::Error) {
        // Losing a journal row costs a resend after a crash, not correctness.
        tracing::warn!(job = %self.job_id, error = %e, "cannot record {what} in the journal");
    }
}

impl Journal for JobJournal {
    fn finished(&self, key: &str) -> Option<FinishedFile> {
        self.store
            .conn()
            .query_row(
                "SELECT size, md5, etag, content_type FROM journal_file WHERE job_id = ?1 AND key = ?2",
                params![self.job_id, key],
                |r| {
                    Ok(FinishedFile {
                        size: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(u64::MAX),
                        md5: r.get(1)?,
                        etag: r.get(2)?,
                        content_type: r.get(3)?,
                    })
                },
            )
            .optional()
            .unwrap_or_else(|e| {
                self.warn("a lookup", &e);
                None
            })
    }

    fn file_finished(&self, key: &str, file: &FinishedFile) {
        let mut conn = self.store.conn();
        let result = (|| {
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT OR REPLACE INTO journal_file (job_id, key, size, md5, etag, content_type) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![self.job_id, key, i64::try_from(file.size).unwrap_or(i64::MAX), file.md5, file.etag, file.content_type],
            )?;
            tx.execute(
                "DELETE FROM journal_part WHERE job_id = ?1 AND key = ?2",
                params![self.job_id, key],
            )?;
            tx.execute(
                "DELETE FROM journal_upload WHERE job_id = ?1 AND key = ?2",
                params![self.job_id, key],
            )?;
            tx.commit()
        })();
        if let Err(e) = result {
            self.warn("a finished file", &e);
        }
    }

    fn open_upload(&self, key: &str) -> Option<String> {
        self.store
            .conn()
            .query_row(
                "SELECT upload_id FROM journal_upload WHERE job_id = ?1 AND key = ?2",
                params![self.job_id, key],
                |r| r.get(0),
            )
            .optional()
            .unwrap_or_else(|e| {
                self.warn("a lookup", &e);
                None
            })
    }

    fn upload_opened(&self, key: &str, upload_id: &str) {
        if let Err(e) = self.store.conn().execute(
            "INSERT OR REPLACE INTO journal_upload (job_id, key, upload_id) VALUES (?1, ?2, ?3)",
            params![self.job_id, key, upload_id],
        ) {
            self.warn("an upload ID", &e);
        }
    }

    fn part_finished(&self, key: &str, upload_id: &str, number: i32, etag: &str, size: u64) {
        if let Err(e) = self.store.conn().execute(
            "INSERT OR REPLACE INTO journal_part (job_id, key, upload_id, number, etag, size) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![self.job_id, key, upload_id, number, etag, i64::try_from(size).unwrap_or(i64::MAX)],
        ) {
            self.warn("a part", &e);
        }
    }

    fn parts(&self, key: &str, upload_id: &str) -> BTreeMap<i32, (String, u64)> {
        let conn = self.store.conn();
        let rows = conn
            .prepare(
                "SELECT number, etag, size FROM journal_part WHERE job_id = ?1 AND key = ?2 AND upload_id = ?3",
            )
            .and_then(|mut stmt| {
                stmt.query_map(params![self.job_id, key, upload_id], |r| {
                    Ok((
                        r.get::<_, i32>(0)?,
                        (
                            r.get::<_, String>(1)?,
                            u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                        ),
                    ))
                })?
                .collect::<Result<BTreeMap<_, _>, _>>()
            });
        rows.unwrap_or_else(|e| {
            self.warn("a parts lookup", &e);
            BTreeMap::new()
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::keys::StationKey;

    #[test]
    fn a_finished_file_replaces_its_upload_and_parts() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let key =
            StationKey::load_or_create(&dir.path().join("key")).unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open(dir.path(), Arc::new(key)).unwrap_or_else(|e| panic!("{e}"));
        let journal = JobJournal::new(store.clone(), "ABCDE");
        let other = JobJournal::new(store, "FGHIJ");
        journal.upload_opened("big", "u1");
        journal.part_finished("big", "u1", 1, "e1", 8);
        journal.part_finished("big", "u1", 2, "e2", 3);
        assert_eq!(journal.open_upload("big").as_deref(), Some("u1"));
        assert_eq!(other.open_upload("big"), None);
        assert_eq!(journal.parts("big", "u1").len(), 2);
        let file = FinishedFile {
            size: 11,
            md5: "m".into(),
            etag: "x-2".into(),
            content_type: "text/plain".into(),
        };
        journal.file_finished("big", &file);
        assert_eq!(journal.finished("big"), Some(file));
        assert_eq!(journal.open_upload("big"), None);
        assert!(journal.parts("big", "u1").is_empty());
        assert_eq!(other.finished("big"), None);
    }
}
