//! Recreating a NAR's tree on disk as the decoder reads it: folders and
//! symlinks on the decoding thread, small files on writer threads, big files
//! streamed, and Nix's modes and times once every file is written.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Mutex, PoisonError};

use nix_archive::nar::{decode_events_reader, Event, FileContents, ReadEvent};

use super::pipeline::CHUNK_BYTES;
use super::write::{copy_big_file, create_file, finish_file, set_time_one, write_file};
use super::NarError;

/// Regular files up to this size are handed to writer threads; bigger ones
/// stream to disk on the decoding thread, so memory stays bounded.
const SMALL_FILE_BYTES: u64 = 256 * 1024;

/// Threads creating small files. File creation, not bandwidth, is what a
/// NAR of many small files waits on, and it overlaps well.
const FILE_WRITERS: usize = 8;

/// A small file waiting for a writer thread.
struct FileJob {
    path: PathBuf,
    contents: Vec<u8>,
    executable: bool,
}

/// Recreates the NAR's tree at `destination` (which must not exist).
///
/// Written here rather than with `nix-archive`'s `restore_reader`, whose
/// decoder it still uses (and so its checks of names, order and framing):
/// that restore creates every file on one thread, which leaves a NAR of
/// thousands of small files waiting on one file creation at a time.
/// Folders are created in order before anything inside them; every name
/// has passed the decoder's checks (no `/`, `.`, `..`, empty or repeated
/// names), so each path stays inside `destination`.
pub(super) fn restore_tree(reader: &mut impl Read, destination: &Path) -> Result<(), NarError> {
    let (jobs, queue) = mpsc::sync_channel::<FileJob>(FILE_WRITERS * 8);
    let queue = Mutex::new(queue);
    let failure: Mutex<Option<io::Error>> = Mutex::new(None);
    let (decoded, unfinished) = std::thread::scope(|scope| {
        for _ in 0..FILE_WRITERS {
            scope.spawn(|| write_queued_files(&queue, &failure));
        }
        let mut tree = TreeBuilder::new(destination, jobs);
        let result = decode_events_reader(reader, |event| tree.add(event));
        // Dropping the builder closes the queue, so the writers finish.
        (result, tree.into_unfinished())
    });
    decoded?;
    if let Some(err) = failure.into_inner().unwrap_or_else(PoisonError::into_inner) {
        return Err(NarError::Io(err));
    }
    unfinished.finish()?;
    Ok(())
}

/// A writer thread: writes queued small files until the queue closes,
/// keeping the first error.
fn write_queued_files(queue: &Mutex<mpsc::Receiver<FileJob>>, failure: &Mutex<Option<io::Error>>) {
    loop {
        let job = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = job else { break };
        if let Err(err) = write_file(&job.path, &job.contents, job.executable) {
            failure
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_or_insert(err);
        }
    }
}

/// The decoding thread's side of the restore: where the decoder is in the
/// tree, and what must get its final mode and time at the end.
struct TreeBuilder<'d> {
    destination: &'d Path,
    /// The folder the decoder is in.
    folder: PathBuf,
    jobs: mpsc::SyncSender<FileJob>,
    unfinished: Unfinished,
    /// Reused for every big file.
    big_file_buffer: Vec<u8>,
}

/// Folders (children first) and symlinks, which get their final mode and
/// time once every file is written.
struct Unfinished {
    folders: Vec<PathBuf>,
    links: Vec<PathBuf>,
}

impl<'d> TreeBuilder<'d> {
    fn new(destination: &'d Path, jobs: mpsc::SyncSender<FileJob>) -> Self {
        TreeBuilder {
            destination,
            folder: destination.to_path_buf(),
            jobs,
            unfinished: Unfinished {
                folders: Vec::new(),
                links: Vec::new(),
            },
            big_file_buffer: vec![0; CHUNK_BYTES],
        }
    }

    fn add<R: Read + ?Sized>(
        &mut self,
        event: ReadEvent<'_, R>,
    ) -> Result<(), nix_archive::nar::Error> {
        match event {
            Event::DirectoryStart { name } => {
                if let Some(name) = name {
                    self.folder.push(OsStr::from_bytes(name));
                }
                fs::create_dir(&self.folder)?;
            }
            Event::DirectoryEnd { name } => {
                self.unfinished.folders.push(self.folder.clone());
                if name.is_some() {
                    self.folder.pop();
                }
            }
            Event::Regular {
                name,
                executable,
                contents,
            } => self.regular_file(name, executable, contents)?,
            Event::Symlink { name, target } => {
                let path = self.place(name);
                std::os::unix::fs::symlink(OsStr::from_bytes(target), &path)?;
                self.unfinished.links.push(path);
            }
        }
        Ok(())
    }

    /// Queues a small file for the writers; streams a big one to disk here.
    fn regular_file<R: Read + ?Sized>(
        &mut self,
        name: Option<&[u8]>,
        executable: bool,
        mut contents: FileContents<'_, R>,
    ) -> io::Result<()> {
        let path = self.place(name);
        if contents.size() <= SMALL_FILE_BYTES {
            let mut bytes = Vec::with_capacity(contents.size() as usize);
            contents.read_to_end(&mut bytes)?;
            let job = FileJob {
                path,
                contents: bytes,
                executable,
            };
            self.jobs
                .send(job)
                .map_err(|_| io::Error::other("the file writers stopped"))?;
        } else {
            let mut file = create_file(&path)?;
            copy_big_file(&mut contents, &mut file, &mut self.big_file_buffer)?;
            finish_file(&file, executable)?;
        }
        Ok(())
    }

    /// Where the entry `name` of the current folder goes; no name is the
    /// NAR's root itself.
    fn place(&self, name: Option<&[u8]>) -> PathBuf {
        match name {
            Some(name) => self.folder.join(OsStr::from_bytes(name)),
            None => self.destination.to_path_buf(),
        }
    }

    fn into_unfinished(self) -> Unfinished {
        self.unfinished
    }
}

impl Unfinished {
    /// Mtime 1 on every symlink, then mode 0555 and mtime 1 on every folder,
    /// children first so no folder is read-only before its entries are done.
    fn finish(self) -> io::Result<()> {
        for link in &self.links {
            set_time_one(link)?;
        }
        for folder in &self.folders {
            fs::set_permissions(folder, fs::Permissions::from_mode(0o555))?;
            set_time_one(folder)?;
        }
        Ok(())
    }
}
