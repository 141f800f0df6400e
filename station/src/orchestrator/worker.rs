//! One bay's worker: a device's run from identification to the erase (or the export's end).

use super::auth::{
    read_signature, read_signature_in, starts_blank, Auth, Encrypted, SignatureRead,
    MAX_TRUECRYPT_CANDIDATES,
};
use super::*;

/// One device's run, carried out by its bay's worker.
pub(super) struct Worker {
    pub(super) station: Arc<Station>,
    pub(super) bay: String,
    pub(super) devnode: PathBuf,
    pub(super) run: i64,
    pub(super) identity: DeviceIdentity,
    pub(super) details: serde_json::Value,
    pub(super) progress: Arc<BayProgress>,
    pub(super) pulled: Arc<AtomicBool>,
    pub(super) pulled_rx: watch::Receiver<bool>,
}

impl Worker {
    pub(super) fn transition(&self, state: RunState, message: &str) {
        self.station.transition(&self.bay, self.run, state, message);
    }

    pub(super) fn refuse(&self, message: &str) {
        self.transition(
            RunState::Refused,
            &format!("{message}; the device was not loaded and not erased: return it as it came"),
        );
    }

    fn store(&self) -> &Store {
        &self.station.store
    }

    pub(super) fn set_progress(&self, job_id: &str, code: ProgressCode) {
        if let Err(e) = self.store().set_progress(job_id, code) {
            tracing::error!(job = job_id, error = %e, "cannot set the job's progress");
        }
        self.notify_result(job_id, code, 0);
    }

    /// Tells the notifier of a job's new progress code, with what the bay moved.
    fn notify_result(&self, job_id: &str, code: ProgressCode, errors: u64) {
        let loaded = Loaded {
            bay: self.bay.clone(),
            files: self.progress.files.load(Ordering::Relaxed),
            bytes: self.progress.bytes.load(Ordering::Relaxed),
            reason: None,
        };
        self.station
            .notifier
            .job_progress(job_id, code, errors, &loaded);
    }

    /// Finds the job this device belongs to: its SIGNATURE file, else a scanned barcode.
    /// A device that fails is refused (never loaded, never erased).
    pub(super) async fn authenticate(&self) -> Option<Auth> {
        let path = self.devnode.clone();
        let read = tokio::task::spawn_blocking(move || read_signature(&path)).await;
        let presented = match read {
            Ok(SignatureRead::Found(text)) => match signature::parse_file(&text) {
                Ok(p) => Some((p, "SIGNATURE file")),
                Err(e) => {
                    self.refuse(&format!(
                        "InvalidSignature: the SIGNATURE file is not valid ({e})"
                    ));
                    return None;
                }
            },
            Ok(SignatureRead::Missing(why)) => {
                tracing::info!(bay = %self.bay, "no SIGNATURE file: {why}");
                // A device this station loaded and erased (its SIGNATURE went with the erase)
                // seen again, e.g. after a restart: it waits for shipping, not for a barcode.
                let key = identity_key(&self.identity);
                let path = self.devnode.clone();
                let blank = tokio::task::spawn_blocking(move || starts_blank(&path))
                    .await
                    .unwrap_or(false);
                let done = if blank {
                    self.store().last_finished_run(&key, self.run)
                } else {
                    Ok(None)
                };
                if let Ok(Some(done)) = done {
                    if let Some(job) = done.job_id.filter(|_| done.state == RunState::Done) {
                        self.transition(
                            RunState::Refused,
                            &format!(
                                "already loaded and erased for job {job} (run {}): ship it back: stationctl ship {job} --carrier NAME --tracking N",
                                done.id
                            ),
                        );
                        return None;
                    }
                }
                None
            }
            Err(e) => {
                tracing::error!(bay = %self.bay, error = %e, "signature read panicked");
                None
            }
        };
        let (presented, how) = match presented {
            Some(p) => p,
            None => match self.try_encrypted().await {
                Encrypted::Signature(text) => match signature::parse_file(&text) {
                    Ok(p) => (p, "SIGNATURE file in the TrueCrypt volume"),
                    Err(e) => {
                        self.refuse(&format!(
                            "InvalidSignature: the SIGNATURE file in the TrueCrypt volume is not valid ({e})"
                        ));
                        return None;
                    }
                },
                Encrypted::Unusable(job, why) => return self.unusable(*job, why),
                Encrypted::Refused => return None,
                Encrypted::Nothing => match self.wait_for_barcode().await {
                    Some(p) => (p, "barcode"),
                    None => return None,
                },
            },
        };
        let job = match self.store().job(&presented.job_id) {
            Ok(Some(job)) => job,
            Ok(None) => {
                self.refuse(&format!(
                    "InvalidSignature: the {how} names job {}, which this station does not know",
                    presented.job_id
                ));
                return None;
            }
            Err(e) => {
                self.refuse(&format!("the station database failed: {e}"));
                return None;
            }
        };
        let key = self.store().key().signing_key();
        if !signature::verify(&key[..], &job.job_id, &presented.signature) {
            self.set_progress(&job.job_id, ProgressCode::InvalidSignature);
            self.refuse(&format!(
                "InvalidSignature: the {how} of job {} does not carry the job's signature",
                job.job_id
            ));
            return None;
        }
        if matches!(job.progress, ProgressCode::Canceled | ProgressCode::Expired) {
            self.refuse(&format!("job {} is {}", job.job_id, job.progress.as_str()));
            return None;
        }
        if job.progress.is_final() {
            self.refuse(&format!(
                "job {} is already finished ({})",
                job.job_id,
                job.progress.as_str()
            ));
            return None;
        }
        let file_job = job.kind.starts_with("s3-");
        if how == "barcode" && file_job {
            // S3 jobs are authenticated by their SIGNATURE file only (the guide).
            self.set_progress(&job.job_id, ProgressCode::MissingSignature);
            self.refuse(&format!(
                "MissingSignature: job {} is an S3 job, whose device must carry the SIGNATURE file in its root",
                job.job_id
            ));
            return None;
        }
        self.claim(&job);
        self.transition(
            RunState::Authenticated,
            &format!("{how} verified for job {}", job.job_id),
        );
        Some(Auth {
            job,
            unusable: None,
        })
    }

    /// The run belongs to `job`, whose device is now AtAWS; the bay shows the job.
    fn claim(&self, job: &JobRecord) {
        if let Err(e) = self
            .store()
            .set_run_job(self.run, &job.job_id)
            .and_then(|()| self.store().set_location(&job.job_id, LocationCode::AtAWS))
        {
            tracing::error!(job = %job.job_id, error = %e, "cannot record the job's device");
        }
        self.station
            .update(&self.bay, |v| v.job_id = Some(job.job_id.clone()));
    }

    /// A device the guide says to erase without importing (its job is known, its encryption
    /// is not what the job said): the job ends UnsupportedFileFormat.
    fn unusable(&self, job: JobRecord, why: String) -> Option<Auth> {
        self.claim(&job);
        Some(Auth {
            job,
            unusable: Some(why),
        })
    }

    /// Looks for the SIGNATURE inside a TrueCrypt volume or `<JOBID>.tc` container, trying the
    /// password of each job the device may belong to: the job its container is named after,
    /// the job the operator said goes into this bay, else every open S3 import job that has a
    /// trueCryptPassword (at most [`MAX_TRUECRYPT_CANDIDATES`]).
    async fn try_encrypted(&self) -> Encrypted {
        let path = self.devnode.clone();
        let named = tokio::task::spawn_blocking(move || crate::unlock::container_jobs(&path))
            .await
            .unwrap_or_default();
        let expected = lock(&self.station.expected).get(&self.bay).cloned();
        // Jobs the device itself (its container's name) or the operator names: if their
        // password does not open it, the guide says erase and return.
        let mut claimed: Vec<String> = named;
        claimed.extend(expected);
        claimed.dedup();
        let mut candidates: Vec<(JobRecord, bool)> = Vec::new();
        for job_id in &claimed {
            if let Ok(Some(job)) = self.store().job(job_id) {
                candidates.push((job, true));
            }
        }
        if candidates.is_empty() {
            let jobs = self.store().recent_jobs(200).unwrap_or_default();
            candidates.extend(
                jobs.into_iter()
                    .filter(|j| j.kind == "s3-import" && !j.progress.is_final())
                    .filter(|j| j.manifest.contains("trueCryptPassword"))
                    .take(MAX_TRUECRYPT_CANDIDATES)
                    .map(|j| (j, false)),
            );
        }
        let rules = self.station.config.manifest_rules();
        for (job, claimed) in candidates {
            let Ok(manifest) = manifest::parse(job.manifest.as_bytes(), JobType::Import, &rules)
            else {
                continue;
            };
            let Some(password) = manifest.true_crypt_password() else {
                continue;
            };
            let password = zeroize::Zeroizing::new(password.expose().as_bytes().to_vec());
            self.station.update(&self.bay, |v| {
                v.message = format!("trying job {}'s TrueCrypt password", job.job_id);
            });
            let (path, job_id) = (self.devnode.clone(), job.job_id.clone());
            let opened = tokio::task::spawn_blocking(move || {
                let unlocked = crate::unlock::open_encrypted(&path, &job_id, &password)?;
                Ok::<_, crate::unlock::UnlockError>(read_signature_in(unlocked.source))
            })
            .await;
            match opened {
                Ok(Ok(SignatureRead::Found(text))) => return Encrypted::Signature(text),
                Ok(Ok(SignatureRead::Missing(why))) => {
                    self.set_progress(&job.job_id, ProgressCode::MissingSignature);
                    self.refuse(&format!(
                        "MissingSignature: job {}'s TrueCrypt volume opened, but {why}",
                        job.job_id
                    ));
                    return Encrypted::Refused;
                }
                Ok(Err(e)) if claimed => return Encrypted::Unusable(Box::new(job), e.to_string()),
                Ok(Err(e)) => tracing::debug!(job = %job.job_id, "not this job's device: {e}"),
                Err(e) => tracing::error!(error = %e, "TrueCrypt trial panicked"),
            }
        }
        Encrypted::Nothing
    }

    /// Asks the operator to scan the device's barcode; `None` (refused) when no valid scan
    /// comes in time or the device goes away.
    async fn wait_for_barcode(&self) -> Option<Presented> {
        let timeout = Duration::from_secs(self.station.config.bays.scan_timeout_secs);
        self.station.update(&self.bay, |v| {
            v.message = format!(
                "no SIGNATURE file: scan the job's barcode (stationctl scan {}) within {} s",
                self.bay,
                timeout.as_secs()
            );
        });
        loop {
            let (tx, rx) = oneshot::channel();
            lock(&self.station.scans).insert(self.bay.clone(), tx);
            let mut pulled = self.pulled_rx.clone();
            let text = tokio::select! {
                r = tokio::time::timeout(timeout, rx) => match r {
                    Ok(Ok(text)) => text,
                    _ if self.pulled.load(Ordering::SeqCst) => {
                        self.transition(RunState::Refused, "the device was removed before it was authenticated");
                        return None;
                    }
                    _ => {
                        lock(&self.station.scans).remove(&self.bay);
                        let expected = lock(&self.station.expected).remove(&self.bay);
                        if let Some(job_id) = &expected {
                            self.set_progress(job_id, ProgressCode::MissingSignature);
                        }
                        self.refuse(&format!(
                            "MissingSignature: no SIGNATURE file in the device's root and no barcode scanned{}",
                            expected.map(|j| format!(" (job {j})")).unwrap_or_default()
                        ));
                        return None;
                    }
                },
                _ = pulled.wait_for(|p| *p) => {
                    self.transition(RunState::Refused, "the device was removed before it was authenticated");
                    return None;
                }
            };
            match signature::parse_barcode(text.trim()) {
                Ok(p) => return Some(p),
                Err(e) => {
                    tracing::warn!(bay = %self.bay, "a scan that is not a job barcode: {e}");
                    self.station.update(&self.bay, |v| {
                        v.message = format!("that scan is not a job barcode ({e}); scan again");
                    });
                }
            }
        }
    }

    /// Loads (or resumes) the device's job, then erases the device.
    pub(super) async fn carry_out(
        &self,
        job: JobRecord,
        resume: Option<RunRecord>,
    ) -> Result<(), Stop> {
        let rules = self.station.config.manifest_rules();
        let job_type = if job.job_type == "Export" {
            JobType::Export
        } else {
            JobType::Import
        };
        let manifest = match manifest::parse(job.manifest.as_bytes(), job_type, &rules) {
            Ok(m) => m,
            Err(e) => {
                self.refuse(&format!(
                    "job {}'s stored manifest no longer validates: {e}",
                    job.job_id
                ));
                return Ok(());
            }
        };
        if let Err(refusal) =
            drivers::policy::check(&self.identity, &self.station.limits(Some(manifest.kind())))
        {
            self.set_progress(&job.job_id, ProgressCode::UnsupportedDeviceType);
            self.refuse(&refusal.to_string());
            return Ok(());
        }
        if matches!(manifest.job, JobManifest::S3Export(_)) {
            // An export device is the delivery: never erased. An interrupted export starts
            // again from the formatting.
            if self.transfer(&job, &manifest).await? {
                self.transition(
                    RunState::Done,
                    &format!(
                        "export written; ship the device back: stationctl ship {} --carrier NAME --tracking N",
                        job.job_id
                    ),
                );
            }
            return Ok(());
        }
        let erase_from = resume.as_ref().filter(|r| r.state == RunState::Erasing);
        if erase_from.is_none() {
            self.transfer(&job, &manifest).await?;
        }
        self.erase(&job, erase_from).await
    }

    /// Runs the job's pipeline under the watchdog; records the job's result. True when the
    /// job's log was written (Complete or SuccessWithErrors).
    async fn transfer(&self, job: &JobRecord, manifest: &Manifest) -> Result<bool, Stop> {
        let after_failure = if matches!(manifest.job, JobManifest::S3Export(_)) {
            "the device will not be erased: return it"
        } else {
            "the device will be erased"
        };
        self.set_progress(&job.job_id, ProgressCode::InProgress);
        self.progress.reset(0);
        let doing = match &manifest.job {
            JobManifest::S3Export(e) => format!(
                "exporting job {}: formatting the device ({}{}), then writing the objects",
                job.job_id,
                match e.file_system {
                    pipelines::manifest::ExportFileSystem::Ext4 => "EXT4",
                    pipelines::manifest::ExportFileSystem::Ntfs => "NTFS",
                },
                if e.true_crypt_password.is_some() {
                    ", TrueCrypt container inside"
                } else {
                    ""
                }
            ),
            _ => format!("loading job {}", job.job_id),
        };
        self.transition(RunState::Transferring, &doing);
        let journal = Arc::new(JobJournal::new(self.store().clone(), &job.job_id));
        let config = &self.station.config;
        let load = load_job(
            config,
            &self.devnode,
            manifest,
            &job.job_id,
            self.station.endpoint_override.as_deref(),
            self.progress.as_ref(),
            journal,
        );
        let stall = Duration::from_secs(config.bays.stall_timeout_secs);
        let watchdog = async {
            loop {
                tokio::time::sleep(Duration::from_secs(1).min(stall)).await;
                if self.progress.idle() >= stall {
                    return;
                }
            }
        };
        let mut pulled = self.pulled_rx.clone();
        let result = tokio::select! {
            r = load => Some(r),
            () = watchdog => None,
            _ = pulled.wait_for(|p| *p) => return Err(Stop::Pulled),
        };
        let logged = matches!(result, Some(Ok(_)));
        match result {
            Some(Ok(LoadResult::Complete { log })) => {
                self.record_result(&job.job_id, ProgressCode::Complete, 0);
                self.transition(
                    RunState::Logging,
                    &format!("job {} complete; log at {log}", job.job_id),
                );
            }
            Some(Ok(LoadResult::SuccessWithErrors {
                log,
                errors,
                by_status,
            })) => {
                self.station.notifier().metrics.log_rows(&by_status);
                self.record_result(&job.job_id, ProgressCode::SuccessWithErrors, errors);
                self.transition(
                    RunState::Logging,
                    &format!(
                        "job {} loaded with {errors} errors; log at {log}",
                        job.job_id
                    ),
                );
            }
            Some(Err(e)) if e.downcast_ref::<crate::unlock::UnlockError>().is_some() => {
                self.record_result(&job.job_id, ProgressCode::UnsupportedFileFormat, 0);
                self.transition(
                    RunState::Failed,
                    &format!("UnsupportedFileFormat: {e}; no import: the device will be erased and returned"),
                );
            }
            Some(Err(e)) => {
                if self.pulled.load(Ordering::SeqCst) {
                    return Err(Stop::Pulled);
                }
                self.record_result(&job.job_id, ProgressCode::DeviceError, 0);
                self.transition(
                    RunState::Failed,
                    &format!("job {} failed: {e:#}; {after_failure}", job.job_id),
                );
            }
            None => {
                self.station
                    .notifier
                    .stuck_bay(&self.bay, self.run, &job.job_id, stall.as_secs());
                self.record_result(&job.job_id, ProgressCode::DeviceError, 0);
                self.transition(
                    RunState::Failed,
                    &format!(
                        "job {} failed: no progress for {} s (DeviceError); {after_failure}",
                        job.job_id,
                        stall.as_secs()
                    ),
                );
            }
        }
        Ok(logged)
    }

    fn record_result(&self, job_id: &str, code: ProgressCode, errors: u64) {
        if let Err(e) = self.store().set_result(job_id, code, errors) {
            tracing::error!(job = job_id, error = %e, "cannot record the job's result");
        }
        self.notify_result(job_id, code, errors);
    }

    /// Zero-overwrites the device, verifies it, and records the erase with its certificate.
    pub(super) async fn erase(
        &self,
        job: &JobRecord,
        resume: Option<&RunRecord>,
    ) -> Result<(), Stop> {
        let written = resume.map_or(0, |r| r.erase_written);
        self.progress.reset(self.identity.capacity_bytes);
        self.transition(
            RunState::Erasing,
            &if written > 0 {
                format!("erasing, resumed at byte {written}")
            } else {
                "erasing".to_owned()
            },
        );
        let outcome = crate::erase::erase_device(
            &self.station.config,
            self.store(),
            crate::erase::EraseJob {
                run: self.run,
                job_id: Some(job.job_id.clone()),
                devnode: self.devnode.clone(),
                device: self.details.clone(),
                resume: resume.map(|r| crate::erase::Resume {
                    started: r.erase_started,
                    written: r.erase_written,
                    verified: r.erase_verified,
                    checked: r.erase_checked,
                }),
            },
            Arc::clone(&self.progress),
            Arc::clone(&self.pulled),
        )
        .await;
        match outcome {
            crate::erase::Erased::Verified { record } => {
                self.station.notifier.erase_result(
                    &self.bay,
                    self.run,
                    Some(&job.job_id),
                    true,
                    record,
                    "erased and verified",
                );
                self.transition(
                    RunState::Done,
                    &format!(
                        "erased and verified (erase record {record}); ship the device back: stationctl ship {} --carrier NAME --tracking N",
                        job.job_id
                    ),
                );
            }
            crate::erase::Erased::Failed { record, reason } => {
                self.station.notifier.erase_result(
                    &self.bay,
                    self.run,
                    Some(&job.job_id),
                    false,
                    record,
                    &reason,
                );
                if let Err(e) = self.store().flag_destroy(self.run) {
                    tracing::error!(run = self.run, error = %e, "cannot flag the device for destruction");
                }
                self.transition(
                    RunState::Failed,
                    &format!(
                        "ERASE FAILED ({reason}; erase record {record}): do not return this device; it is flagged for destruction and the customer is contacted"
                    ),
                );
            }
            crate::erase::Erased::Stopped => return Err(Stop::Pulled),
        }
        Ok(())
    }
}
