//! Serving stored files (snapshots, clips) in bounded memory.
//!
//! A clip can be tens of megabytes, and many clients may ask at once, so a
//! file is never read whole: [`FileBody`] reads it [`CHUNK`] bytes at a time
//! as hyper asks for more, and at most [`MAX_FILE_STREAMS`] files are being
//! sent at once (the next request gets 503 with `Retry-After`). What the
//! server holds for files is therefore `MAX_FILE_STREAMS` x `CHUNK` plus what
//! hyper buffers, whatever the clients do; the budget's web line counts it.
//!
//! Opening and every read run on the disk thread (`crate::disk`), never on
//! the runtime: a slow card delays the download, not the cameras.
//! Single byte ranges (`Range: bytes=a-b`, `a-`, `-n`) are honoured, which
//! is what a browser's `<video>` asks for to seek.

use crate::disk::{ChunkReader, Disk};
use hyper::body::{Bytes, Frame};
use std::io::{Seek, SeekFrom};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

/// Files being sent at once at most.
pub const MAX_FILE_STREAMS: usize = 4;

/// Bytes read per step.
pub const CHUNK: usize = crate::disk::CHUNK;

/// The permits for file streams.
#[derive(Debug, Default)]
pub struct FileSlots {
    used: AtomicUsize,
}

/// One permit; returned on drop.
#[derive(Debug)]
pub struct FileSlot(Arc<FileSlots>);

impl Drop for FileSlot {
    fn drop(&mut self) {
        self.0.used.fetch_sub(1, Ordering::AcqRel);
    }
}

impl FileSlots {
    /// A permit, or `None` when [`MAX_FILE_STREAMS`] files are being sent.
    pub fn try_acquire(self: &Arc<Self>) -> Option<FileSlot> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_FILE_STREAMS).then_some(n + 1)
            })
            .ok()
            .map(|_| FileSlot(self.clone()))
    }

    /// Permits taken now.
    pub fn in_use(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// A file's bytes `start..start + len`, read a chunk at a time on the disk
/// thread.
pub struct FileBody {
    reader: ChunkReader,
    _slot: FileSlot,
}

impl std::fmt::Debug for FileBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileBody")
            .field("remaining", &self.reader.remaining())
            .finish()
    }
}

impl FileBody {
    /// The next chunk, or `None` at the end (or on a read error, which ends
    /// the response short: the client sees a truncated body, never garbage).
    pub fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Frame<Bytes>>> {
        match std::task::ready!(self.reader.poll_chunk(cx)) {
            Some(Ok(chunk)) => Poll::Ready(Some(Frame::data(chunk))),
            Some(Err(_)) | None => Poll::Ready(None),
        }
    }

    /// Bytes left to send.
    pub fn remaining(&self) -> u64 {
        self.reader.remaining()
    }
}

/// What to send of a file.
#[derive(Debug, PartialEq, Eq)]
pub enum Part {
    /// The whole file.
    Whole,
    /// Bytes `start..=end`.
    Range {
        /// First byte.
        start: u64,
        /// Last byte (inclusive).
        end: u64,
    },
    /// The range cannot be satisfied (answer 416).
    Unsatisfiable,
}

/// Interprets a `Range` header for a file of `size` bytes. Anything but one
/// well-formed byte range is ignored (the whole file is sent), as RFC 9110
/// allows.
pub fn parse_range(header: Option<&str>, size: u64) -> Part {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Part::Whole;
    };
    if spec.contains(',') {
        return Part::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Part::Whole;
    };
    let num = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.len() <= 20 && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (a.trim(), b.trim()) {
        ("", suffix) => match num(suffix) {
            Some(0) => Part::Unsatisfiable,
            Some(n) if size > 0 => Part::Range {
                start: size.saturating_sub(n),
                end: size - 1,
            },
            Some(_) => Part::Unsatisfiable,
            None => Part::Whole,
        },
        (first, last) => match (
            num(first),
            if last.is_empty() {
                Some(None)
            } else {
                num(last).map(Some)
            },
        ) {
            (Some(start), Some(end)) => {
                let end = end.unwrap_or(u64::MAX).min(size.saturating_sub(1));
                if start >= size || end < start {
                    Part::Unsatisfiable
                } else {
                    Part::Range { start, end }
                }
            }
            _ => Part::Whole,
        },
    }
}

/// An open file ready to send: its body, total size and the part sent.
#[derive(Debug)]
pub struct Opened {
    /// The body to send.
    pub body: FileBody,
    /// The file's size when opened (a clip being written grows; what was
    /// there at open is sent).
    pub size: u64,
    /// What part of it.
    pub part: Part,
}

/// Why a file is not sent.
#[derive(Debug, PartialEq, Eq)]
pub enum OpenError {
    /// No such file (or not a regular file, or larger than allowed).
    Missing,
    /// Every file slot is taken.
    Busy,
}

/// Opens `path` (a regular file of at most `max_size` bytes) for sending
/// the part `range` asks for, read through `disk`. Blocks: call it on the
/// disk thread.
pub fn open(
    disk: &Arc<Disk>,
    slots: &Arc<FileSlots>,
    path: &Path,
    max_size: u64,
    range: Option<&str>,
) -> Result<Opened, OpenError> {
    let mut file = std::fs::File::open(path).map_err(|_| OpenError::Missing)?;
    let meta = file.metadata().map_err(|_| OpenError::Missing)?;
    if !meta.is_file() || meta.len() > max_size {
        return Err(OpenError::Missing);
    }
    let slot = slots.try_acquire().ok_or(OpenError::Busy)?;
    let size = meta.len();
    let part = parse_range(range, size);
    let (start, len) = match part {
        Part::Whole => (0, size),
        Part::Range { start, end } => (start, end - start + 1),
        Part::Unsatisfiable => (0, 0),
    };
    if start > 0 {
        file.seek(SeekFrom::Start(start))
            .map_err(|_| OpenError::Missing)?;
    }
    Ok(Opened {
        body: FileBody {
            reader: ChunkReader::new(disk.clone(), file, len),
            _slot: slot,
        },
        size,
        part,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 100), Part::Whole);
        assert_eq!(
            parse_range(Some("bytes=0-"), 100),
            Part::Range { start: 0, end: 99 }
        );
        assert_eq!(
            parse_range(Some("bytes=10-19"), 100),
            Part::Range { start: 10, end: 19 }
        );
        assert_eq!(
            parse_range(Some("bytes=90-500"), 100),
            Part::Range { start: 90, end: 99 }
        );
        assert_eq!(
            parse_range(Some("bytes=-10"), 100),
            Part::Range { start: 90, end: 99 }
        );
        assert_eq!(
            parse_range(Some("bytes=-500"), 100),
            Part::Range { start: 0, end: 99 }
        );
        assert_eq!(parse_range(Some("bytes=100-"), 100), Part::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=20-10"), 100), Part::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 100), Part::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-"), 0), Part::Unsatisfiable);
        // Not one well-formed range: the whole file.
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), Part::Whole);
        assert_eq!(parse_range(Some("items=0-1"), 100), Part::Whole);
        assert_eq!(parse_range(Some("bytes=a-b"), 100), Part::Whole);
        assert_eq!(parse_range(Some("bytes=+1-2"), 100), Part::Whole);
        assert_eq!(parse_range(Some("bytes=1"), 100), Part::Whole);
    }

    #[test]
    fn ranges_never_panic_on_garbage() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let alphabet = b"bytes=-0123456789, ax";
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 24) as usize;
            let s: String = (0..len)
                .map(|i| alphabet[((seed >> (i % 8 * 8)) as usize + i) % alphabet.len()] as char)
                .collect();
            let size = seed % 1000;
            match parse_range(Some(&s), size) {
                Part::Range { start, end } => assert!(start <= end && end < size, "{s} {size}"),
                Part::Whole | Part::Unsatisfiable => {}
            }
        }
    }

    #[test]
    fn files_are_sent_in_chunks_and_slots_are_bounded() {
        let dir = std::env::temp_dir().join(format!("vigil-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f.bin");
        let data: Vec<u8> = (0..(CHUNK * 2 + 100)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let disk = Disk::start("test-disk", 4).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let next = |b: &mut FileBody| {
            rt.block_on(std::future::poll_fn(|cx| b.poll_frame(cx)))
                .map(|f| f.into_data().unwrap())
        };
        let slots = Arc::new(FileSlots::default());
        let mut open_ones = Vec::new();
        for _ in 0..MAX_FILE_STREAMS {
            open_ones.push(open(&disk, &slots, &path, u64::MAX, None).unwrap());
        }
        assert_eq!(
            open(&disk, &slots, &path, u64::MAX, None).unwrap_err(),
            OpenError::Busy
        );
        let mut first = open_ones.pop().unwrap();
        let mut got = Vec::new();
        let mut frames = 0;
        while let Some(d) = next(&mut first.body) {
            assert!(d.len() <= CHUNK);
            got.extend_from_slice(&d);
            frames += 1;
        }
        assert_eq!(frames, 3);
        assert_eq!(got, data);
        drop(first);
        let mut ranged = open(&disk, &slots, &path, u64::MAX, Some("bytes=5-9")).unwrap();
        assert_eq!(ranged.part, Part::Range { start: 5, end: 9 });
        let d = next(&mut ranged.body).unwrap();
        assert_eq!(&d[..], &data[5..10]);
        assert!(next(&mut ranged.body).is_none());
        drop(ranged);
        drop(open_ones);
        assert_eq!(slots.in_use(), 0);
        assert_eq!(
            open(&disk, &slots, &path, 10, None).unwrap_err(),
            OpenError::Missing
        );
        assert_eq!(
            open(&disk, &slots, &dir.join("none"), u64::MAX, None).unwrap_err(),
            OpenError::Missing
        );
        disk.stop();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
