//! Where each exported object goes on the device: the target directory plus the key, its
//! names mapped to what the filesystem can hold, and the recovery directory for what cannot
//! be mapped or collides.
//!
//! Paths are planned in export order before anything is written, so the mapping (and which of
//! two colliding keys keeps its path) does not depend on which download finishes first: the
//! first key in manifest and alphabetical order wins, later ones go to the recovery directory.

use std::collections::HashMap;

use crate::job_log::Remap;
use crate::manifest::{ExportFileSystem, Substitutions};

/// The longest name (one path component) ext4 holds, in bytes; NTFS, in UTF-16 units.
const MAX_NAME: usize = 255;
/// The longest relative path we create: Linux's PATH_MAX (4096, with its NUL) less room for
/// the mount point the files are written under.
const MAX_PATH_BYTES: usize = 3840;
/// Files per recovery subdirectory (`0000` to `9999`).
const RECOVERY_PER_DIR: u64 = 10_000;
/// The guide's limit: 100 million files in the recovery directory.
const RECOVERY_MAX: u64 = RECOVERY_PER_DIR * RECOVERY_PER_DIR;

/// Characters Windows refuses in NTFS names (besides controls); `/` is the separator.
const NTFS_ILLEGAL: &[char] = &['<', '>', ':', '"', '\\', '|', '?', '*'];
/// DOS device names Windows will not open as files, with or without an extension.
const NTFS_RESERVED: &[&str] = &[
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
    "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// Where one object goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// A file at this path (relative to the root, `/`-separated).
    File(String),
    /// A key ending in `/` (a folder marker): this directory.
    Directory(String),
    /// The recovery directory, at this path, for this reason.
    Remapped(String, Remap),
    /// The substitutions emptied the key (400 InvalidSubstitution).
    InvalidSubstitution,
    /// The recovery directory holds the guide's 100 million files: nothing more can be written.
    RecoveryFull,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Taken {
    File,
    Directory,
    /// The recovery directory's tree: no key may write into it.
    Reserved,
}

/// Plans target paths for one export, in export order.
#[derive(Debug)]
pub struct PathPlanner {
    file_system: ExportFileSystem,
    recovery_directory: String,
    /// Paths handed out, by their folded form (case-folded on NTFS, which Windows reads
    /// case-insensitively).
    taken: HashMap<String, Taken>,
    next_recovery: u64,
}

impl PathPlanner {
    /// A planner for `file_system` with recovery directory `recovery_directory` (relative to
    /// the root, as the manifest validated it).
    pub fn new(file_system: ExportFileSystem, recovery_directory: &str) -> Self {
        let mut planner = Self {
            file_system,
            recovery_directory: String::new(),
            taken: HashMap::new(),
            next_recovery: 0,
        };
        let recovery = match planner.map_path(recovery_directory, "") {
            Ok(p) if !p.is_empty() => p,
            _ => "EXPORT-RECOVERY".to_owned(),
        };
        let folded = planner.fold(&recovery);
        planner.taken.insert(folded, Taken::Reserved);
        planner.recovery_directory = recovery;
        planner
    }

    /// The recovery directory's path.
    pub fn recovery_directory(&self) -> &str {
        &self.recovery_directory
    }

    /// Where `key` of an operation with `target_directory` goes.
    pub fn place(
        &mut self,
        target_directory: &str,
        key: &str,
        substitutions: &Substitutions,
    ) -> Placement {
        let directory = substitutions.apply(target_directory);
        let key = substitutions.apply(key);
        if key.is_empty() {
            return Placement::InvalidSubstitution;
        }
        let marker = key.ends_with('/');
        let mapped = self
            .map_path(&directory, "")
            .and_then(|base| self.map_path(key.strip_suffix('/').unwrap_or(&key), &base));
        let path = match mapped {
            Ok(path) => path,
            Err(why) => return self.remap(why),
        };
        match self.claim(&path, marker) {
            Ok(()) if marker => Placement::Directory(path),
            Ok(()) => Placement::File(path),
            Err(why) => self.remap(why),
        }
    }

    /// The next recovery path, for `why` (also used when the filesystem refuses a planned path
    /// while writing).
    pub fn remap(&mut self, why: Remap) -> Placement {
        if self.next_recovery >= RECOVERY_MAX {
            return Placement::RecoveryFull;
        }
        let n = self.next_recovery;
        self.next_recovery += 1;
        Placement::Remapped(
            format!(
                "{}/{:04}/{:04}",
                self.recovery_directory,
                n / RECOVERY_PER_DIR,
                n % RECOVERY_PER_DIR
            ),
            why,
        )
    }

    fn fold(&self, path: &str) -> String {
        match self.file_system {
            ExportFileSystem::Ntfs => path.to_lowercase(),
            ExportFileSystem::Ext4 => path.to_owned(),
        }
    }

    /// Takes `path` for a file (or a directory, for a marker): its parents must not be files
    /// or the recovery tree, and the path itself must be free (a marker may repeat a
    /// directory).
    fn claim(&mut self, path: &str, directory: bool) -> Result<(), Remap> {
        let folded = self.fold(path);
        let mut parents = Vec::new();
        for (i, _) in folded.match_indices('/') {
            let parent = &folded[..i];
            match self.taken.get(parent) {
                Some(Taken::File | Taken::Reserved) => return Err(Remap::MovedPermanently),
                Some(Taken::Directory) => {}
                None => parents.push(parent.to_owned()),
            }
        }
        match (self.taken.get(&folded), directory) {
            (None, _) | (Some(Taken::Directory), true) => {}
            _ => return Err(Remap::MovedPermanently),
        }
        for parent in parents {
            self.taken.insert(parent, Taken::Directory);
        }
        let kind = if directory {
            Taken::Directory
        } else {
            Taken::File
        };
        self.taken.insert(folded, kind);
        Ok(())
    }

    /// `path` resolved under `base` (already mapped): `.` dropped, `..` taking back one name
    /// of `path` (never of `base`), each name mapped to what the filesystem holds.
    fn map_path(&self, path: &str, base: &str) -> Result<String, Remap> {
        if path.is_empty() {
            return Ok(base.to_owned());
        }
        let mut names: Vec<String> = Vec::new();
        for name in path.split('/') {
            match name {
                // `a//b` and absolute keys (the guide's TSTDA `//backup/...`) name nothing.
                "" => return Err(Remap::InvalidFilename),
                "." => {}
                ".." => {
                    names.pop().ok_or(Remap::InvalidFilename)?;
                }
                _ => names.push(self.map_name(name)?),
            }
        }
        if names.is_empty() {
            return Err(Remap::InvalidFilename);
        }
        let mut out = base.to_owned();
        for name in names {
            if !out.is_empty() {
                out.push('/');
            }
            out.push_str(&name);
        }
        if out.len() > MAX_PATH_BYTES {
            return Err(Remap::FilenameTooLong);
        }
        Ok(out)
    }

    /// One name as the filesystem can hold it: illegal characters removed.
    fn map_name(&self, name: &str) -> Result<String, Remap> {
        let mapped: String = match self.file_system {
            ExportFileSystem::Ext4 => name.chars().filter(|&c| c != '\0').collect(),
            ExportFileSystem::Ntfs => {
                let kept: String = name
                    .chars()
                    .filter(|c| !c.is_control() && !NTFS_ILLEGAL.contains(c))
                    .collect();
                // Windows drops trailing dots and spaces when it opens a name.
                kept.trim_end_matches([' ', '.']).to_owned()
            }
        };
        if mapped.is_empty() || mapped == "." || mapped == ".." {
            return Err(Remap::InvalidFilename);
        }
        let too_long = match self.file_system {
            ExportFileSystem::Ext4 => mapped.len() > MAX_NAME,
            ExportFileSystem::Ntfs => mapped.encode_utf16().count() > MAX_NAME,
        };
        if too_long {
            return Err(Remap::FilenameTooLong);
        }
        if self.file_system == ExportFileSystem::Ntfs {
            let stem = mapped.split('.').next().unwrap_or("").trim_end();
            if NTFS_RESERVED.iter().any(|r| r.eq_ignore_ascii_case(stem)) {
                return Err(Remap::InvalidFilename);
            }
        }
        Ok(mapped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planner(fs: ExportFileSystem) -> PathPlanner {
        PathPlanner::new(fs, "EXPORT-RECOVERY")
    }

    fn place(p: &mut PathPlanner, dir: &str, key: &str) -> Placement {
        p.place(dir, key, &Substitutions::default())
    }

    fn file(path: &str) -> Placement {
        Placement::File(path.into())
    }

    fn remapped(n: &str, why: Remap) -> Placement {
        Placement::Remapped(format!("EXPORT-RECOVERY/{n}"), why)
    }

    #[test]
    fn target_directory_then_key() {
        let mut p = planner(ExportFileSystem::Ext4);
        assert_eq!(
            place(&mut p, "starwars/image-backup", "images/wookie1.jpg"),
            file("starwars/image-backup/images/wookie1.jpg")
        );
        assert_eq!(place(&mut p, "", "index.html"), file("index.html"));
        assert_eq!(
            place(&mut p, "lostbucket", "html/"),
            Placement::Directory("lostbucket/html".into())
        );
        // A marker may name a directory that files already made.
        assert_eq!(
            place(&mut p, "starwars/image-backup", "images/"),
            Placement::Directory("starwars/image-backup/images".into())
        );
    }

    #[test]
    fn collisions_and_escapes_go_to_recovery_in_order() {
        let mut p = planner(ExportFileSystem::Ext4);
        assert_eq!(place(&mut p, "b", "folder1/file1"), file("b/folder1/file1"));
        assert_eq!(
            place(&mut p, "b", "folder1/folder2/../file1"),
            remapped("0000/0000", Remap::MovedPermanently)
        );
        // A file where a directory is needed.
        assert_eq!(
            place(&mut p, "b", "folder1/file1/x"),
            remapped("0000/0001", Remap::MovedPermanently)
        );
        // `..` cannot climb out of the target directory; empty names are invalid.
        assert_eq!(
            place(&mut p, "b", "../../etc/passwd"),
            remapped("0000/0002", Remap::InvalidFilename)
        );
        assert_eq!(
            place(&mut p, "b", "/backup/images/chewie.gif"),
            remapped("0000/0003", Remap::InvalidFilename)
        );
        assert_eq!(
            place(&mut p, "b", "a//b"),
            remapped("0000/0004", Remap::InvalidFilename)
        );
        assert_eq!(place(&mut p, "b", "./c/./d"), file("b/c/d"));
        // Nothing may be written into the recovery tree itself.
        assert_eq!(
            place(&mut p, "", "EXPORT-RECOVERY/0000/0000"),
            remapped("0000/0005", Remap::MovedPermanently)
        );
        let long = "n".repeat(256);
        assert_eq!(
            place(&mut p, "b", &long),
            remapped("0000/0006", Remap::FilenameTooLong)
        );
        assert_eq!(
            place(&mut p, "b", &long[..255]),
            file(&format!("b/{}", &long[..255]))
        );
        let deep = "d/".repeat(2000) + "f";
        assert_eq!(
            place(&mut p, "b", &deep),
            remapped("0000/0007", Remap::FilenameTooLong)
        );
        // ext4 keeps every character but NUL, and is case-sensitive.
        assert_eq!(place(&mut p, "b", "nul\0.txt"), file("b/nul.txt"));
        assert_eq!(place(&mut p, "b", "a:b?.txt"), file("b/a:b?.txt"));
        assert_eq!(place(&mut p, "b", "A:B?.txt"), file("b/A:B?.txt"));
    }

    #[test]
    fn ntfs_removes_what_windows_refuses() {
        let mut p = planner(ExportFileSystem::Ntfs);
        assert_eq!(place(&mut p, "b", "q<1>:\"x\"|y?*.txt"), file("b/q1xy.txt"));
        assert_eq!(place(&mut p, "b", "tab\there. "), file("b/tabhere"));
        assert_eq!(place(&mut p, "b", "back\\slash"), file("b/backslash"));
        assert_eq!(
            place(&mut p, "b", "???"),
            remapped("0000/0000", Remap::InvalidFilename)
        );
        assert_eq!(
            place(&mut p, "b", "dir/con.txt"),
            remapped("0000/0001", Remap::InvalidFilename)
        );
        // Case-insensitive: the second spelling collides with the first.
        assert_eq!(place(&mut p, "b", "Readme.TXT"), file("b/Readme.TXT"));
        assert_eq!(
            place(&mut p, "b", "README.txt"),
            remapped("0000/0002", Remap::MovedPermanently)
        );
        // 255 UTF-16 units, not bytes.
        let wide = "é".repeat(255);
        assert_eq!(place(&mut p, "b", &wide), file(&format!("b/{wide}")));
        assert_eq!(
            place(&mut p, "b", &format!("{wide}x")),
            remapped("0000/0003", Remap::FilenameTooLong)
        );
    }

    #[test]
    fn substitutions_and_recovery_numbering() {
        let subs = Substitutions::new(vec![("secret".into(), String::new())]);
        let mut p = PathPlanner::new(ExportFileSystem::Ext4, "lost+found-2");
        assert_eq!(
            p.place("b", "secret", &subs),
            Placement::InvalidSubstitution
        );
        assert_eq!(p.place("b", "a-secret", &subs), file("b/a-"));
        p.next_recovery = 9_999;
        assert_eq!(
            p.remap(Remap::DirectoryFull),
            Placement::Remapped("lost+found-2/0000/9999".into(), Remap::DirectoryFull)
        );
        assert_eq!(
            p.remap(Remap::DirectoryFull),
            Placement::Remapped("lost+found-2/0001/0000".into(), Remap::DirectoryFull)
        );
        p.next_recovery = RECOVERY_MAX;
        assert_eq!(p.remap(Remap::InvalidFilename), Placement::RecoveryFull);
    }
}
