//! Files and folders that appear whole or not at all.
//!
//! Everything is written under a temporary name in the destination folder
//! (a rename is only atomic within one filesystem), synced, renamed over
//! the target, and then the folder is synced too, because a rename lives in
//! the folder and is lost in a crash until the folder reaches the disk.

use std::fs::{self, File, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Temporary names start with this, so what a killed writer left is easy to
/// tell from real entries (and tests can check that nothing was left).
const TEMP_PREFIX: &str = ".tmp-";

/// Mode of every committed file. A temporary file starts private (0600),
/// but kiln's files are read by other tools and users: skopeo and runtimes
/// read outputs, a registry serves blobs, several users may share a cache.
const FILE_MODE: u32 = 0o644;

/// Replaces the file at `path` with `bytes`: readers see the old file or
/// the new one complete, never a part, also after a crash.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomically_held(path, bytes).map(drop)
}

/// [`write_atomically`], returning the file, held as
/// [`AtomicFile::commit_held`] says.
pub fn write_atomically_held(path: &Path, bytes: &[u8]) -> io::Result<File> {
    let mut file = AtomicFile::beside(path)?;
    file.write_all(bytes)?;
    file.commit_held(path)
}

/// A file being written under a temporary name, for content that is
/// streamed or whose final name is known only at the end (a blob named by
/// its digest). Dropped without [`AtomicFile::commit`], it is removed.
///
/// From creation to the end of its writer it is held (see [`crate::hold`]),
/// so a prune never takes it for what a killed writer left.
#[derive(Debug)]
pub struct AtomicFile {
    temp: tempfile::NamedTempFile,
}

impl AtomicFile {
    /// An empty temporary file in `dir`, the folder of the final name.
    pub fn new_in(dir: &Path) -> io::Result<AtomicFile> {
        loop {
            let temp = tempfile::Builder::new()
                .prefix(TEMP_PREFIX)
                .tempfile_in(dir)?;
            // A prune may take a new, unlocked temp for a dead writer's.
            if crate::hold::hold_new(temp.path(), temp.as_file())? {
                return Ok(AtomicFile { temp });
            }
        }
    }

    /// An empty temporary file in the folder of `target`, the name it will
    /// be committed to.
    pub fn beside(target: &Path) -> io::Result<AtomicFile> {
        AtomicFile::new_in(folder_of(target))
    }

    /// The open file, for writers that borrow it (`BufWriter<&File>`).
    pub fn as_file(&self) -> &File {
        self.temp.as_file()
    }

    /// The open file, for `io::copy` from another file, which the kernel
    /// then copies without passing the bytes through user space.
    pub fn as_file_mut(&mut self) -> &mut File {
        self.temp.as_file_mut()
    }

    /// Makes what was written the content of `target` (in the folder given
    /// to [`AtomicFile::new_in`]), replacing any file there: mode 0644,
    /// fsync, rename, fsync of the folder. On error the temporary file is
    /// removed and `target` is as it was.
    pub fn commit(self, target: &Path) -> io::Result<()> {
        self.commit_held(target).map(drop)
    }

    /// [`AtomicFile::commit`], returning the file, still held: while it is
    /// open no prune removes `target`.
    pub fn commit_held(self, target: &Path) -> io::Result<File> {
        let file = self.temp.as_file();
        file.set_permissions(Permissions::from_mode(FILE_MODE))?;
        file.sync_all()?;
        let file = persist_held(self.temp, target)?;
        File::open(folder_of(target))?.sync_all()?;
        Ok(file)
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.temp.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.temp.flush()
    }
}

/// Renames `temp` to `target`, replacing a file there only while holding
/// it (see [`crate::hold`]). A prune removes an entry by its name once it
/// has claimed it; a rename over the claimed file in between would have
/// the prune remove the new file instead. Holding waits for such a prune
/// to finish, and then the name is free.
fn persist_held(mut temp: tempfile::NamedTempFile, target: &Path) -> io::Result<File> {
    loop {
        match temp.persist_noclobber(target) {
            Ok(file) => return Ok(file),
            Err(err) if err.error.kind() == io::ErrorKind::AlreadyExists => temp = err.file,
            Err(err) => return Err(err.error),
        }
        match crate::hold::hold(target) {
            Ok(Some(_old)) => return temp.persist(target).map_err(|e| e.error),
            Ok(None) => continue,
            // What this user cannot open, no prune of this user claims.
            Err(err) if err.kind() == io::ErrorKind::PermissionDenied => {
                return temp.persist(target).map_err(|e| e.error)
            }
            Err(err) => return Err(err),
        }
    }
}

/// Moves the finished `temp` (a folder, or a file or symlink such as a store
/// path) to `target` in the same filesystem, its contents on disk before its
/// new name is. A non-empty folder at `target` is never replaced (rename
/// refuses): the call fails and `temp` stays for the caller to remove.
pub fn commit_dir(temp: &Path, target: &Path) -> io::Result<()> {
    let folder = File::open(folder_of(target))?;
    // One syncfs writes the whole tree out, far cheaper than an fsync per
    // file of an unpacked image or store path. The target's folder stands in
    // for `temp`, which may be a symlink that does not resolve.
    nix::unistd::syncfs(&folder).map_err(io::Error::from)?;
    fs::rename(temp, target)?;
    folder.sync_all()
}

/// The folder `path` is in; `.` for a bare file name, whose parent is "".
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::symlink;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn writes_bytes_world_readable_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.json");
        write_atomically(&path, b"{}").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"{}");
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        assert_eq!(names(dir.path()), ["index.json"]);
    }

    #[test]
    fn replaces_an_existing_file_while_open_readers_keep_the_old_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kiln.lock");
        fs::write(&path, "old").unwrap();
        let mut reader = File::open(&path).unwrap();
        write_atomically(&path, b"new").unwrap();
        let mut old = String::new();
        reader.read_to_string(&mut old).unwrap();
        assert_eq!(old, "old");
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(names(dir.path()), ["kiln.lock"]);
    }

    #[test]
    fn a_bare_file_name_lives_in_the_current_folder() {
        assert_eq!(folder_of(Path::new("kiln.lock")), Path::new("."));
        assert_eq!(folder_of(Path::new("/")), Path::new("."));
        assert_eq!(folder_of(Path::new("a/b")), Path::new("a"));
    }

    #[test]
    fn a_missing_folder_is_an_error_and_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("file");
        let err = write_atomically(&path, b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(names(dir.path()).is_empty());
    }

    #[test]
    fn a_folder_in_the_way_is_an_error_and_the_temp_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("inside"), "kept").unwrap();
        assert!(write_atomically(&path, b"x").is_err());
        assert_eq!(names(dir.path()), ["blob"]);
        assert_eq!(fs::read_to_string(path.join("inside")).unwrap(), "kept");
    }

    #[test]
    fn a_streamed_file_is_named_at_commit_and_dropped_files_vanish() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = AtomicFile::new_in(dir.path()).unwrap();
        file.write_all(b"part").unwrap();
        assert_eq!(names(dir.path()).len(), 1);
        assert!(names(dir.path())[0].starts_with(TEMP_PREFIX));
        drop(file);
        assert!(names(dir.path()).is_empty());

        let mut file = AtomicFile::new_in(dir.path()).unwrap();
        io::copy(&mut &b"streamed"[..], file.as_file_mut()).unwrap();
        file.commit(&dir.path().join("sha256-hex")).unwrap();
        let target = dir.path().join("oci-archive.tar");
        let file = AtomicFile::beside(&target).unwrap();
        file.commit(&target).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"");
        assert_eq!(names(dir.path()), ["oci-archive.tar", "sha256-hex"]);
        assert_eq!(
            fs::read(dir.path().join("sha256-hex")).unwrap(),
            b"streamed"
        );
    }

    #[test]
    fn a_folder_is_moved_into_place_whole() {
        let dir = tempfile::tempdir().unwrap();
        let temp = dir.path().join(".unpack-1");
        fs::create_dir_all(temp.join("root/etc")).unwrap();
        fs::write(temp.join("root/etc/os-release"), "debian").unwrap();
        fs::write(temp.join("sizes.json"), "[1]").unwrap();
        let done = dir.path().join("abc");
        commit_dir(&temp, &done).unwrap();
        assert_eq!(names(dir.path()), ["abc"]);
        assert_eq!(
            fs::read_to_string(done.join("root/etc/os-release")).unwrap(),
            "debian"
        );
    }

    #[test]
    fn a_complete_folder_already_there_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let done = dir.path().join("abc");
        fs::create_dir(&done).unwrap();
        fs::write(done.join("sizes.json"), "first").unwrap();
        let temp = dir.path().join(".unpack-2");
        fs::create_dir(&temp).unwrap();
        fs::write(temp.join("sizes.json"), "second").unwrap();
        assert!(commit_dir(&temp, &done).is_err());
        assert_eq!(
            fs::read_to_string(done.join("sizes.json")).unwrap(),
            "first"
        );
        assert!(temp.is_dir(), "the caller decides what to do with its copy");
    }

    #[test]
    fn files_and_dangling_symlinks_commit_like_folders() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(".tmp-file");
        fs::write(&file, "x").unwrap();
        commit_dir(&file, &dir.path().join("hash-file")).unwrap();
        let link = dir.path().join(".tmp-link");
        symlink("/nix/store/nowhere", &link).unwrap();
        commit_dir(&link, &dir.path().join("hash-link")).unwrap();
        assert_eq!(names(dir.path()), ["hash-file", "hash-link"]);
        assert_eq!(
            fs::read_link(dir.path().join("hash-link")).unwrap(),
            Path::new("/nix/store/nowhere")
        );
    }

    #[test]
    fn a_symlink_to_a_host_fifo_commits_without_opening_it() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("host-fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success());
        let link = dir.path().join(".tmp-link");
        symlink(&fifo, &link).unwrap();
        // Opening the link would block on the FIFO until a writer came.
        let target = dir.path().join("hash-link");
        let (send, receive) = std::sync::mpsc::channel();
        let (from, to) = (link.clone(), target.clone());
        std::thread::spawn(move || send.send(commit_dir(&from, &to).map_err(|e| e.kind())));
        let done = receive.recv_timeout(std::time::Duration::from_secs(20));
        assert_eq!(done.expect("commit_dir hung on the link"), Ok(()));
        assert_eq!(fs::read_link(&target).unwrap(), fifo);
    }

    #[test]
    fn a_missing_temp_folder_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = commit_dir(&dir.path().join("gone"), &dir.path().join("abc")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(names(dir.path()).is_empty());
    }

    #[test]
    fn a_commit_over_a_file_a_prune_claimed_waits_and_is_not_removed_with_it() {
        use crate::hold::{claim, Claim};
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("blob");
        fs::write(&target, "old").unwrap();
        let Claim::Free(claimed) = claim(&target).unwrap() else {
            panic!("nobody holds the old file");
        };
        let writer = {
            let target = target.clone();
            std::thread::spawn(move || {
                let mut file = AtomicFile::beside(&target).unwrap();
                file.write_all(b"new").unwrap();
                file.commit_held(&target).unwrap()
            })
        };
        // The prune removes what it claimed by its name, some time later.
        std::thread::sleep(std::time::Duration::from_millis(200));
        fs::remove_file(&target).unwrap();
        drop(claimed);
        let _held = writer.join().unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "new");
    }
}
