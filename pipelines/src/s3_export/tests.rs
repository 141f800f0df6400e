//! The export pipeline on an in-memory store, writing into a temporary directory.

use std::collections::BTreeMap;
use std::sync::Mutex;

use md5::{Digest, Md5};

use super::*;
use crate::manifest::{self, JobType, Rules};
use crate::object_store::{BoxFuture, ObjectChunk, ObjectHeaders, StoredPart};
use crate::s3_import::NoProgress;

/// An object: its bytes and the sizes of the parts it was uploaded in (one part: a plain PUT).
struct MemObject {
    body: Vec<u8>,
    parts: Vec<usize>,
}

impl MemObject {
    fn etag(&self) -> String {
        if self.parts.len() == 1 {
            return hex::encode(Md5::digest(&self.body));
        }
        let mut md5s = Vec::new();
        let mut at = 0;
        for &n in &self.parts {
            md5s.extend_from_slice(&Md5::digest(&self.body[at..at + n]));
            at += n;
        }
        format!("{}-{}", hex::encode(Md5::digest(&md5s)), self.parts.len())
    }
}

#[derive(Default)]
struct MemStore {
    objects: Mutex<BTreeMap<(String, String), MemObject>>,
    deny: Option<String>,
    /// A key whose GETs return one flipped byte.
    corrupt: Option<String>,
}

impl MemStore {
    fn put(&self, bucket: &str, key: &str, body: Vec<u8>, parts: Vec<usize>) {
        let parts = if parts.is_empty() {
            vec![body.len()]
        } else {
            parts
        };
        self.objects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((bucket.into(), key.into()), MemObject { body, parts });
    }

    fn body(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        self.objects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(bucket.to_owned(), key.to_owned()))
            .map(|o| o.body.clone())
    }
}

fn unsupported(op: &str) -> ObjectStoreError {
    ObjectStoreError {
        operation: op.into(),
        bucket: String::new(),
        key: String::new(),
        code: "NotImplemented".into(),
        message: String::new(),
    }
}

impl ObjectStore for MemStore {
    fn put_object<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        body: Vec<u8>,
        _: [u8; 16],
        _: &'a ObjectHeaders,
    ) -> BoxFuture<'a, Result<String, ObjectStoreError>> {
        Box::pin(async move {
            let etag = hex::encode(Md5::digest(&body));
            self.put(bucket, key, body, Vec::new());
            Ok(etag)
        })
    }
    fn create_multipart<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: &'a ObjectHeaders,
    ) -> BoxFuture<'a, Result<String, ObjectStoreError>> {
        Box::pin(async { Err(unsupported("CreateMultipartUpload")) })
    }
    fn upload_part<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: &'a str,
        _: i32,
        _: Vec<u8>,
        _: [u8; 16],
    ) -> BoxFuture<'a, Result<String, ObjectStoreError>> {
        Box::pin(async { Err(unsupported("UploadPart")) })
    }
    fn complete_multipart<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: &'a str,
        _: Vec<(i32, String)>,
    ) -> BoxFuture<'a, Result<String, ObjectStoreError>> {
        Box::pin(async { Err(unsupported("CompleteMultipartUpload")) })
    }
    fn abort_multipart<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, Result<(), ObjectStoreError>> {
        Box::pin(async { Err(unsupported("AbortMultipartUpload")) })
    }
    fn head_object<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Option<crate::object_store::ObjectInfo>, ObjectStoreError>> {
        Box::pin(async { Err(unsupported("HeadObject")) })
    }
    fn list_range<'a>(
        &'a self,
        bucket: &'a str,
        prefix: &'a str,
        start_after: Option<&'a str>,
        last: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<ListedObject>, ObjectStoreError>> {
        Box::pin(async move {
            let objects = self.objects.lock().unwrap_or_else(|e| e.into_inner());
            Ok(objects
                .iter()
                .filter(|((b, k), _)| {
                    b == bucket
                        && k.starts_with(prefix)
                        && start_after.is_none_or(|s| k.as_str() > s)
                        && last.is_none_or(|l| k.as_str() <= l)
                })
                .map(|((_, k), o)| ListedObject {
                    key: k.clone(),
                    size: o.body.len() as u64,
                    etag: o.etag(),
                })
                .collect())
        })
    }
    fn get_object<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        range: Option<(u64, u64)>,
        if_match: Option<&'a str>,
    ) -> BoxFuture<'a, Result<ObjectChunk, ObjectStoreError>> {
        Box::pin(async move {
            let err = |code: &str| ObjectStoreError {
                operation: "GetObject".into(),
                bucket: bucket.into(),
                key: key.into(),
                code: code.into(),
                message: String::new(),
            };
            if self.deny.as_deref() == Some(key) {
                return Err(err("AccessDenied"));
            }
            let objects = self.objects.lock().unwrap_or_else(|e| e.into_inner());
            let o = objects
                .get(&(bucket.to_owned(), key.to_owned()))
                .ok_or_else(|| err("NoSuchKey"))?;
            if if_match.is_some_and(|e| e != o.etag()) {
                return Err(err("PreconditionFailed"));
            }
            let (start, len) = range.unwrap_or((0, o.body.len() as u64));
            let (start, len) = (start as usize, len as usize);
            let mut body = o.body[start..start + len].to_vec();
            if self.corrupt.as_deref() == Some(key) && !body.is_empty() {
                body[0] ^= 1;
            }
            // Two pieces, as a network body arrives in several.
            let tail = body.split_off(body.len() / 2);
            Ok(ObjectChunk {
                body: vec![body.into(), tail.into()],
                etag: o.etag(),
                content_type: Some("application/octet-stream".into()),
                size: o.body.len() as u64,
            })
        })
    }
    fn head_part<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        number: i32,
    ) -> BoxFuture<'a, Result<(u64, Option<u32>), ObjectStoreError>> {
        Box::pin(async move {
            let objects = self.objects.lock().unwrap_or_else(|e| e.into_inner());
            let o = objects
                .get(&(bucket.to_owned(), key.to_owned()))
                .ok_or_else(|| unsupported("HeadObject"))?;
            let size = o.parts[usize::try_from(number - 1).unwrap_or(0)];
            Ok((size as u64, Some(o.parts.len() as u32)))
        })
    }
    fn pending_uploads<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, ObjectStoreError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn list_parts<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Vec<StoredPart>, ObjectStoreError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

fn manifest(body: &str) -> Manifest {
    let text = format!(
        "manifestVersion: 2.0\ndeviceId: ABCDE\nnotificationEmail: jane@example.net\nlogBucket: logs\nlogPrefix: l/\ntrueCryptPassword: pass-word-1\n{body}\
         returnAddress:\n  name: Jane Roe\n  street1: 123 Any Street\n  city: Anytown\n  \
         stateOrProvince: WA\n  postalCode: 91011-1111\n  phoneNumber: 206-555-1111\n  \
         country: USA\n"
    );
    match manifest::parse(text.as_bytes(), JobType::Export, &Rules::default()) {
        Ok(m) => m,
        Err(e) => panic!("manifest: {e:?}"),
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

async fn export(store: Arc<MemStore>, m: &Manifest, root: &Path) -> Outcome {
    let options = Options {
        memory_cap: 32 * MIB,
        concurrency: 4,
        ..Options::default()
    };
    export_with(store, m, root, options).await
}

async fn export_with(store: Arc<MemStore>, m: &Manifest, root: &Path, options: Options) -> Outcome {
    match run(root, m, "TSTDB", store, &NoProgress, options).await {
        Ok(o) => o,
        Err(e) => panic!("export: {e}"),
    }
}

fn statuses(o: &Outcome) -> Vec<(String, u16, String, String)> {
    o.rows
        .iter()
        .map(|r| {
            let (status, code) = r.status.columns();
            (r.file.clone(), status, code.to_owned(), r.key.clone())
        })
        .collect()
}

fn row(file: &str, status: u16, code: &str, key: &str) -> (String, u16, String, String) {
    (file.into(), status, code.into(), key.into())
}

#[tokio::test]
async fn tstdb_order_markers_targets_and_multipart_verification() {
    let store = Arc::new(MemStore::default());
    let big = pattern((2 * CHUNK + 12_345) as usize, 7);
    // Uploaded in parts of unequal size: the uniform guess fails and each part is asked for.
    store.put(
        "myawsbucket",
        "images/chewie.gif",
        big.clone(),
        vec![6 << 20, 9 << 20, big.len() - (15 << 20)],
    );
    store.put(
        "myawsbucket",
        "images/wookie1.jpg",
        pattern(4510, 1),
        Vec::new(),
    );
    store.put(
        "myawsbucket",
        "images/resources/chewie.psd",
        pattern(9_245, 2),
        Vec::new(),
    );
    store.put("myawsbucket", "notes.txt", pattern(10, 3), Vec::new());
    let even = pattern((CHUNK + 5) as usize, 9);
    store.put(
        "myawsbucket",
        "images/chewie.tif",
        even.clone(),
        vec![5 << 20, even.len() - (5 << 20)],
    );
    for key in [
        "html/",
        "html/directory.html",
        "html/index.html",
        "images/hurley.jpg",
        "images/kate.jpg",
        "images/kate.jpg.bak",
        "index.html",
    ] {
        store.put("lostbucket", key, pattern(100, key.len() as u8), Vec::new());
    }
    let m = manifest(
        "fileSystem: NTFS\noperations:\n  - exportBucket: myawsbucket\n    prefix: images\n    \
         targetDirectory: starwars/image-backup\n  - exportBucket: lostbucket\n    \
         beginMarker: html/\n    endMarker: images/kate.jpg\n",
    );
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let o = export(Arc::clone(&store), &m, dir.path()).await;
    let t = "starwars/image-backup/images";
    assert_eq!(
        statuses(&o),
        vec![
            row(
                &format!("{t}/chewie.gif"),
                200,
                "OK",
                "myawsbucket/images/chewie.gif"
            ),
            row(
                &format!("{t}/chewie.tif"),
                200,
                "OK",
                "myawsbucket/images/chewie.tif"
            ),
            row(
                &format!("{t}/resources/chewie.psd"),
                200,
                "OK",
                "myawsbucket/images/resources/chewie.psd"
            ),
            row(
                &format!("{t}/wookie1.jpg"),
                200,
                "OK",
                "myawsbucket/images/wookie1.jpg"
            ),
            row(
                "lostbucket/html/directory.html",
                200,
                "OK",
                "lostbucket/html/directory.html"
            ),
            row(
                "lostbucket/html/index.html",
                200,
                "OK",
                "lostbucket/html/index.html"
            ),
            row(
                "lostbucket/images/hurley.jpg",
                200,
                "OK",
                "lostbucket/images/hurley.jpg"
            ),
            row(
                "lostbucket/images/kate.jpg",
                200,
                "OK",
                "lostbucket/images/kate.jpg"
            ),
        ]
    );
    assert_eq!(o.errors, 0);
    assert!(!o.disk_full);
    assert_eq!(
        o.last_exported.as_deref(),
        Some("lostbucket/images/kate.jpg")
    );
    assert_eq!(o.rows[0].md5, hex::encode(Md5::digest(&big)));
    assert!(o.rows[0].etag.ends_with("-3"), "{}", o.rows[0].etag);
    for r in &o.rows {
        let (bucket, key) = r.key.split_once('/').unwrap_or_default();
        let on_disk =
            fs::read(dir.path().join(&r.file)).unwrap_or_else(|e| panic!("{}: {e}", r.file));
        assert_eq!(Some(on_disk), store.body(bucket, key), "{}", r.file);
    }
    let log = String::from_utf8(store.body("logs", "l/export-log-TSTDB").unwrap_or_default())
        .unwrap_or_default();
    assert!(log.starts_with(crate::job_log::HEADER), "{log}");
    assert!(log.contains("# files=8 ok=8 errors=0 ignored=0"), "{log}");
    assert!(
        log.contains("# last-exported=lostbucket/images/kate.jpg\r\n"),
        "{log}"
    );
}

#[tokio::test]
async fn denied_corrupt_and_colliding_objects_get_their_rows() {
    let store = Arc::new(MemStore {
        deny: Some("secret.txt".into()),
        corrupt: Some("bad.bin".into()),
        ..MemStore::default()
    });
    for key in [
        "Readme.txt",
        "README.TXT",
        "bad.bin",
        "con.txt",
        "secret.txt",
        "ok:1.txt",
    ] {
        store.put("bkt", key, pattern(300, key.len() as u8), Vec::new());
    }
    let m = manifest(
        "fileSystem: NTFS\noperations:\n  - exportBucket: bkt\n    targetDirectory: out\n",
    );
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let o = export(Arc::clone(&store), &m, dir.path()).await;
    assert_eq!(
        statuses(&o),
        vec![
            row("out/README.TXT", 200, "OK", "bkt/README.TXT"),
            row(
                "EXPORT-RECOVERY/0000/0000",
                301,
                "MovedPermanently",
                "bkt/Readme.txt"
            ),
            row("", 508, "UnableToWrite", "bkt/bad.bin"),
            row(
                "EXPORT-RECOVERY/0000/0001",
                301,
                "InvalidFilename",
                "bkt/con.txt"
            ),
            row("out/ok1.txt", 200, "OK", "bkt/ok:1.txt"),
            row("", 403, "AccessDenied", "bkt/secret.txt"),
        ]
    );
    assert_eq!(o.errors, 4);
    let recovered = fs::read(dir.path().join("EXPORT-RECOVERY/0000/0000")).unwrap_or_default();
    assert_eq!(Some(recovered), store.body("bkt", "Readme.txt"));
    assert!(
        !dir.path().join("out/bad.bin").exists(),
        "a file that did not verify is removed"
    );
    assert!(!dir.path().join("out/secret.txt").exists());
}

#[tokio::test]
async fn a_path_the_filesystem_refuses_goes_to_recovery_while_writing() {
    let store = Arc::new(MemStore::default());
    store.put("bkt", "taken.txt", pattern(700, 1), Vec::new());
    store.put("bkt", "zz.txt", pattern(70, 2), Vec::new());
    let m = manifest(
        "fileSystem: EXT4\noperations:\n  - exportBucket: bkt\n    targetDirectory: out\n",
    );
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // Something the plan cannot know about already sits at the first key's path.
    fs::create_dir_all(dir.path().join("out")).unwrap_or_else(|e| panic!("{e}"));
    fs::write(dir.path().join("out/taken.txt"), b"not ours").unwrap_or_else(|e| panic!("{e}"));
    let o = export(Arc::clone(&store), &m, dir.path()).await;
    assert_eq!(
        statuses(&o),
        vec![
            row(
                "EXPORT-RECOVERY/0000/0000",
                301,
                "MovedPermanently",
                "bkt/taken.txt"
            ),
            row("out/zz.txt", 200, "OK", "bkt/zz.txt"),
        ]
    );
    assert_eq!(
        fs::read(dir.path().join("out/taken.txt")).unwrap_or_default(),
        b"not ours",
        "an existing file is never overwritten"
    );
    let recovered = fs::read(dir.path().join("EXPORT-RECOVERY/0000/0000")).unwrap_or_default();
    assert_eq!(Some(recovered), store.body("bkt", "taken.txt"));
}

#[test]
fn write_errors_map_to_the_guide_codes() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let err = |errno: i32| io::Error::from_raw_os_error(errno);
    let code = |w: Written| match w {
        Written::Refused(why) => format!("301 {}", why.code()),
        Written::NoSpace => "499".to_owned(),
        Written::Failed(status) => format!("{} {}", status.columns().0, status.columns().1),
        Written::Done { .. } => "200".to_owned(),
    };
    let root = dir.path();
    // No space while creating, but the filesystem has room: only that directory is full.
    assert_eq!(
        code(write_failure(root, &err(28), true)),
        "301 DirectoryFull"
    );
    assert_eq!(code(write_failure(root, &err(28), false)), "499");
    assert_eq!(
        code(write_failure(root, &err(31), true)),
        "301 DirectoryFull"
    );
    assert_eq!(
        code(write_failure(root, &err(36), true)),
        "301 FilenameTooLong"
    );
    assert_eq!(
        code(write_failure(root, &err(84), true)),
        "301 InvalidFilename"
    );
    assert_eq!(
        code(write_failure(root, &err(17), true)),
        "301 MovedPermanently"
    );
    assert_eq!(
        code(write_failure(root, &err(27), false)),
        "413 FileTooLarge"
    );
    assert_eq!(
        code(write_failure(root, &err(5), false)),
        "508 UnableToWrite"
    );
}

#[tokio::test]
async fn an_object_larger_than_the_filesystem_holds_gets_413() {
    let store = Arc::new(MemStore::default());
    store.put("bkt", "big.bin", pattern(5000, 1), Vec::new());
    store.put("bkt", "small.bin", pattern(500, 2), Vec::new());
    let m = manifest("fileSystem: EXT4\noperations:\n  - exportBucket: bkt\n");
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let options = Options {
        max_file_size: 4096,
        ..Options::default()
    };
    let o = export_with(store, &m, dir.path(), options).await;
    assert_eq!(
        statuses(&o),
        vec![
            row("", 413, "FileTooLarge", "bkt/big.bin"),
            row("bkt/small.bin", 200, "OK", "bkt/small.bin"),
        ]
    );
    assert!(!dir.path().join("bkt/big.bin").exists());
}

#[tokio::test]
async fn multipart_objects_written_direct_are_checked_as_they_finish() {
    // A cap large enough for the checks that run while the downloads go on.
    let store = Arc::new(MemStore {
        corrupt: Some("big-bad.bin".into()),
        ..MemStore::default()
    });
    let parts = vec![8 << 20, 8 << 20, 4 << 20];
    let good = pattern(20 << 20, 1);
    store.put("bkt", "big-bad.bin", pattern(20 << 20, 2), parts.clone());
    store.put("bkt", "big-good.bin", good.clone(), parts);
    store.put("bkt", "small.txt", pattern(300, 3), Vec::new());
    let m = manifest("fileSystem: EXT4\noperations:\n  - exportBucket: bkt\n");
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let options = Options {
        memory_cap: 512 * MIB,
        concurrency: 8,
        ..Options::default()
    };
    let o = export_with(store, &m, dir.path(), options).await;
    assert_eq!(
        statuses(&o),
        vec![
            row("", 508, "UnableToWrite", "bkt/big-bad.bin"),
            row("bkt/big-good.bin", 200, "OK", "bkt/big-good.bin"),
            row("bkt/small.txt", 200, "OK", "bkt/small.txt"),
        ]
    );
    // The log's MD5 of a multipart object is its bytes' MD5, not the ETag.
    assert_eq!(o.rows[1].md5, hex::encode(Md5::digest(&good)));
    assert!(o.rows[1].etag.ends_with("-3"), "{}", o.rows[1].etag);
    let written = fs::read(dir.path().join("bkt/big-good.bin")).unwrap_or_default();
    assert!(written == good, "the file differs from its object");
    assert!(
        !dir.path().join("bkt/big-bad.bin").exists(),
        "a file that did not verify is removed"
    );
}

/// A context for the in-order hash alone: `chunks` chunks' worth of memory cap.
fn hashing_context(chunks: u64) -> Arc<Context> {
    Arc::new(Context {
        root: PathBuf::new(),
        store: Arc::new(MemStore::default()),
        memory: Arc::new(Semaphore::new(permits(chunks * CHUNK))),
        buffers: BufferPool::new(chunks),
        requests: Arc::new(Semaphore::new(1)),
        written: AtomicU64::new(0),
        activity: AtomicU64::new(0),
        early_checks: None,
    })
}

/// Writes `body` as chunks in the order of `order` (chunk indexes), handing each to an
/// in-order hasher as the downloads do, and returns the MD5 it gives.
async fn hash_written_in_order(ctx: &Arc<Context>, body: &[u8], order: &[usize]) -> Option<String> {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("object.bin");
    let file = Arc::new(ExportFile::create_new(&path, true).unwrap_or_else(|e| panic!("{e}")));
    let hasher = InOrderMd5::start(Arc::clone(ctx), Arc::clone(&file), body.len() as u64);
    let chunk = CHUNK as usize;
    for &index in order {
        let offset = index * chunk;
        let len = chunk.min(body.len() - offset);
        let memory = Arc::clone(&ctx.memory)
            .try_acquire_many_owned(u32::try_from(permits(CHUNK)).unwrap_or(u32::MAX))
            .unwrap_or_else(|e| panic!("memory for chunk {index}: {e}"));
        let mut buf = ctx.buffers.take(CHUNK);
        buf[..len].copy_from_slice(&body[offset..offset + len]);
        let buf = write_at(ctx, &file, offset as u64, buf, len)
            .await
            .unwrap_or_else(|e| panic!("write chunk {index}: {e}"));
        let chunk = WrittenChunk {
            offset: offset as u64,
            body: buf,
            len,
            _memory: memory,
        };
        hand_over(ctx, Some(&hasher.written), chunk);
    }
    hasher.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_written_out_of_order_hash_as_the_whole_file() {
    // Twelve chunks and a short last one: written last to first, eight are held and the
    // rest read back from the file; with a tight cap none is held.
    let body = pattern(12 * CHUNK as usize + 12345, 7);
    let want = hex::encode(Md5::digest(&body));
    let backwards: Vec<usize> = (0..=12).rev().collect();
    let shuffled = [3, 0, 1, 7, 2, 12, 4, 6, 5, 11, 8, 10, 9];
    for (chunks, order) in [
        (64, &backwards[..]),
        (64, &shuffled[..]),
        (4, &backwards[..]),
    ] {
        let ctx = hashing_context(chunks);
        let got = hash_written_in_order(&ctx, &body, order).await;
        assert_eq!(
            got.as_deref(),
            Some(want.as_str()),
            "cap {chunks} chunks, order {order:?}"
        );
        // Every held chunk's memory is given back once hashed.
        assert_eq!(ctx.memory.available_permits(), permits(chunks * CHUNK));
    }
    // A chunk that never arrives: no MD5.
    let ctx = hashing_context(64);
    let missing: Vec<usize> = (0..=12).filter(|&i| i != 5).collect();
    assert_eq!(hash_written_in_order(&ctx, &body, &missing).await, None);
}
