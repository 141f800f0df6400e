//! One-layer tests of the pipeline: an in-memory filesystem and an in-memory store stand in
//! for the reader and S3 (the end-to-end tests use real images and a real S3 server).

use std::collections::BTreeMap;
use std::sync::Mutex;

use drivers::fs::{DirEntry, Extent, FsType, Timestamp, Zone};

use md5::{Digest, Md5};

use super::*;
use crate::manifest::{self, JobType, Rules};
use crate::object_store::{BoxFuture, ObjectInfo};

/// id, parent, name, kind, content.
type MemEntry = (u64, u64, Vec<u8>, EntryKind, Vec<u8>);
/// body, ETag, headers.
type MemObject = (Vec<u8>, String, ObjectHeaders);

/// Files by path; directories implied.
struct MemFs {
    entries: Vec<MemEntry>,
    unreadable: Option<u64>,
    /// A byte (file, offset) that reads flipped from its second read on: a device whose
    /// content changed after the upload.
    drifts: Option<(u64, usize)>,
    drift_reads: std::sync::atomic::AtomicUsize,
}

impl MemFs {
    fn new(files: &[(&[u8], EntryKind, Vec<u8>)]) -> Self {
        let mut entries = Vec::new();
        let mut dirs: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        let mut next = 2u64;
        for (path, kind, content) in files {
            let parts: Vec<&[u8]> = path.split(|&b| b == b'/').collect();
            let mut parent = 1u64;
            let mut prefix = Vec::new();
            for dir in &parts[..parts.len() - 1] {
                prefix.extend_from_slice(dir);
                prefix.push(b'/');
                parent = *dirs.entry(prefix.clone()).or_insert_with(|| {
                    next += 1;
                    entries.push((next, parent, dir.to_vec(), EntryKind::Directory, Vec::new()));
                    next
                });
            }
            next += 1;
            entries.push((
                next,
                parent,
                parts[parts.len() - 1].to_vec(),
                *kind,
                content.clone(),
            ));
        }
        Self {
            entries,
            unreadable: None,
            drifts: None,
            drift_reads: Default::default(),
        }
    }
    fn content(&self, id: u64) -> &[u8] {
        self.entries
            .iter()
            .find(|e| e.0 == id)
            .map(|e| e.4.as_slice())
            .unwrap_or(&[])
    }
}

impl FileSystem for MemFs {
    fn fs_type(&self) -> FsType {
        FsType::Ext4
    }
    fn label(&self) -> Option<String> {
        None
    }
    fn root(&self) -> u64 {
        1
    }
    fn read_dir(&self, dir: u64) -> Result<Vec<DirEntry>, FsError> {
        Ok(self
            .entries
            .iter()
            .filter(|e| e.1 == dir)
            .map(|e| DirEntry {
                id: e.0,
                parent: dir,
                name: RawName::Bytes(e.2.clone()),
                kind: e.3,
                size: e.4.len() as u64,
                mtime: Some(Timestamp {
                    seconds: 1_233_698_263,
                    nanos: 0,
                    zone: Zone::Utc,
                }),
            })
            .collect())
    }
    fn extents(&self, _: u64) -> Result<Vec<Extent>, FsError> {
        Ok(Vec::new())
    }
    fn read(&self, id: u64, offset: u64, buf: &mut [u8]) -> Result<usize, FsError> {
        if self.unreadable == Some(id) {
            return Err(FsError::Corrupt {
                device: "mem".into(),
                offset,
                what: "test".into(),
            });
        }
        let data = self.content(id);
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        if let Some((file, at)) = self.drifts {
            if file == id && (start..start + n).contains(&at) {
                let reads = self
                    .drift_reads
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if reads > 0 {
                    buf[at - start] ^= 1;
                }
            }
        }
        Ok(n)
    }
    fn read_link(&self, _: u64) -> Result<Vec<u8>, FsError> {
        Ok(Vec::new())
    }
}

#[derive(Default)]
struct MemStore {
    objects: Mutex<BTreeMap<String, MemObject>>,
    uploads: Mutex<BTreeMap<String, BTreeMap<i32, Vec<u8>>>>,
    aborted: Mutex<u32>,
    deny_key: Option<String>,
    parts_sent: Mutex<u32>,
    heads: Mutex<u32>,
    /// A key whose listing shows a wrong ETag.
    misreported_key: Option<String>,
}

fn etag_of(parts: &[Vec<u8>]) -> String {
    if parts.len() == 1 {
        return hex::encode(Md5::digest(&parts[0]));
    }
    let md5s: Vec<u8> = parts.iter().flat_map(|p| Md5::digest(p).to_vec()).collect();
    format!("{}-{}", hex::encode(Md5::digest(&md5s)), parts.len())
}

impl ObjectStore for MemStore {
    fn put_object<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        body: Vec<u8>,
        md5: [u8; 16],
        h: &'a ObjectHeaders,
    ) -> BoxFuture<'a, Result<String, ObjectStoreError>> {
        Box::pin(async move {
            if self.deny_key.as_deref() == Some(key) {
                return Err(ObjectStoreError {
                    operation: "PutObject".into(),
                    bucket: bucket.into(),
                    key: key.into(),
                    code: "AccessDenied".into(),
                    message: "no".into(),
                });
            }
            assert_eq!(
                <[u8; 16]>::from(Md5::digest(&body)),
                md5,
                "Content-MD5 of {key}"
            );
            let etag = etag_of(std::slice::from_ref(&body));
            self.objects
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(format!("{bucket}/{key}"), (body, etag.clone(), h.clone()));
            Ok(etag)
        })
    }
    fn create_multipart<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        h: &'a ObjectHeaders,
    ) -> BoxFuture<'a, Result<String, ObjectStoreError>> {
        Box::pin(async move {
            let id = format!("{bucket}/{key}");
            self.uploads
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id.clone(), BTreeMap::new());
            self.objects
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(
                    format!("headers:{id}"),
                    (Vec::new(), String::new(), h.clone()),
                );
            Ok(id)
        })
    }
    fn upload_part<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        upload_id: &'a str,
        number: i32,
        body: Vec<u8>,
        md5: [u8; 16],
    ) -> BoxFuture<'a, Result<String, ObjectStoreError>> {
        Box::pin(async move {
            assert_eq!(<[u8; 16]>::from(Md5::digest(&body)), md5);
            *self.parts_sent.lock().unwrap_or_else(|e| e.into_inner()) += 1;
            let etag = hex::encode(md5);
            self.uploads
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(upload_id.to_owned())
                .or_default()
                .insert(number, body);
            Ok(etag)
        })
    }
    fn complete_multipart<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        upload_id: &'a str,
        parts: Vec<(i32, String)>,
    ) -> BoxFuture<'a, Result<String, ObjectStoreError>> {
        Box::pin(async move {
            let uploaded = self
                .uploads
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(upload_id)
                .unwrap_or_default();
            let bodies: Vec<Vec<u8>> = parts
                .iter()
                .map(|(n, _)| uploaded.get(n).cloned().unwrap_or_default())
                .collect();
            let etag = etag_of(&bodies);
            let h = self
                .objects
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&format!("headers:{upload_id}"))
                .map(|o| o.2)
                .unwrap_or_default();
            self.objects
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(
                    format!("{bucket}/{key}"),
                    (bodies.concat(), etag.clone(), h),
                );
            Ok(etag)
        })
    }
    fn abort_multipart<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        upload_id: &'a str,
    ) -> BoxFuture<'a, Result<(), ObjectStoreError>> {
        Box::pin(async move {
            self.uploads
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(upload_id);
            *self.aborted.lock().unwrap_or_else(|e| e.into_inner()) += 1;
            Ok(())
        })
    }
    fn head_object<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<ObjectInfo>, ObjectStoreError>> {
        Box::pin(async move {
            *self.heads.lock().unwrap_or_else(|e| e.into_inner()) += 1;
            Ok(self
                .objects
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&format!("{bucket}/{key}"))
                .map(|(b, e, h)| ObjectInfo {
                    size: b.len() as u64,
                    etag: e.clone(),
                    content_type: h.content_type.clone(),
                }))
        })
    }
    fn list_objects<'a>(
        &'a self,
        bucket: &'a str,
        prefix: &'a str,
        _: usize,
    ) -> BoxFuture<'a, Result<Vec<crate::object_store::ListedObject>, ObjectStoreError>> {
        Box::pin(async move {
            let start = format!("{bucket}/{prefix}");
            Ok(self
                .objects
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .filter(|(k, _)| k.starts_with(&start))
                .map(|(k, (b, e, _))| {
                    let key = k[bucket.len() + 1..].to_owned();
                    let wrong = self.misreported_key.as_deref() == Some(key.as_str());
                    crate::object_store::ListedObject {
                        size: b.len() as u64,
                        etag: if wrong { format!("0{e}") } else { e.clone() },
                        key,
                    }
                })
                .collect())
        })
    }
    fn pending_uploads<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, ObjectStoreError>> {
        Box::pin(async move {
            let id = format!("{bucket}/{key}");
            Ok(self
                .uploads
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .keys()
                .filter(|k| k.starts_with(&id))
                .cloned()
                .collect())
        })
    }
    fn list_parts<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        upload_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<crate::object_store::StoredPart>, ObjectStoreError>> {
        Box::pin(async move {
            let uploads = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
            Ok(uploads
                .get(upload_id)
                .map(|parts| {
                    parts
                        .iter()
                        .map(|(n, b)| crate::object_store::StoredPart {
                            number: *n,
                            etag: hex::encode(Md5::digest(b)),
                            size: b.len() as u64,
                        })
                        .collect()
                })
                .unwrap_or_default())
        })
    }
}

fn manifest(extra: &str) -> Manifest {
    let text = format!(
        "manifestVersion: 2.0\nbucket: myawsbucket\ndeviceId: X\neraseDevice: yes\nnotificationEmail: a@example.com\nreturnAddress:\n  name: J\n  street1: 1 A St\n  city: C\n  stateOrProvince: WA\n  postalCode: 1\n  phoneNumber: 1\n  country: USA\n{extra}"
    );
    manifest::parse(text.as_bytes(), JobType::Import, &Rules::default())
        .unwrap_or_else(|e| panic!("{e}"))
}

fn tstd_tree() -> MemFs {
    MemFs::new(&[
        (b"SIGNATURE", EntryKind::File, b"version:2.0\n".to_vec()),
        (b"README.txt", EntryKind::File, b"read me".to_vec()),
        (b"images/wookie1.jpg", EntryKind::File, vec![1; 100]),
        (b"images/chewie.GIF", EntryKind::File, vec![2; 50]),
        (b"images/resources/chewie.psd", EntryKind::File, vec![3; 70]),
        (b"images/chewie.TIF", EntryKind::File, vec![4; 30]),
    ])
}

async fn import(fs: &MemFs, m: &Manifest, store: Arc<MemStore>) -> Result<Outcome, ImportError> {
    run(fs, m, "TSTD3", store, &NoProgress, Options::default()).await
}

fn row<'a>(o: &'a Outcome, file: &str) -> &'a LogRow {
    o.rows
        .iter()
        .find(|r| r.file == file)
        .unwrap_or_else(|| panic!("no row {file}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn tstd3_keys_types_and_ignores() {
    let m = manifest("acl: public-read\nprefix: dropoff\ncontentTypes:\n  jpg: application/octet-stream\n  gif: application/octet-stream\n  tif: application/octet-stream\n  txt: text/html\nignore:\n  - \\.psd$\n");
    let store = Arc::new(MemStore::default());
    let o = import(&tstd_tree(), &m, Arc::clone(&store))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(row(&o, "SIGNATURE").status, RowStatus::Ignored);
    assert_eq!(
        row(&o, "images/resources/chewie.psd").status,
        RowStatus::Ignored
    );
    let r = row(&o, "images/wookie1.jpg");
    assert_eq!(
        (r.key.as_str(), r.content_type.as_str()),
        (
            "myawsbucket/dropoffimages/wookie1.jpg",
            "application/octet-stream"
        )
    );
    // contentTypes keys are case-insensitive here (the README explains the choice).
    assert_eq!(
        row(&o, "images/chewie.GIF").content_type,
        "application/octet-stream"
    );
    assert_eq!(row(&o, "README.txt").content_type, "text/html");
    assert_eq!(r.md5, hex::encode(Md5::digest([1u8; 100])));
    assert_eq!(o.errors, 0);
    let objects = store.objects.lock().unwrap_or_else(|e| e.into_inner());
    let (body, _, headers) = &objects["myawsbucket/dropoffimages/chewie.TIF"];
    assert_eq!(body, &vec![4u8; 30]);
    assert_eq!(headers.acl, Some(crate::manifest::CannedAcl::PublicRead));
    let log = String::from_utf8_lossy(&objects["myawsbucket/import-log-TSTD3"].0).into_owned();
    assert!(log.starts_with(log::HEADER), "{log}");
    assert!(log.contains("# files=6 ok=4 errors=0 ignored=2"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn iana_types_metadata_and_gzip() {
    let m = manifest("setContentEncodingForGzFiles: yes\ndiskTimestampMetadataKey: disk-timestamp\nstaticMetadata:\n  application: App\n");
    let gz = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0];
    let fs = MemFs::new(&[
        (b"text1.html.gz", EntryKind::File, gz.to_vec()),
        (b"text3.html", EntryKind::File, b"<html>".to_vec()),
        (b"text.gz", EntryKind::File, gz.to_vec()),
        (b"noext", EntryKind::File, b"x".to_vec()),
    ]);
    let store = Arc::new(MemStore::default());
    let o = import(&fs, &m, Arc::clone(&store))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let objects = store.objects.lock().unwrap_or_else(|e| e.into_inner());
    let h = &objects["myawsbucket/text1.html.gz"].2;
    assert_eq!(
        (h.content_type.as_deref(), h.content_encoding.as_deref()),
        (Some("text/html"), Some("gzip"))
    );
    assert_eq!(objects["myawsbucket/text3.html"].2.content_encoding, None);
    assert_eq!(objects["myawsbucket/text.gz"].2.content_type, None);
    assert_eq!(row(&o, "text.gz").content_type, "binary/octet-stream");
    assert_eq!(row(&o, "noext").content_type, "binary/octet-stream");
    let meta = &objects["myawsbucket/text3.html"].2.metadata;
    assert!(meta.contains(&("application".into(), "App".into())));
    assert!(meta.contains(&(
        "disk-timestamp".into(),
        "Tue, 03 Feb 2009 21:57:43 GMT".into()
    )));
}

#[tokio::test(flavor = "multi_thread")]
async fn large_files_go_multipart_and_verify() {
    let big: Vec<u8> = (0..20 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let fs = MemFs::new(&[(b"big.bin", EntryKind::File, big.clone())]);
    let store = Arc::new(MemStore::default());
    let o = import(&fs, &manifest(""), Arc::clone(&store))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let r = row(&o, "big.bin");
    assert_eq!(r.status, RowStatus::Ok);
    assert!(r.etag.ends_with("-3"), "{}", r.etag);
    assert_eq!(r.md5, hex::encode(Md5::digest(&big)));
    assert_eq!(
        store.objects.lock().unwrap_or_else(|e| e.into_inner())["myawsbucket/big.bin"].0,
        big
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_names_special_files_read_errors_and_denials_are_rows() {
    let mut fs = MemFs::new(&[
        (b"caf\xe9.txt", EntryKind::File, b"x".to_vec()),
        (b"link", EntryKind::Symlink, Vec::new()),
        (b"fifo", EntryKind::Fifo, Vec::new()),
        (b"broken.bin", EntryKind::File, b"y".to_vec()),
        (b"secret.txt", EntryKind::File, b"z".to_vec()),
        (b"ok.txt", EntryKind::File, b"ok".to_vec()),
    ]);
    fs.unreadable = fs
        .entries
        .iter()
        .find(|e| e.2 == b"broken.bin")
        .map(|e| e.0);
    let store = Arc::new(MemStore {
        deny_key: Some("secret.txt".into()),
        ..MemStore::default()
    });
    let o = import(&fs, &manifest(""), store)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(row(&o, "caf\\xe9.txt").status, RowStatus::InvalidFileName);
    assert_eq!(row(&o, "link").status, RowStatus::Ignored);
    assert_eq!(row(&o, "fifo").status, RowStatus::Ignored);
    assert_eq!(row(&o, "broken.bin").status, RowStatus::ReadError);
    assert_eq!(row(&o, "secret.txt").status, RowStatus::AccessDenied);
    assert_eq!(row(&o, "ok.txt").status, RowStatus::Ok);
    assert_eq!(o.errors, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_that_loses_bytes_fails_verification() {
    struct Lossy(MemStore);
    impl ObjectStore for Lossy {
        fn put_object<'a>(
            &'a self,
            b: &'a str,
            k: &'a str,
            body: Vec<u8>,
            md5: [u8; 16],
            h: &'a ObjectHeaders,
        ) -> BoxFuture<'a, Result<String, ObjectStoreError>> {
            Box::pin(async move {
                let etag = self.0.put_object(b, k, body, md5, h).await?;
                if let Some(o) = self
                    .0
                    .objects
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_mut(&format!("{b}/{k}"))
                {
                    o.0.pop();
                }
                Ok(etag)
            })
        }
        fn create_multipart<'a>(
            &'a self,
            b: &'a str,
            k: &'a str,
            h: &'a ObjectHeaders,
        ) -> BoxFuture<'a, Result<String, ObjectStoreError>> {
            self.0.create_multipart(b, k, h)
        }
        fn upload_part<'a>(
            &'a self,
            b: &'a str,
            k: &'a str,
            u: &'a str,
            n: i32,
            body: Vec<u8>,
            md5: [u8; 16],
        ) -> BoxFuture<'a, Result<String, ObjectStoreError>> {
            self.0.upload_part(b, k, u, n, body, md5)
        }
        fn complete_multipart<'a>(
            &'a self,
            b: &'a str,
            k: &'a str,
            u: &'a str,
            p: Vec<(i32, String)>,
        ) -> BoxFuture<'a, Result<String, ObjectStoreError>> {
            self.0.complete_multipart(b, k, u, p)
        }
        fn abort_multipart<'a>(
            &'a self,
            b: &'a str,
            k: &'a str,
            u: &'a str,
        ) -> BoxFuture<'a, Result<(), ObjectStoreError>> {
            self.0.abort_multipart(b, k, u)
        }
        fn head_object<'a>(
            &'a self,
            b: &'a str,
            k: &'a str,
        ) -> BoxFuture<'a, Result<Option<ObjectInfo>, ObjectStoreError>> {
            self.0.head_object(b, k)
        }
        fn pending_uploads<'a>(
            &'a self,
            b: &'a str,
            k: &'a str,
        ) -> BoxFuture<'a, Result<Vec<String>, ObjectStoreError>> {
            self.0.pending_uploads(b, k)
        }
        fn list_parts<'a>(
            &'a self,
            b: &'a str,
            k: &'a str,
            u: &'a str,
        ) -> BoxFuture<'a, Result<Vec<crate::object_store::StoredPart>, ObjectStoreError>> {
            self.0.list_parts(b, k, u)
        }
    }
    let fs = MemFs::new(&[(b"a.txt", EntryKind::File, b"hello".to_vec())]);
    let result = run(
        &fs,
        &manifest(""),
        "J",
        Arc::new(Lossy(MemStore::default())),
        &NoProgress,
        Options::default(),
    )
    .await;
    match result {
        Err(ImportError::Verification { file, why }) => {
            assert_eq!(file, "a.txt");
            assert!(why.contains("4 bytes"), "{why}");
        }
        other => panic!("{other:?}"),
    }
}

fn id_of(fs: &MemFs, name: &[u8]) -> Option<u64> {
    fs.entries.iter().find(|e| e.2 == name).map(|e| e.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_that_changed_after_the_upload_fails_verification() {
    // A multipart file (parts are compared on re-reading) and a file among a batch of small
    // ones (hashed side by side on re-reading).
    let big: Vec<u8> = (0..20 * 1024 * 1024u32).map(|i| (i % 239) as u8).collect();
    let mut files: Vec<(Vec<u8>, EntryKind, Vec<u8>)> = (0..40)
        .map(|i| {
            let name = format!("small/{i:02}.txt").into_bytes();
            (name, EntryKind::File, vec![b'a' + (i % 26) as u8; 1000 + i])
        })
        .collect();
    files.push((b"big.bin".to_vec(), EntryKind::File, big));
    let files: Vec<(&[u8], EntryKind, Vec<u8>)> = files
        .iter()
        .map(|(n, k, c)| (n.as_slice(), *k, c.clone()))
        .collect();
    for (name, at, want_file, want_why) in [
        (
            &b"big.bin"[..],
            9 * 1024 * 1024 + 5,
            "big.bin",
            "part 2: MD5 ",
        ),
        (&b"17.txt"[..], 700, "small/17.txt", "on re-reading"),
    ] {
        let mut fs = MemFs::new(&files);
        fs.drifts = id_of(&fs, name).map(|id| (id, at));
        match import(&fs, &manifest(""), Arc::new(MemStore::default())).await {
            Err(ImportError::Verification { file, why }) => {
                assert_eq!(file, want_file);
                assert!(why.contains(want_why), "{why}");
            }
            other => panic!("{} drifted: {other:?}", String::from_utf8_lossy(name)),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_multipart_upload_is_resumed_and_stale_ones_aborted() {
    let big: Vec<u8> = (0..20 * 1024 * 1024u32).map(|i| (i % 241) as u8).collect();
    let part = 8 * 1024 * 1024;
    let store = Arc::new(MemStore::default());
    {
        // What an interrupted run left: a stale upload, and one holding part 1 (right bytes)
        // and part 2 (wrong bytes, as if the device changed).
        let mut uploads = store.uploads.lock().unwrap_or_else(|e| e.into_inner());
        uploads.insert("myawsbucket/big.bin#1".into(), BTreeMap::new());
        let mut parts = BTreeMap::new();
        parts.insert(1, big[..part].to_vec());
        parts.insert(2, vec![0u8; part]);
        uploads.insert("myawsbucket/big.bin#2".into(), parts);
    }
    let fs = MemFs::new(&[(b"big.bin", EntryKind::File, big.clone())]);
    let o = import(&fs, &manifest(""), Arc::clone(&store))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(row(&o, "big.bin").status, RowStatus::Ok);
    // Part 1 was not sent again; parts 2 and 3 were.
    assert_eq!(
        *store.parts_sent.lock().unwrap_or_else(|e| e.into_inner()),
        2
    );
    assert_eq!(*store.aborted.lock().unwrap_or_else(|e| e.into_inner()), 1);
    assert_eq!(
        store.objects.lock().unwrap_or_else(|e| e.into_inner())["myawsbucket/big.bin"].0,
        big
    );
    assert!(store
        .uploads
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn many_objects_are_checked_with_one_listing() {
    let files: Vec<(Vec<u8>, Vec<u8>)> = (0..100u32)
        .map(|i| {
            (
                format!("d{}/f{i:03}.dat", i % 3).into_bytes(),
                i.to_le_bytes().repeat(i as usize + 1),
            )
        })
        .collect();
    let tree: Vec<(&[u8], EntryKind, Vec<u8>)> = files
        .iter()
        .map(|(p, c)| (p.as_slice(), EntryKind::File, c.clone()))
        .collect();
    let fs = MemFs::new(&tree);
    let store = Arc::new(MemStore::default());
    let o = import(&fs, &manifest("prefix: imports/\n"), Arc::clone(&store))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(o.errors, 0);
    assert_eq!(*store.heads.lock().unwrap_or_else(|e| e.into_inner()), 0);

    // The listing is what verification compares.
    let store = Arc::new(MemStore {
        misreported_key: Some("imports/d1/f040.dat".into()),
        ..MemStore::default()
    });
    match import(&fs, &manifest("prefix: imports/\n"), store).await {
        Err(ImportError::Verification { file, why }) => {
            assert_eq!(file, "d1/f040.dat");
            assert!(why.contains("ETag"), "{why}");
        }
        other => panic!("{other:?}"),
    }
}
