//! A defensive walk of a whole filesystem: every entry with its path, directory cycles
//! detected, depth, entry count and name length bounded, and a corrupt directory reported and
//! skipped instead of ending the walk.

use std::collections::HashSet;

use super::{DirEntry, EntryId, EntryKind, FileSystem, FsError};

/// Bounds on a walk, so a corrupt or hostile volume cannot make it endless or unbounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest directory nesting followed.
    pub max_depth: usize,
    /// Most entries returned in all.
    pub max_entries: usize,
    /// Longest name, in bytes (as [`super::RawName::to_bytes`] gives it).
    pub max_name_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_depth: 256,
            max_entries: 50_000_000,
            max_name_bytes: 1024,
        }
    }
}

/// One entry found by the walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkEntry {
    /// The path from the root: the raw names of each directory and of the entry.
    pub path: Vec<super::RawName>,
    /// The entry.
    pub entry: DirEntry,
}

impl WalkEntry {
    /// The path as bytes with `/` separators (see [`super::RawName::to_bytes`]).
    pub fn path_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, name) in self.path.iter().enumerate() {
            if i > 0 {
                out.push(b'/');
            }
            out.extend_from_slice(&name.to_bytes());
        }
        out
    }
}

/// Something the walk could not follow; the rest of the walk goes on.
#[derive(Debug)]
pub enum WalkProblem {
    /// A directory could not be listed; its contents are missing from the walk.
    Unreadable {
        /// The directory's path (raw names).
        path: Vec<super::RawName>,
        /// Why.
        error: FsError,
    },
    /// A directory was reached a second time (a cycle, or a hard-linked directory).
    Cycle {
        /// The path that led back to it.
        path: Vec<super::RawName>,
        /// The directory's id.
        id: EntryId,
    },
    /// Nesting deeper than the limit; not followed.
    TooDeep {
        /// The directory's path.
        path: Vec<super::RawName>,
    },
    /// A name longer than the limit; the entry is skipped.
    NameTooLong {
        /// The path of the entry's directory.
        parent: Vec<super::RawName>,
        /// The name's length in bytes.
        len: usize,
    },
    /// The entry limit was reached; the walk stopped.
    TooManyEntries {
        /// The limit.
        limit: usize,
    },
}

/// The result of a walk: the entries in depth-first, directory-listing order, and the problems.
#[derive(Debug, Default)]
pub struct Walk {
    /// Every entry reached, directories before their contents.
    pub entries: Vec<WalkEntry>,
    /// Everything that could not be followed.
    pub problems: Vec<WalkProblem>,
}

/// Walks `fs` from its root within `limits`.
pub fn walk(fs: &dyn FileSystem, limits: Limits) -> Walk {
    let mut out = Walk::default();
    let mut visited: HashSet<EntryId> = HashSet::new();
    visited.insert(fs.root());
    // An explicit stack instead of recursion: depth is data from the disk.
    let mut stack: Vec<(EntryId, Vec<super::RawName>)> = vec![(fs.root(), Vec::new())];
    while let Some((dir, path)) = stack.pop() {
        let entries = match fs.read_dir(dir) {
            Ok(entries) => entries,
            Err(error) => {
                out.problems.push(WalkProblem::Unreadable { path, error });
                continue;
            }
        };
        let mut subdirs = Vec::new();
        for entry in entries {
            if out.entries.len() >= limits.max_entries {
                out.problems.push(WalkProblem::TooManyEntries {
                    limit: limits.max_entries,
                });
                return out;
            }
            let len = entry.name.to_bytes().len();
            if len > limits.max_name_bytes {
                out.problems.push(WalkProblem::NameTooLong {
                    parent: path.clone(),
                    len,
                });
                continue;
            }
            let mut child_path = path.clone();
            child_path.push(entry.name.clone());
            if entry.kind == EntryKind::Directory {
                if !visited.insert(entry.id) {
                    out.problems.push(WalkProblem::Cycle {
                        path: child_path,
                        id: entry.id,
                    });
                    continue;
                }
                if child_path.len() > limits.max_depth {
                    out.problems.push(WalkProblem::TooDeep { path: child_path });
                    continue;
                }
                subdirs.push((entry.id, child_path.clone()));
            }
            out.entries.push(WalkEntry {
                path: child_path,
                entry,
            });
        }
        // Reversed so the stack pops them in listing order.
        stack.extend(subdirs.into_iter().rev());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{Extent, FsType, RawName};
    use super::*;

    /// A two-directory filesystem whose subdirectory lists the root again (a cycle).
    struct Looping;

    impl FileSystem for Looping {
        fn fs_type(&self) -> FsType {
            FsType::Ext4
        }
        fn label(&self) -> Option<String> {
            None
        }
        fn root(&self) -> EntryId {
            1
        }
        fn read_dir(&self, dir: EntryId) -> Result<Vec<DirEntry>, FsError> {
            let e = |id, name: &str, kind| DirEntry {
                id,
                parent: dir,
                name: RawName::Bytes(name.as_bytes().to_vec()),
                kind,
                size: 0,
                mtime: None,
            };
            match dir {
                1 => Ok(vec![
                    e(2, "a", EntryKind::Directory),
                    e(3, "f", EntryKind::File),
                    e(4, "bad", EntryKind::Directory),
                ]),
                2 => Ok(vec![
                    e(1, "up", EntryKind::Directory),
                    e(5, &"n".repeat(2000), EntryKind::File),
                ]),
                _ => Err(FsError::Corrupt {
                    device: "t".into(),
                    offset: 4096,
                    what: "directory block".into(),
                }),
            }
        }
        fn extents(&self, _: EntryId) -> Result<Vec<Extent>, FsError> {
            Ok(Vec::new())
        }
        fn read(&self, _: EntryId, _: u64, _: &mut [u8]) -> Result<usize, FsError> {
            Ok(0)
        }
        fn read_link(&self, _: EntryId) -> Result<Vec<u8>, FsError> {
            Ok(Vec::new())
        }
    }

    #[test]
    fn cycles_corrupt_directories_and_long_names_do_not_stop_the_walk() {
        let w = walk(&Looping, Limits::default());
        let paths: Vec<Vec<u8>> = w.entries.iter().map(WalkEntry::path_bytes).collect();
        assert_eq!(paths, vec![b"a".to_vec(), b"f".to_vec(), b"bad".to_vec()]);
        assert!(matches!(w.problems[0], WalkProblem::Cycle { id: 1, .. }));
        assert!(matches!(
            w.problems[1],
            WalkProblem::NameTooLong { len: 2000, .. }
        ));
        assert!(matches!(w.problems[2], WalkProblem::Unreadable { .. }));
        let w = walk(
            &Looping,
            Limits {
                max_entries: 2,
                ..Limits::default()
            },
        );
        assert_eq!(w.entries.len(), 2);
        assert!(matches!(
            w.problems.last(),
            Some(WalkProblem::TooManyEntries { limit: 2 })
        ));
    }
}
