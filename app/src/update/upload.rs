//! An uploaded bundle on its way to the data partition.
//!
//! The body is never held whole: each chunk the connection received is
//! written by one disk-thread job before the next is read, so vigil holds
//! one chunk at a time whatever the bundle's size. Written pages are flushed
//! and dropped from the page cache every [`FLUSH_EVERY`] bytes: they would
//! otherwise be charged to vigil's cgroup and crowd out the pipeline.
//! Nothing goes to tmpfs, whose pages are charged to no process and end in
//! the OOM killer choosing vigil.
//!
//! The file is `upload.part` until every declared byte arrived and was
//! synced, then `bundle.raucb`; an upload dropped at any point (the client
//! went away, the body ran short or long, vigil stopped) removes it.

use super::UpdateError;
use crate::disk::Disk;
use bytes::Bytes;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The file an upload is written to until it is whole.
pub const PART: &str = "upload.part";
/// The whole bundle, until RAUC installed it.
pub const BUNDLE: &str = "bundle.raucb";

/// Bytes written between flushes of the page cache.
pub const FLUSH_EVERY: u64 = 4 << 20;

/// One upload in progress.
pub struct Upload {
    disk: Arc<Disk>,
    file: Option<File>,
    part: PathBuf,
    done: PathBuf,
    want: u64,
    got: u64,
    flushed: u64,
    finished: bool,
}

impl Upload {
    /// Creates `dir/upload.part` for a body of `want` bytes (the file is
    /// made on the disk thread).
    pub async fn create(disk: Arc<Disk>, dir: &Path, want: u64) -> Result<Upload, UpdateError> {
        let part = dir.join(PART);
        let done = dir.join(BUNDLE);
        let (d, p) = (dir.to_owned(), part.clone());
        let file = disk
            .run(move || -> Result<File, UpdateError> {
                std::fs::create_dir_all(&d).map_err(|e| UpdateError::io(&d, e))?;
                File::create(&p).map_err(|e| UpdateError::io(&p, e))
            })
            .await??;
        Ok(Upload {
            disk,
            file: Some(file),
            part,
            done,
            want,
            got: 0,
            flushed: 0,
            finished: false,
        })
    }

    /// Bytes written so far.
    pub fn received(&self) -> u64 {
        self.got
    }

    /// Writes `chunk` (on the disk thread); a body longer than declared is
    /// refused before the excess is written.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), UpdateError> {
        let len = chunk.len() as u64;
        if self.got + len > self.want {
            return Err(UpdateError::Overlong { want: self.want });
        }
        let mut file = self.file.take().ok_or(UpdateError::Body("closed".into()))?;
        let flush = self.got + len - self.flushed >= FLUSH_EVERY;
        let path = self.part.clone();
        let (file, result) = self
            .disk
            .run(move || {
                let r = file.write_all(&chunk).and_then(|()| {
                    if flush {
                        drop_cached(&file)
                    } else {
                        Ok(())
                    }
                });
                (file, r)
            })
            .await?;
        self.file = Some(file);
        result.map_err(|e| UpdateError::io(path, e))?;
        self.got += len;
        if flush {
            self.flushed = self.got;
        }
        Ok(())
    }

    /// Checks that every declared byte came, syncs the file and gives it
    /// its final name; the path of the bundle.
    pub async fn finish(mut self) -> Result<PathBuf, UpdateError> {
        if self.got != self.want {
            return Err(UpdateError::Truncated {
                got: self.got,
                want: self.want,
            });
        }
        let file = self.file.take().ok_or(UpdateError::Body("closed".into()))?;
        let (part, done) = (self.part.clone(), self.done.clone());
        self.disk
            .run(move || -> Result<(), UpdateError> {
                file.sync_all().map_err(|e| UpdateError::io(&part, e))?;
                drop_cached(&file).map_err(|e| UpdateError::io(&part, e))?;
                drop(file);
                std::fs::rename(&part, &done).map_err(|e| UpdateError::io(&done, e))
            })
            .await??;
        self.finished = true;
        Ok(self.done.clone())
    }
}

/// Writes out and drops the file's cached pages (they are on disk now and
/// would only be charged to vigil's memory).
fn drop_cached(file: &File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    file.sync_data()?;
    // SAFETY: a valid open descriptor; the advice changes no data.
    let r = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if r != 0 {
        return Err(std::io::Error::from_raw_os_error(r));
    }
    Ok(())
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.finished {
            // An unlink is one metadata call: done here rather than leaving
            // a partial bundle should the disk thread be gone.
            drop(self.file.take());
            let _ = std::fs::remove_file(&self.part);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dir::TempDir;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn a_whole_upload_becomes_the_bundle() {
        let dir = TempDir::new("upload-whole");
        let disk = Disk::start("test-disk", 4).expect("disk");
        let path = block_on(async {
            let mut u = Upload::create(disk.clone(), &dir.0, 10)
                .await
                .expect("create");
            u.write(Bytes::from_static(b"hello")).await.expect("write");
            u.write(Bytes::from_static(b"world")).await.expect("write");
            assert_eq!(u.received(), 10);
            u.finish().await.expect("finish")
        });
        assert_eq!(std::fs::read(&path).expect("read"), b"helloworld");
        assert!(!dir.0.join("upload.part").exists());
        disk.stop();
    }

    #[test]
    fn short_long_and_dropped_uploads_leave_no_file() {
        let dir = TempDir::new("upload-bad");
        let disk = Disk::start("test-disk", 4).expect("disk");
        block_on(async {
            let mut u = Upload::create(disk.clone(), &dir.0, 10)
                .await
                .expect("create");
            u.write(Bytes::from_static(b"hello")).await.expect("write");
            assert!(dir.0.join("upload.part").exists());
            match u.finish().await {
                Err(UpdateError::Truncated { got: 5, want: 10 }) => {}
                other => panic!("{other:?}"),
            }
            let mut u = Upload::create(disk.clone(), &dir.0, 4)
                .await
                .expect("create");
            match u.write(Bytes::from_static(b"hello")).await {
                Err(UpdateError::Overlong { want: 4 }) => {}
                other => panic!("{other:?}"),
            }
            drop(u);
            let mut u = Upload::create(disk.clone(), &dir.0, 10)
                .await
                .expect("create");
            u.write(Bytes::from_static(b"abc")).await.expect("write");
            drop(u);
        });
        let left: Vec<_> = std::fs::read_dir(&dir.0).expect("list").collect();
        assert!(left.is_empty(), "{left:?}");
        disk.stop();
    }
}
