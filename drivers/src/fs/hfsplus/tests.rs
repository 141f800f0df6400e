//! Unit tests on a synthetic volume built here: what xorriso cannot make (hard links to files
//! and directories, overflow extents, decmpfs files, an HFS wrapper, HFSX order) and corrupt
//! B-trees (loops, self-pointing children).

use std::sync::Arc;

use super::catalog::cmp_names;
use super::*;
use crate::source::MemorySource;

const BS: usize = 4096;
const TOTAL_BLOCKS: u32 = 256;

fn put16(d: &mut [u8], at: usize, v: u16) {
    d[at..at + 2].copy_from_slice(&v.to_be_bytes());
}
fn put32(d: &mut [u8], at: usize, v: u32) {
    d[at..at + 4].copy_from_slice(&v.to_be_bytes());
}
fn put64(d: &mut [u8], at: usize, v: u64) {
    d[at..at + 8].copy_from_slice(&v.to_be_bytes());
}

/// A node of `BS` bytes holding `records`.
fn node(kind: i8, height: u8, forward: u32, records: &[Vec<u8>]) -> Vec<u8> {
    let mut n = vec![0u8; BS];
    put32(&mut n, 0, forward);
    n[8] = kind as u8;
    n[9] = height;
    put16(&mut n, 10, records.len() as u16);
    let mut at = 14;
    for (i, r) in records.iter().enumerate() {
        put16(&mut n, BS - 2 * (i + 1), at as u16);
        n[at..at + r.len()].copy_from_slice(r);
        at += r.len();
    }
    put16(&mut n, BS - 2 * (records.len() + 1), at as u16);
    assert!(at + 2 * (records.len() + 1) <= BS, "node overflow");
    n
}

/// A B-tree file from sorted leaf records `(key, data)` (keys with their length field).
fn tree(records: &[(Vec<u8>, Vec<u8>)], compare: u8, max_key: u16) -> Vec<u8> {
    tree_with(records, compare, max_key, usize::MAX)
}

/// [`tree`] with at most `per_leaf` records in a leaf.
fn tree_with(
    records: &[(Vec<u8>, Vec<u8>)],
    compare: u8,
    max_key: u16,
    per_leaf: usize,
) -> Vec<u8> {
    let mut leaves: Vec<Vec<Vec<u8>>> = vec![Vec::new()];
    let mut used = 14 + 2;
    for (k, d) in records {
        let r = [k.clone(), d.clone()].concat();
        if used + r.len() + 2 > BS - 64 || leaves.last().is_some_and(|l| l.len() >= per_leaf) {
            leaves.push(Vec::new());
            used = 14 + 2;
        }
        used += r.len() + 2;
        if let Some(l) = leaves.last_mut() {
            l.push(r);
        }
    }
    let index = leaves.len() > 1;
    let first_leaf = if index { 2 } else { 1 };
    let total = first_leaf + leaves.len() as u32;
    let mut head = vec![0u8; 106];
    put16(&mut head, 0, if index { 2 } else { 1 });
    put32(&mut head, 2, 1);
    put32(&mut head, 6, records.len() as u32);
    put32(&mut head, 10, first_leaf);
    put32(&mut head, 14, total - 1);
    put16(&mut head, 18, BS as u16);
    put16(&mut head, 20, max_key);
    put32(&mut head, 22, total);
    head[37] = compare;
    put32(&mut head, 38, 6); // big keys, variable index keys
    let mut out = node(1, 0, 0, &[head]);
    let leaf_height = 1;
    if index {
        let recs: Vec<Vec<u8>> = leaves
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let key_len = usize::from(u16::from_be_bytes([l[0][0], l[0][1]]));
                let mut r = l[0][..2 + key_len].to_vec();
                r.extend_from_slice(&(first_leaf + i as u32).to_be_bytes());
                r
            })
            .collect();
        out.extend(node(0, 2, 0, &recs));
    }
    for (i, l) in leaves.iter().enumerate() {
        let forward = if i + 1 < leaves.len() {
            first_leaf + i as u32 + 1
        } else {
            0
        };
        out.extend(node(-1, leaf_height, forward, l));
    }
    out
}

fn cat_key(parent: u32, name: &str) -> Vec<u8> {
    let units: Vec<u16> = name.encode_utf16().collect();
    let mut k = Vec::new();
    k.extend_from_slice(&((6 + 2 * units.len()) as u16).to_be_bytes());
    k.extend_from_slice(&parent.to_be_bytes());
    k.extend_from_slice(&(units.len() as u16).to_be_bytes());
    for u in units {
        k.extend_from_slice(&u.to_be_bytes());
    }
    k
}

fn fork(size: u64, extents: &[(u32, u32)]) -> Vec<u8> {
    let mut f = vec![0u8; 80];
    put64(&mut f, 0, size);
    put32(&mut f, 12, extents.iter().map(|e| e.1).sum());
    for (i, &(s, c)) in extents.iter().take(8).enumerate() {
        put32(&mut f, 16 + 8 * i, s);
        put32(&mut f, 20 + 8 * i, c);
    }
    f
}

/// 2001-09-09T01:46:40Z in HFS+ time.
const MTIME: u32 = 1_000_000_000 + 2_082_844_800;

fn folder(id: u32) -> Vec<u8> {
    let mut r = vec![0u8; 88];
    put16(&mut r, 0, 1);
    put32(&mut r, 8, id);
    put32(&mut r, 16, MTIME);
    put16(&mut r, 42, 0o040_755);
    r
}

struct FileRec<'a> {
    id: u32,
    mode: u16,
    flags: u8,
    special: u32,
    code: &'a [u8; 4],
    creator: &'a [u8; 4],
    data: Vec<u8>,
    rsrc: Vec<u8>,
}

fn file(f: FileRec<'_>) -> Vec<u8> {
    let mut r = vec![0u8; 248];
    put16(&mut r, 0, 2);
    put32(&mut r, 8, f.id);
    put32(&mut r, 16, MTIME);
    r[41] = f.flags;
    put16(&mut r, 42, f.mode);
    put32(&mut r, 44, f.special);
    r[48..52].copy_from_slice(f.code);
    r[52..56].copy_from_slice(f.creator);
    r[88..168].copy_from_slice(&f.data);
    r[168..248].copy_from_slice(&f.rsrc);
    r
}

fn plain(id: u32, data: Vec<u8>) -> Vec<u8> {
    file(FileRec {
        id,
        mode: 0o100_644,
        flags: 0,
        special: 1,
        code: b"\0\0\0\0",
        creator: b"\0\0\0\0",
        data,
        rsrc: fork(0, &[]),
    })
}

fn thread(folder: bool, parent: u32, name: &str) -> Vec<u8> {
    let units: Vec<u16> = name.encode_utf16().collect();
    let mut r = vec![0u8; 10];
    put16(&mut r, 0, if folder { 3 } else { 4 });
    put32(&mut r, 4, parent);
    put16(&mut r, 8, units.len() as u16);
    for u in units {
        r.extend_from_slice(&u.to_be_bytes());
    }
    r
}

fn attr_key(file: u32, name: &str) -> Vec<u8> {
    let units: Vec<u16> = name.encode_utf16().collect();
    let mut k = vec![0u8; 14];
    put16(&mut k, 0, (12 + 2 * units.len()) as u16);
    put32(&mut k, 4, file);
    put16(&mut k, 12, units.len() as u16);
    for u in units {
        k.extend_from_slice(&u.to_be_bytes());
    }
    k
}

fn inline_attr(value: &[u8]) -> Vec<u8> {
    let mut r = vec![0u8; 16];
    put32(&mut r, 0, 0x10);
    put32(&mut r, 12, value.len() as u32);
    r.extend_from_slice(value);
    r
}

fn decmpfs_attr(kind: u32, size: u64, body: &[u8]) -> Vec<u8> {
    let mut a = b"fpmc".to_vec();
    a.extend_from_slice(&kind.to_le_bytes());
    a.extend_from_slice(&size.to_le_bytes());
    a.extend_from_slice(body);
    a
}

/// Content of the fragmented file: block i of it is filled with byte i.
fn big_content() -> Vec<u8> {
    let mut v: Vec<u8> = (0..10u8).flat_map(|i| vec![i; BS]).collect();
    v.truncate(10 * BS - 100);
    v
}
fn comp3_content() -> Vec<u8> {
    b"compressed inline\n".repeat(100)
}
fn comp4_content() -> Vec<u8> {
    (0..150_000u32).map(|i| (i % 251) as u8).collect()
}

/// Builds the volume. `hfsx` makes an HFSX volume (binary name order).
fn volume(hfsx: bool) -> Vec<u8> {
    volume_with(hfsx, false)
}

/// Builds the volume; `scatter_catalog` pads the catalog file to 12 blocks and scatters them
/// one by one, so its last four extents are in the extents overflow file.
fn volume_with(hfsx: bool, scatter_catalog: bool) -> Vec<u8> {
    let mut img = vec![0u8; TOTAL_BLOCKS as usize * BS];
    let mut write = |block: u32, bytes: &[u8]| {
        let at = block as usize * BS;
        img[at..at + bytes.len()].copy_from_slice(bytes);
    };
    // Data.
    write(16, b"slash\n");
    let big = big_content();
    let big_blocks: Vec<u32> = (0..10).map(|i| 20 + 2 * i).collect();
    for (i, &b) in big_blocks.iter().enumerate() {
        write(b, &big[i * BS..((i + 1) * BS).min(big.len())]);
    }
    // comp4's resource fork: header, chunk table, zlib chunks.
    let text = comp4_content();
    let parts: Vec<Vec<u8>> = text
        .chunks(65536)
        .map(|c| miniz_oxide::deflate::compress_to_vec_zlib(c, 6))
        .collect();
    let mut rsrc = vec![0u8; 0x100];
    rsrc[0..4].copy_from_slice(&0x100u32.to_be_bytes());
    rsrc.extend_from_slice(&[0; 4]);
    rsrc.extend_from_slice(&(parts.len() as u32).to_le_bytes());
    let mut off = 4 + 8 * parts.len() as u32;
    for p in &parts {
        rsrc.extend_from_slice(&off.to_le_bytes());
        rsrc.extend_from_slice(&(p.len() as u32).to_le_bytes());
        off += p.len() as u32;
    }
    for p in &parts {
        rsrc.extend_from_slice(p);
    }
    let rsrc_blocks = rsrc.len().div_ceil(BS) as u32;
    write(60, &rsrc);
    write(50, b"big");
    write(51, b"hard linked\n");
    write(52, b"inside\n");

    let none = fork(0, &[]);
    let mut cat: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (cat_key(1, "Vol"), folder(2)),
        (cat_key(2, ""), thread(true, 1, "Vol")),
        (cat_key(2, ".HFS+ Private Directory Data\r"), folder(19)),
        (cat_key(2, "a/b"), plain(20, fork(6, &[(16, 1)]))),
        (
            cat_key(2, "big"),
            plain(
                21,
                fork(
                    big.len() as u64,
                    &big_blocks.iter().map(|&b| (b, 1)).collect::<Vec<_>>(),
                ),
            ),
        ),
        (
            cat_key(2, "comp3"),
            file(FileRec {
                id: 22,
                mode: 0o100_644,
                flags: decmpfs::UF_COMPRESSED,
                special: 1,
                code: b"\0\0\0\0",
                creator: b"\0\0\0\0",
                data: none.clone(),
                rsrc: none.clone(),
            }),
        ),
        (
            cat_key(2, "comp4"),
            file(FileRec {
                id: 23,
                mode: 0o100_644,
                flags: decmpfs::UF_COMPRESSED,
                special: 1,
                code: b"\0\0\0\0",
                creator: b"\0\0\0\0",
                data: none.clone(),
                rsrc: fork(rsrc.len() as u64, &[(60, rsrc_blocks)]),
            }),
        ),
        (
            cat_key(2, "dirlink"),
            file(FileRec {
                id: 24,
                mode: 0o100_644,
                flags: 0,
                special: 25,
                code: b"fdrp",
                creator: b"MACS",
                data: none.clone(),
                rsrc: none.clone(),
            }),
        ),
        (
            cat_key(2, "fifo"),
            file(FileRec {
                id: 26,
                mode: 0o010_644,
                flags: 0,
                special: 0,
                code: b"\0\0\0\0",
                creator: b"\0\0\0\0",
                data: none.clone(),
                rsrc: none.clone(),
            }),
        ),
        (
            cat_key(2, "link1"),
            file(FileRec {
                id: 27,
                mode: 0o100_644,
                flags: 0,
                special: 30,
                code: b"hlnk",
                creator: b"hfs+",
                data: none.clone(),
                rsrc: none.clone(),
            }),
        ),
        (
            cat_key(2, "link2"),
            file(FileRec {
                id: 28,
                mode: 0o100_644,
                flags: 0,
                special: 30,
                code: b"hlnk",
                creator: b"hfs+",
                data: none.clone(),
                rsrc: none.clone(),
            }),
        ),
        (
            cat_key(2, "lzvn"),
            file(FileRec {
                id: 29,
                mode: 0o100_644,
                flags: decmpfs::UF_COMPRESSED,
                special: 1,
                code: b"\0\0\0\0",
                creator: b"\0\0\0\0",
                data: none.clone(),
                rsrc: none.clone(),
            }),
        ),
        (
            cat_key(2, "sym"),
            file(FileRec {
                id: 31,
                mode: 0o120_777,
                flags: 0,
                special: 1,
                code: b"slnk",
                creator: b"rhap",
                data: fork(3, &[(50, 1)]),
                rsrc: none.clone(),
            }),
        ),
        (cat_key(2, "\0\0\0\0HFS+ Private Data"), folder(18)),
        (
            cat_key(18, ""),
            thread(true, 2, "\0\0\0\0HFS+ Private Data"),
        ),
        (cat_key(18, "iNode30"), plain(30, fork(12, &[(51, 1)]))),
        (
            cat_key(19, ""),
            thread(true, 2, ".HFS+ Private Directory Data\r"),
        ),
        (cat_key(19, "dir_25"), folder(25)),
        (cat_key(25, ""), thread(true, 19, "dir_25")),
        (cat_key(25, "inside"), plain(32, fork(7, &[(52, 1)]))),
    ];
    for (id, parent, name) in [
        (20, 2, "a/b"),
        (21, 2, "big"),
        (22, 2, "comp3"),
        (23, 2, "comp4"),
        (24, 2, "dirlink"),
        (26, 2, "fifo"),
        (27, 2, "link1"),
        (28, 2, "link2"),
        (29, 2, "lzvn"),
        (30, 18, "iNode30"),
        (31, 2, "sym"),
        (32, 25, "inside"),
    ] {
        cat.push((cat_key(id, ""), thread(false, parent, name)));
    }
    let parse = |k: &[u8]| CatKey::parse(&k[2..]).unwrap_or_else(|| panic!("bad test key"));
    cat.sort_by(|a, b| {
        let (a, b) = (parse(&a.0), parse(&b.0));
        a.parent
            .cmp(&b.parent)
            .then_with(|| cmp_names(&a.name, &b.name, hfsx))
    });
    let per_leaf = if scatter_catalog { 4 } else { usize::MAX };
    let mut catalog = tree_with(&cat, if hfsx { 0xBC } else { 0xCF }, 516, per_leaf);
    let scattered: Vec<u32> = (0..12).map(|i| 120 + 2 * i).collect();
    if scatter_catalog {
        assert!(
            (9..=12).contains(&(catalog.len() / BS)),
            "{} nodes",
            catalog.len() / BS
        );
        catalog.resize(12 * BS, 0);
    }

    let mut ext_key = vec![0u8; 12];
    put16(&mut ext_key, 0, 10);
    put32(&mut ext_key, 4, 21);
    put32(&mut ext_key, 8, 8);
    let mut ext_rec = vec![0u8; 64];
    for (i, &b) in big_blocks[8..].iter().enumerate() {
        put32(&mut ext_rec, 8 * i, b);
        put32(&mut ext_rec, 8 * i + 4, 1);
    }
    let mut ext_records = vec![(ext_key, ext_rec)];
    if scatter_catalog {
        let mut key = vec![0u8; 12];
        put16(&mut key, 0, 10);
        put32(&mut key, 4, CATALOG_FILE_ID);
        put32(&mut key, 8, 8);
        let mut rec = vec![0u8; 64];
        for (i, &b) in scattered[8..].iter().enumerate() {
            put32(&mut rec, 8 * i, b);
            put32(&mut rec, 8 * i + 4, 1);
        }
        ext_records.insert(0, (key, rec));
    }
    let extents = tree(&ext_records, 0, 10);

    let z = miniz_oxide::deflate::compress_to_vec_zlib(&comp3_content(), 6);
    let attrs = tree(
        &[
            (
                attr_key(22, decmpfs::XATTR_NAME),
                inline_attr(&decmpfs_attr(3, comp3_content().len() as u64, &z)),
            ),
            (
                attr_key(23, decmpfs::XATTR_NAME),
                inline_attr(&decmpfs_attr(4, comp4_content().len() as u64, &[])),
            ),
            (
                attr_key(29, decmpfs::XATTR_NAME),
                inline_attr(&decmpfs_attr(8, 1000, &[0; 10])),
            ),
        ],
        0,
        266,
    );
    let (ext_at, cat_at, attr_at) = (1u32, 4u32, 10u32);
    assert!(
        extents.len() <= 3 * BS
            && (scatter_catalog || catalog.len() <= 6 * BS)
            && attrs.len() <= 4 * BS
    );
    write(ext_at, &extents);
    if scatter_catalog {
        for (i, &b) in scattered.iter().enumerate() {
            write(b, &catalog[i * BS..(i + 1) * BS]);
        }
    } else {
        write(cat_at, &catalog);
    }
    write(attr_at, &attrs);
    let blocks = |t: &Vec<u8>| (t.len() / BS) as u32;
    let mut vh = vec![0u8; 512];
    vh[0..2].copy_from_slice(if hfsx { b"HX" } else { b"H+" });
    put16(&mut vh, 2, if hfsx { 5 } else { 4 });
    put32(&mut vh, 4, 1 << 8);
    put32(&mut vh, 40, BS as u32);
    put32(&mut vh, 44, TOTAL_BLOCKS);
    vh[192..272].copy_from_slice(&fork(extents.len() as u64, &[(ext_at, blocks(&extents))]));
    let cat_fork = if scatter_catalog {
        let mut f = fork(
            catalog.len() as u64,
            &scattered[..8].iter().map(|&b| (b, 1)).collect::<Vec<_>>(),
        );
        put32(&mut f, 12, 12);
        f
    } else {
        fork(catalog.len() as u64, &[(cat_at, blocks(&catalog))])
    };
    vh[272..352].copy_from_slice(&cat_fork);
    vh[352..432].copy_from_slice(&fork(attrs.len() as u64, &[(attr_at, blocks(&attrs))]));
    img[1024..1536].copy_from_slice(&vh);
    img
}

fn open(img: Vec<u8>) -> HfsFs {
    HfsFs::open(Arc::new(MemorySource::new("synthetic.img", img))).unwrap_or_else(|e| panic!("{e}"))
}

fn read_all(fs: &HfsFs, id: EntryId) -> Result<Vec<u8>, FsError> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 50_000];
    loop {
        let n = fs.read(id, out.len() as u64, &mut buf)?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

fn root_entries(fs: &HfsFs) -> Vec<(String, DirEntry)> {
    fs.read_dir(fs.root())
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|e| (e.name.to_utf8().unwrap_or_default(), e))
        .collect()
}

#[test]
fn synthetic_volume_lists_links_special_files_and_hides_metadata() {
    for hfsx in [false, true] {
        let fs = open(volume(hfsx));
        assert_eq!(
            fs.fs_type(),
            if hfsx { FsType::Hfsx } else { FsType::HfsPlus }
        );
        assert_eq!(fs.label().as_deref(), Some("Vol"));
        let root = root_entries(&fs);
        let names: Vec<&str> = root.iter().map(|(n, _)| n.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            ["a:b", "big", "comp3", "comp4", "dirlink", "fifo", "link1", "link2", "lzvn", "sym"]
        );
        let get = |n: &str| {
            root.iter()
                .find(|(m, _)| m == n)
                .map(|(_, e)| e.clone())
                .unwrap_or_else(|| panic!("no {n}"))
        };
        assert_eq!((get("link1").id, get("link1").size), (30, 12));
        assert_eq!(get("link2").id, 30);
        assert_eq!(get("dirlink").kind, EntryKind::Directory);
        assert_eq!(get("fifo").kind, EntryKind::Fifo);
        assert_eq!(get("sym").kind, EntryKind::Symlink);
        assert_eq!(get("comp4").size, 150_000);
        assert_eq!(get("lzvn").size, 1000);
        let t = get("big").mtime.unwrap_or_else(|| panic!("no mtime"));
        assert_eq!((t.seconds, t.zone), (1_000_000_000, Zone::Utc));
        let inside = fs
            .read_dir(get("dirlink").id)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(inside.len(), 1);
        assert_eq!(read_all(&fs, inside[0].id).ok(), Some(b"inside\n".to_vec()));
        assert_eq!(read_all(&fs, 30).ok(), Some(b"hard linked\n".to_vec()));
        assert_eq!(fs.read_link(31).ok(), Some(b"big".to_vec()));
        assert!(fs.warnings().is_empty(), "{:?}", fs.warnings());
    }
}

#[test]
fn overflow_extents_and_compressed_files_read_back() {
    let fs = open(volume(false));
    // Reading before listing: the entries are found through their thread records.
    assert_eq!(read_all(&fs, 21).ok(), Some(big_content()));
    let extents = fs.extents(21).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(extents.len(), 10);
    assert_eq!(
        extents.iter().map(|e| e.length).sum::<u64>(),
        big_content().len() as u64
    );
    assert_eq!(extents[9].physical, 38 * BS as u64);
    assert_eq!(read_all(&fs, 22).ok(), Some(comp3_content()));
    assert_eq!(read_all(&fs, 23).ok(), Some(comp4_content()));
    // A read across a chunk boundary.
    let mut buf = vec![0u8; 1000];
    assert_eq!(fs.read(23, 65_000, &mut buf).ok(), Some(1000));
    assert_eq!(buf, comp4_content()[65_000..66_000]);
    assert!(matches!(fs.extents(23), Err(FsError::Unsupported { .. })));
    let e = fs
        .read(29, 0, &mut buf)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("LZVN"), "{e}");
    assert!(matches!(fs.read_dir(21), Err(FsError::WrongKind { .. })));
    assert!(matches!(
        fs.read(2, 0, &mut buf),
        Err(FsError::WrongKind { .. })
    ));
    assert!(matches!(
        fs.read(1 << 40, 0, &mut buf),
        Err(FsError::WrongKind { .. })
    ));
}

#[test]
fn a_catalog_with_overflow_extents_is_read() {
    let fs = open(volume_with(false, true));
    let names: Vec<String> = root_entries(&fs).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names.len(), 10, "{names:?}");
    assert_eq!(read_all(&fs, 32).ok(), Some(b"inside\n".to_vec()));
    // Without the overflow record the catalog's last blocks are unmapped: an error.
    let mut img = volume_with(false, true);
    let needle = [0u8, 0, 0, 4, 0, 0, 0, 8];
    let at = img[BS..4 * BS]
        .windows(8)
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("no catalog overflow key"))
        + BS;
    img[at + 3] = 99;
    assert!(HfsFs::open(Arc::new(MemorySource::new("x", img))).is_err());
}

#[test]
fn a_volume_inside_an_hfs_wrapper_is_found() {
    let inner = volume(false);
    let mut img = vec![0u8; 16384];
    img[1024..1026].copy_from_slice(b"BD");
    put32(&mut img, 1024 + 0x14, 4096);
    put16(&mut img, 1024 + 0x1C, 16); // first allocation block at sector 16 (8 KiB)
    img[1024 + 0x7C..1024 + 0x7E].copy_from_slice(b"H+");
    put16(&mut img, 1024 + 0x7E, 2); // embedded volume at allocation block 2: 8 + 8 KiB
    img.extend(inner);
    let source = MemorySource::new("wrapped.img", img);
    assert_eq!(
        crate::probe::probe(&source)
            .ok()
            .flatten()
            .map(|d| d.fs_type),
        Some(FsType::HfsPlus)
    );
    let fs = HfsFs::open(Arc::new(source)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(read_all(&fs, 21).ok(), Some(big_content()));
    let e = fs.extents(21).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(e[0].physical, 16384 + 20 * BS as u64);
}

#[test]
fn loops_and_bad_pointers_in_the_catalog_are_errors() {
    let base = volume(false);
    let cat = 4 * BS;
    // The catalog: header (0), index (1), leaves from 2 on.
    let mut looped = base.clone();
    put32(&mut looped, cat + 2 * BS, 2); // first leaf's forward link to itself
    let fs = open(looped);
    let _ = fs.read_dir(ROOT_ID.into());
    let _ = read_all(&fs, 32);
    let mut self_child = base.clone();
    // The index node's first record: key length 2 + key, then the child pointer.
    let rec = cat + BS + 14;
    let key_len = usize::from(be16(&self_child, rec));
    put32(&mut self_child, rec + 2 + key_len, 1);
    assert!(HfsFs::open(Arc::new(MemorySource::new("x", self_child))).is_err());
    let mut bad_offsets = base.clone();
    put16(&mut bad_offsets, cat + 2 * BS + BS - 2, 60_000);
    let fs = HfsFs::open(Arc::new(MemorySource::new("x", bad_offsets)));
    if let Ok(fs) = fs {
        assert!(fs.read_dir(ROOT_ID.into()).is_err());
    }
    let mut huge_node = base;
    put16(&mut huge_node, cat + 14 + 18, 65_535);
    assert!(HfsFs::open(Arc::new(MemorySource::new("x", huge_node))).is_err());
}

/// `open_filesystem` finds the reader by the HFSX signature.
#[test]
fn synthetic_volume_opens_through_open_filesystem() {
    let fs = crate::fs::open_filesystem(Arc::new(MemorySource::new("s.img", volume(true))))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(fs.fs_type(), FsType::Hfsx);
}

/// The synthetic volume, journaled and dirty: one transaction rewrites the catalog leaf that
/// holds `a/b`, renaming it `a/c`. `break_checksum` spoils the block list's checksum.
fn dirty_journal(break_checksum: bool) -> Vec<u8> {
    let mut img = volume(false);
    let cat = 4 * BS;
    let needle: Vec<u8> = "a/b".encode_utf16().flat_map(u16::to_be_bytes).collect();
    let at = img[cat..cat + 6 * BS]
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("no a/b in the catalog"))
        + cat;
    let leaf = at / BS * BS;
    let mut node = img[leaf..leaf + BS].to_vec();
    node[at - leaf + 5] = b'c';
    let (jib_block, journal_block, jsize) = (100usize, 101usize, 65536u64);
    let jib = jib_block * BS;
    put32(&mut img, jib, 1);
    put64(&mut img, jib + 36, (journal_block * BS) as u64);
    put64(&mut img, jib + 44, jsize);
    let j = journal_block * BS;
    let (jhdr, blhdr, start) = (512u64, 4096usize, 512usize);
    let used = blhdr + BS;
    let mut list = vec![0u8; blhdr];
    list[0..2].copy_from_slice(&2u16.to_le_bytes());
    list[2..4].copy_from_slice(&2u16.to_le_bytes());
    list[4..8].copy_from_slice(&(used as u32).to_le_bytes());
    list[32..40].copy_from_slice(&(leaf as u64 / jhdr).to_le_bytes());
    list[40..44].copy_from_slice(&(BS as u32).to_le_bytes());
    let sum = volume::tests_checksum(&list[..32]) ^ u32::from(break_checksum);
    list[8..12].copy_from_slice(&sum.to_le_bytes());
    img[j + start..j + start + blhdr].copy_from_slice(&list);
    img[j + start + blhdr..j + start + used].copy_from_slice(&node);
    let mut h = vec![0u8; 44];
    h[0..4].copy_from_slice(&0x4A4E_4C78u32.to_le_bytes());
    h[4..8].copy_from_slice(&0x1234_5678u32.to_le_bytes());
    h[8..16].copy_from_slice(&(start as u64).to_le_bytes());
    h[16..24].copy_from_slice(&((start + used) as u64).to_le_bytes());
    h[24..32].copy_from_slice(&jsize.to_le_bytes());
    h[32..36].copy_from_slice(&(blhdr as u32).to_le_bytes());
    h[40..44].copy_from_slice(&(jhdr as u32).to_le_bytes());
    let sum = volume::tests_checksum(&h);
    h[36..40].copy_from_slice(&sum.to_le_bytes());
    img[j..j + 44].copy_from_slice(&h);
    put32(&mut img, 1024 + 4, 1 << 13);
    put32(&mut img, 1024 + 12, jib_block as u32);
    img
}

#[test]
fn a_dirty_journal_is_replayed_in_memory_only() {
    let img = dirty_journal(false);
    let source = Arc::new(MemorySource::new("dirty.img", img.clone()));
    let fs = HfsFs::open(source.clone()).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<String> = root_entries(&fs).into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&"a:c".to_string()), "{names:?}");
    assert!(!names.contains(&"a:b".to_string()), "{names:?}");
    let w = fs.warnings();
    assert!(
        w.iter()
            .any(|w| w.contains("dirty journal: 1 transaction(s) (1 block(s))")),
        "{w:?}"
    );
    // Nothing was written.
    let mut now = vec![0u8; img.len()];
    source
        .read_exact_at(0, &mut now)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(now == img);

    let fs = open(dirty_journal(true));
    let names: Vec<String> = root_entries(&fs).into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&"a:b".to_string()), "{names:?}");
    let w = fs.warnings();
    assert!(
        w.iter()
            .any(|w| w.contains("journal not replayed") && w.contains("checksum")),
        "{w:?}"
    );
}

#[test]
fn a_hard_link_to_a_missing_inode_is_skipped_and_reported() {
    let mut img = volume(false);
    let needle: Vec<u8> = "link2".encode_utf16().flat_map(u16::to_be_bytes).collect();
    let cat = 4 * BS;
    let at = img[cat..cat + 6 * BS]
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("no link2"))
        + cat
        + needle.len();
    put32(&mut img, at + 44, 99);
    let fs = open(img);
    let names: Vec<String> = root_entries(&fs).into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&"link1".to_string()) && !names.contains(&"link2".to_string()));
    let w = fs.warnings();
    assert!(
        w.iter()
            .any(|w| w.contains("\"link2\" skipped") && w.contains("iNode99")),
        "{w:?}"
    );
}
