//! The daemon's records: devices seen, each device's run through the station (every state
//! transition kept), erase records and the operators' audit trail.

use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;

use super::{now, Store, StoreError};
use crate::job::{LocationCode, ProgressCode};

/// Where a device is in its trip through the station.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// udev reported it.
    Detected,
    /// Bus, model, serial and size are known and the policy accepts it.
    Identified,
    /// Its SIGNATURE or barcode matched an open job.
    Authenticated,
    /// Its encryption (TrueCrypt, PIN pad) is open.
    Unlocked,
    /// The pipeline is moving data.
    Transferring,
    /// The pipeline is re-reading and comparing.
    Verifying,
    /// The log is being written.
    Logging,
    /// The zero-overwrite is running.
    Erasing,
    /// Finished: the device can be shipped back.
    Done,
    /// Finished without loading (or without erasing): the message says what to do.
    Failed,
    /// Refused before anything was written: the device goes back as it came.
    Refused,
    /// The device went away mid-run; reinserting it resumes the run.
    Interrupted,
}

impl RunState {
    const ALL: [Self; 12] = [
        Self::Detected,
        Self::Identified,
        Self::Authenticated,
        Self::Unlocked,
        Self::Transferring,
        Self::Verifying,
        Self::Logging,
        Self::Erasing,
        Self::Done,
        Self::Failed,
        Self::Refused,
        Self::Interrupted,
    ];

    /// The state's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Detected => "detected",
            Self::Identified => "identified",
            Self::Authenticated => "authenticated",
            Self::Unlocked => "unlocked",
            Self::Transferring => "transferring",
            Self::Verifying => "verifying",
            Self::Logging => "logging",
            Self::Erasing => "erasing",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Refused => "refused",
            Self::Interrupted => "interrupted",
        }
    }

    /// Parses a stored state.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether the run is over.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Done | Self::Failed | Self::Refused)
    }
}

/// A device's run, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunRecord {
    /// The run's id.
    pub id: i64,
    /// The device's stable identity (bus and serial, or a loop device's backing file).
    pub identity: String,
    /// The bay it is in.
    pub bay: String,
    /// The device node.
    pub devnode: String,
    /// The job, once authenticated.
    pub job_id: Option<String>,
    /// Where it is.
    pub state: RunState,
    /// What the operator should know.
    pub message: String,
    /// When the erase first started (0: not yet).
    pub erase_started: u64,
    /// Bytes the erase has zeroed (its resume point).
    pub erase_written: u64,
    /// Bytes the erase's verify pass has passed (its resume point).
    pub erase_verified: u64,
    /// Bytes actually read back as zero so far.
    pub erase_checked: u64,
    /// The device could not be erased and must be destroyed.
    pub destroy: bool,
    /// When the run began.
    pub started_at: i64,
    /// When it last changed.
    pub updated_at: i64,
}

/// An erase record, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EraseRecordRow {
    /// The record's id.
    pub id: i64,
    /// The run it belongs to.
    pub run_id: i64,
    /// The job, if one was authenticated.
    pub job_id: Option<String>,
    /// The device's identity (JSON).
    pub device: String,
    /// Bytes zeroed.
    pub bytes_written: u64,
    /// Bytes read back as zero.
    pub bytes_verified: u64,
    /// How.
    pub method: String,
    /// Start, seconds since the epoch.
    pub started_at: i64,
    /// End, seconds since the epoch.
    pub ended_at: i64,
    /// `verified` or `failed: ...`.
    pub result: String,
    /// The signed certificate (JSON).
    pub certificate: String,
}

/// An operator action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// When.
    pub at: i64,
    /// The operator's uid (SO_PEERCRED).
    pub uid: u32,
    /// The command.
    pub action: String,
    /// Its arguments and outcome.
    pub detail: String,
}

const RUN_COLUMNS: &str = "r.id, r.identity, r.bay, d.devnode, r.job_id, r.state, r.message, \
    r.erase_written, r.erase_verified, r.destroy, r.started_at, r.updated_at, r.erase_started, \
    r.erase_checked";

fn run_from_row(r: &Row<'_>) -> rusqlite::Result<RunRecord> {
    let state: String = r.get(5)?;
    Ok(RunRecord {
        id: r.get(0)?,
        identity: r.get(1)?,
        bay: r.get(2)?,
        devnode: r.get(3)?,
        job_id: r.get(4)?,
        // An unknown state (a newer schema) reads as failed: never resumed, never erased.
        state: RunState::parse(&state).unwrap_or(RunState::Failed),
        message: r.get(6)?,
        erase_written: u64::try_from(r.get::<_, i64>(7)?).unwrap_or(0),
        erase_verified: u64::try_from(r.get::<_, i64>(8)?).unwrap_or(0),
        destroy: r.get::<_, i64>(9)? != 0,
        started_at: r.get(10)?,
        updated_at: r.get(11)?,
        erase_started: u64::try_from(r.get::<_, i64>(12)?).unwrap_or(0),
        erase_checked: u64::try_from(r.get::<_, i64>(13)?).unwrap_or(0),
    })
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Store {
    /// Records a device seen in `bay`; returns its row id.
    ///
    /// # Errors
    ///
    /// The database fails.
    pub fn record_device(
        &self,
        identity: &str,
        devnode: &str,
        bay: &str,
        details: &str,
    ) -> Result<i64, StoreError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO device (identity, devnode, bay, details, seen_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![identity, devnode, bay, details, now()],
        )
        .map_err(|e| self.sql(e))?;
        Ok(conn.last_insert_rowid())
    }

    /// Starts a run for device row `device_id`.
    ///
    /// # Errors
    ///
    /// The database fails.
    pub fn start_run(&self, device_id: i64, identity: &str, bay: &str) -> Result<i64, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.sql(e))?;
        let at = now();
        tx.execute(
            "INSERT INTO run (device_id, identity, bay, state, message, started_at, updated_at) VALUES (?1, ?2, ?3, 'detected', '', ?4, ?4)",
            params![device_id, identity, bay, at],
        )
        .map_err(|e| self.sql(e))?;
        let id = tx.last_insert_rowid();
        tx.execute(
            "INSERT INTO transition (run_id, at, state, message) VALUES (?1, ?2, 'detected', '')",
            params![id, at],
        )
        .map_err(|e| self.sql(e))?;
        tx.commit().map_err(|e| self.sql(e))?;
        Ok(id)
    }

    /// Moves run `id` to `state`, keeping the transition.
    ///
    /// # Errors
    ///
    /// The database fails.
    pub fn set_run_state(&self, id: i64, state: RunState, message: &str) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.sql(e))?;
        let at = now();
        tx.execute(
            "UPDATE run SET state = ?2, message = ?3, updated_at = ?4 WHERE id = ?1",
            params![id, state.as_str(), message, at],
        )
        .map_err(|e| self.sql(e))?;
        tx.execute(
            "INSERT INTO transition (run_id, at, state, message) VALUES (?1, ?2, ?3, ?4)",
            params![id, at, state.as_str(), message],
        )
        .map_err(|e| self.sql(e))?;
        tx.commit().map_err(|e| self.sql(e))
    }

    /// Ties run `id` to its job, and points it at the device row and bay it is in now (a
    /// resumed run may be in another bay).
    ///
    /// # Errors
    ///
    /// The database fails.
    pub fn set_run_device(
        &self,
        id: i64,
        device_id: i64,
        bay: &str,
        job_id: Option<&str>,
    ) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "UPDATE run SET device_id = ?2, bay = ?3, job_id = COALESCE(?4, job_id), updated_at = ?5 WHERE id = ?1",
                params![id, device_id, bay, job_id, now()],
            )
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// Stores an erase's resume point: (started, written, verified, checked) in bytes.
    ///
    /// # Errors
    ///
    /// The database fails.
    pub fn set_erase_progress(
        &self,
        id: i64,
        started: u64,
        written: u64,
        verified: u64,
        checked: u64,
    ) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "UPDATE run SET erase_started = ?2, erase_written = ?3, erase_verified = ?4, erase_checked = ?5, updated_at = ?6 WHERE id = ?1",
                params![id, to_i64(started), to_i64(written), to_i64(verified), to_i64(checked), now()],
            )
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// Ties run `id` to job `job_id`.
    ///
    /// # Errors
    ///
    /// The database fails.
    pub fn set_run_job(&self, id: i64, job_id: &str) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "UPDATE run SET job_id = ?2, updated_at = ?3 WHERE id = ?1",
                params![id, job_id, now()],
            )
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// Flags run `id`'s device for destruction (it could not be erased).
    ///
    /// # Errors
    ///
    /// The database fails.
    pub fn flag_destroy(&self, id: i64) -> Result<(), StoreError> {
        self.conn()
            .execute("UPDATE run SET destroy = 1 WHERE id = ?1", params![id])
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// The unfinished run of the device with `identity`, if one was interrupted.
    ///
    /// # Errors
    ///
    /// The database fails.
    pub fn unfinished_run(&self, identity: &str) -> Result<Option<RunRecord>, StoreError> {
        self.conn()
            .query_row(
                &format!(
                    "SELECT {RUN_COLUMNS} FROM run r JOIN device d ON d.id = r.device_id
                     WHERE r.identity = ?1 AND r.state NOT IN ('done', 'failed', 'refused')
                     ORDER BY r.id DESC LIMIT 1"
                ),
                params![identity],
                run_from_row,
            )
            .optional()
            .map_err(|e| self.sql(e))
    }

    /// The newest finished run of the device with `identity`, other than run `except`.
    ///
    /// # Errors
    ///
    /// The database fails.
    pub fn last_finished_run(
        &self,
        identity: &str,
        except: i64,
    ) -> Result<Option<RunRecord>, StoreError> {
        self.conn()
            .query_row(
                &format!(
                    "SELECT {RUN_COLUMNS} FROM run r JOIN device d ON d.id = r.device_id
                     WHERE r.identity = ?1 AND r.id != ?2 AND r.state IN ('done', 'failed')
                     ORDER BY r.id DESC LIMIT 1"
                ),
                params![identity, except],
                run_from_row,
            )
            .optional()
            .map_err(|e| self.sql(e))
    }

    /// Run `id`.
    ///
    /// # Errors
    ///
    /// The database fails.
    pub fn run(&self, id: i64) -> Result<Option<RunRecord>, StoreError> {
        self.conn()
            .query_row(
                &format!("SELECT {RUN_COLUMNS} FROM run r JOIN device d ON d.id = r.device_id WHERE r.id = ?1"),
                params![id],
                run_from_row,
            )
            .optional()
            .map_err(|e| self.sql(e))
    }

    /// The newest runs, newest first; with `job_id`, that job's only.
    ///
    /// # Errors
    ///
    /// The database fails.
    pub fn runs(&self, job_id: Option<&str>, limit: u32) -> Result<Vec<RunRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {RUN_COLUMNS} FROM run r JOIN device d ON d.id = r.device_id
                 WHERE ?1 IS NULL OR r.job_id = ?1 ORDER BY r.id DESC LIMIT ?2"
            ))
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map(params![job_id, limit], run_from_row)
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.sql(e))
    }

    /// Run `id`'s transitions, oldest first: (time, state, message).
    ///
    /// # Errors
    ///
    /// The database fails.
    pub fn transitions(&self, id: i64) -> Result<Vec<(i64, String, String)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT at, state, message FROM transition WHERE run_id = ?1 ORDER BY rowid")
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map(params![id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.sql(e))
    }

    /// Stores an erase record; returns its id.
    ///
    /// # Errors
    ///
    /// The database fails.
    pub fn insert_erase_record(&self, record: &EraseRecordRow) -> Result<i64, StoreError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO erase_record (run_id, job_id, device, bytes_written, bytes_verified, method, started_at, ended_at, result, certificate)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                record.run_id,
                record.job_id,
                record.device,
                to_i64(record.bytes_written),
                to_i64(record.bytes_verified),
                record.method,
                record.started_at,
                record.ended_at,
                record.result,
                record.certificate
            ],
        )
        .map_err(|e| self.sql(e))?;
        Ok(conn.last_insert_rowid())
    }

    /// The newest erase records, newest first.
    ///
    /// # Errors
    ///
    /// The database fails.
    pub fn erase_records(&self, limit: u32) -> Result<Vec<EraseRecordRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT id, run_id, job_id, device, bytes_written, bytes_verified, method, started_at, ended_at, result, certificate
                 FROM erase_record ORDER BY id DESC LIMIT ?1",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map(params![limit], |r| {
                Ok(EraseRecordRow {
                    id: r.get(0)?,
                    run_id: r.get(1)?,
                    job_id: r.get(2)?,
                    device: r.get(3)?,
                    bytes_written: u64::try_from(r.get::<_, i64>(4)?).unwrap_or(0),
                    bytes_verified: u64::try_from(r.get::<_, i64>(5)?).unwrap_or(0),
                    method: r.get(6)?,
                    started_at: r.get(7)?,
                    ended_at: r.get(8)?,
                    result: r.get(9)?,
                    certificate: r.get(10)?,
                })
            })
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.sql(e))
    }

    /// Records an operator action.
    ///
    /// # Errors
    ///
    /// The database fails.
    pub fn audit(&self, uid: u32, action: &str, detail: &str) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT INTO audit (at, uid, action, detail) VALUES (?1, ?2, ?3, ?4)",
                params![now(), uid, action, detail],
            )
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// The newest audit entries, newest first.
    ///
    /// # Errors
    ///
    /// The database fails.
    pub fn audit_entries(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT at, uid, action, detail FROM audit ORDER BY id DESC LIMIT ?1")
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map(params![limit], |r| {
                Ok(AuditEntry {
                    at: r.get(0)?,
                    uid: r.get(1)?,
                    action: r.get(2)?,
                    detail: r.get(3)?,
                })
            })
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.sql(e))
    }

    /// Sets where a job's device is.
    ///
    /// # Errors
    ///
    /// The database fails.
    pub fn set_location(&self, job_id: &str, location: LocationCode) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "UPDATE job SET location_code = ?2 WHERE job_id = ?1",
                params![job_id, location.as_str()],
            )
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// Sets a job's result: its progress code and error count.
    ///
    /// # Errors
    ///
    /// The database fails.
    pub fn set_result(
        &self,
        job_id: &str,
        progress: ProgressCode,
        errors: u64,
    ) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "UPDATE job SET progress_code = ?2, error_count = ?3 WHERE job_id = ?1",
                params![job_id, progress.as_str(), to_i64(errors)],
            )
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// Records a job's return shipment: Returned, with carrier and tracking number.
    ///
    /// # Errors
    ///
    /// The database fails.
    pub fn set_shipped(
        &self,
        job_id: &str,
        carrier: &str,
        tracking: &str,
    ) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "UPDATE job SET location_code = 'Returned', carrier = ?2, tracking_number = ?3 WHERE job_id = ?1",
                params![job_id, carrier, tracking],
            )
            .map_err(|e| self.sql(e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::keys::StationKey;

    #[test]
    fn an_interrupted_run_is_found_by_identity_until_it_is_final() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let key =
            StationKey::load_or_create(&dir.path().join("key")).unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open(dir.path(), Arc::new(key)).unwrap_or_else(|e| panic!("{e}"));
        let device = store
            .record_device("usb:SN1", "/dev/sdb", "usb-1", "{}")
            .unwrap_or_else(|e| panic!("{e}"));
        let run = store
            .start_run(device, "usb:SN1", "usb-1")
            .unwrap_or_else(|e| panic!("{e}"));
        store
            .set_run_state(run, RunState::Erasing, "erasing")
            .unwrap_or_else(|e| panic!("{e}"));
        store
            .set_erase_progress(run, 7, 1 << 30, 1 << 29, 1 << 28)
            .unwrap_or_else(|e| panic!("{e}"));
        let found = store
            .unfinished_run("usb:SN1")
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("no unfinished run"));
        assert_eq!(found.state, RunState::Erasing);
        assert_eq!(
            (
                found.erase_started,
                found.erase_written,
                found.erase_verified,
                found.erase_checked
            ),
            (7, 1 << 30, 1 << 29, 1 << 28)
        );
        assert!(store
            .unfinished_run("usb:SN2")
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none());
        store
            .set_run_state(run, RunState::Done, "erased")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(store
            .unfinished_run("usb:SN1")
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none());
        let states: Vec<String> = store
            .transitions(run)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|t| t.1)
            .collect();
        assert_eq!(states, ["detected", "erasing", "done"]);
    }
}
