//! Persistent storage with one atomic commit per command.
//!
//! A commit writes the whole state to a temporary file, flushes it, renames it over the state
//! file and flushes the directory. A power cut at any of those steps leaves either the old
//! file or the new one: rename is atomic, and the temporary file is ignored on load.
//! [`Fs`] is the seam where tests cut the power at every one of those steps.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("card state I/O: {0}")]
    Io(#[from] io::Error),
    #[error("the card state{} is corrupt: {reason}", in_file(path))]
    Corrupt { path: String, reason: String },
    /// A state file of another format. Format 1 predates the manufacture record: such a
    /// card has no attestation key and no scheme root, and cannot be brought up to date.
    #[error(
        "the card state has format {found}; this version reads format {} only{}",
        crate::state::FORMAT,
        if *found == 1 {
            ": a format-1 card was never manufactured (no attestation key, no scheme root key) \
             and cannot be upgraded. Unload its values with the release that made it, then \
             provision a new card with `valuecard-card provision`"
        } else {
            ""
        }
    )]
    Format { found: u32 },
    /// The state could not be turned into bytes: the command that made it is refused, and
    /// nothing is written (an empty file would be a card that lost everything).
    #[error("the card state cannot be serialised: {0}")]
    Serialise(String),
}

/// " file PATH", or nothing when the path is not known here (the caller names the file).
fn in_file(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!(" file {path}")
    }
}

/// Where the card keeps its persistent state.
pub trait Storage {
    /// The last committed bytes, or `None` for a card that never committed.
    fn load(&mut self) -> Result<Option<Vec<u8>>, StorageError>;
    /// Replaces the state atomically: afterwards `load` returns either the old bytes or
    /// these, whatever happens during the call.
    fn commit(&mut self, bytes: &[u8]) -> Result<(), StorageError>;
}

/// State in memory: for in-process cards, benchmarks and property tests.
#[derive(Debug, Default)]
pub struct MemoryStorage {
    bytes: Option<Vec<u8>>,
}

impl MemoryStorage {
    /// A store whose last commit is `bytes`: a card made on it starts from that state.
    pub fn with_state(bytes: Vec<u8>) -> Self {
        MemoryStorage { bytes: Some(bytes) }
    }
}

impl Storage for MemoryStorage {
    fn load(&mut self) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.bytes.clone())
    }

    fn commit(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.bytes = Some(bytes.to_vec());
        Ok(())
    }
}

/// The file-system operations a commit is made of.
pub trait Fs {
    fn write(&mut self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    fn sync_file(&mut self, path: &Path) -> io::Result<()>;
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()>;
    fn sync_dir(&mut self, dir: &Path) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

impl Fs for RealFs {
    fn write(&mut self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        // The state holds the card's secrets (its key, the attestation key): readable by
        // its owner only. The rename carries the mode over to the state file.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path)?;
        // `mode` applies to a file it creates; one left over from before keeps its own.
        #[cfg(unix)]
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        file.write_all(bytes)
    }

    fn sync_file(&mut self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// State in a file, committed by write-temp, fsync, rename, fsync-directory.
#[derive(Debug)]
pub struct FileStorage<F: Fs = RealFs> {
    path: PathBuf,
    tmp: PathBuf,
    dir: PathBuf,
    fs: F,
}

impl FileStorage<RealFs> {
    pub fn open(path: &Path) -> io::Result<Self> {
        Self::with_fs(path, RealFs)
    }
}

impl<F: Fs> FileStorage<F> {
    pub fn with_fs(path: &Path, fs: F) -> io::Result<Self> {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !dir.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no directory {}", dir.display()),
            ));
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        Ok(FileStorage {
            path: path.to_path_buf(),
            tmp: PathBuf::from(tmp),
            dir,
            fs,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl<F: Fs> Storage for FileStorage<F> {
    fn load(&mut self) -> Result<Option<Vec<u8>>, StorageError> {
        // A temporary file is a commit that never reached its rename: it was never the
        // card's state, so it is dropped.
        match fs::remove_file(&self.tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        match fs::read(&self.path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn commit(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.fs.write(&self.tmp, bytes)?;
        self.fs.sync_file(&self.tmp)?;
        self.fs.rename(&self.tmp, &self.path)?;
        self.fs.sync_dir(&self.dir)?;
        Ok(())
    }
}

/// Fault injection: a file system that loses power at its `cut_at`-th operation (counting
/// from 0). That operation is torn (a write keeps only its first half) or not done at all,
/// and every operation after it fails, as on a card whose power is gone.
#[derive(Debug, Default)]
pub struct PowerCutFs {
    pub ops: usize,
    pub cut_at: Option<usize>,
    inner: RealFs,
}

impl PowerCutFs {
    pub fn cut_at(op: usize) -> Self {
        PowerCutFs {
            ops: 0,
            cut_at: Some(op),
            inner: RealFs,
        }
    }

    /// A file system that never fails, counting operations.
    pub fn counting() -> Self {
        PowerCutFs::default()
    }

    fn step(&mut self) -> Result<bool, io::Error> {
        let op = self.ops;
        self.ops += 1;
        match self.cut_at {
            Some(cut) if op > cut => Err(io::Error::other("no power")),
            Some(cut) if op == cut => Ok(true),
            _ => Ok(false),
        }
    }
}

fn power_cut() -> io::Error {
    io::Error::other("power cut")
}

impl Fs for PowerCutFs {
    fn write(&mut self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        if self.step()? {
            self.inner.write(path, &bytes[..bytes.len() / 2])?;
            return Err(power_cut());
        }
        self.inner.write(path, bytes)
    }

    fn sync_file(&mut self, path: &Path) -> io::Result<()> {
        if self.step()? {
            return Err(power_cut());
        }
        self.inner.sync_file(path)
    }

    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        if self.step()? {
            return Err(power_cut());
        }
        self.inner.rename(from, to)
    }

    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        if self.step()? {
            return Err(power_cut());
        }
        self.inner.sync_dir(dir)
    }
}

/// Shares a [`PowerCutFs`] between the storage that uses it and the test that reads its
/// counter.
#[derive(Debug, Clone, Default)]
pub struct SharedFs(pub std::sync::Arc<std::sync::Mutex<PowerCutFs>>);

impl SharedFs {
    fn with<T>(&self, f: impl FnOnce(&mut PowerCutFs) -> io::Result<T>) -> io::Result<T> {
        let mut guard = self.0.lock().map_err(|_| io::Error::other("poisoned"))?;
        f(&mut guard)
    }

    pub fn ops(&self) -> usize {
        self.0.lock().map(|g| g.ops).unwrap_or(0)
    }
}

impl Fs for SharedFs {
    fn write(&mut self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        self.with(|fs| fs.write(path, bytes))
    }

    fn sync_file(&mut self, path: &Path) -> io::Result<()> {
        self.with(|fs| fs.sync_file(path))
    }

    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        self.with(|fs| fs.rename(from, to))
    }

    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        self.with(|fs| fs.sync_dir(dir))
    }
}
