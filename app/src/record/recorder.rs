//! The recorder at run time: each camera's pre-roll ring and clip state,
//! shared by three kinds of thread, and the one writer thread that turns
//! them into MP4 files.
//!
//! - The camera's decoder thread calls [`CameraRecorder::on_packet`] with
//!   every access unit before decoding it: the clip tracker sees the unit
//!   (which may close a clip), then the unit is copied into the ring. That
//!   copy is the one bounded copy a unit gets on its way to disk: the packet
//!   buffer goes back to its pool when the decoder is done with it, whatever
//!   the recorder does.
//! - An inference worker calls [`CameraRecorder::on_event`] for every event:
//!   it opens a clip (a span of the ring from the key frame before
//!   `pre_roll`) or extends the open one, and answers the clip's id, which
//!   the event's record carries.
//! - The writer thread ([`ClipWriter`]) ticks every tracker (wall-clock and
//!   silence ends), copies each span's units from the ring into its one
//!   fragment buffer a fragment at a time, and appends the fragment to the
//!   clip's file outside the lock, after reserving the bytes in the store's
//!   quota.
//!
//! Every span is bounded: at most [`MAX_SPANS`] per camera (the oldest is
//! cut short when a new clip finds them all taken), and a span whose units
//! the ring overwrote before the writer read them ends there (counted as
//! truncated), so a slow disk loses clip data, never memory. Nothing here
//! allocates per unit or per event; the writer allocates only when it opens
//! a file and in the store's transactions.

use super::clip::{Action, Actions, ClipConfig, ClipTracker, CloseReason};
use super::mp4::{ClipMux, FragmentBuilder, Mp4Error};
use super::ring::{Cursor, PacketRing, PushOutcome, ReadError};
use super::write_error::ClipWriteError;
use crate::config::RecordConfig;
use crate::metrics::CameraMetrics;
use crate::packet::{Codec, PacketBuf};
use crate::store::{ClipGrant, Store};
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Clips of one camera waiting for the writer at most (one open, the rest
/// closed but not yet written out).
pub const MAX_SPANS: usize = 3;

/// Quota reserved in the store at a time, so a clip costs a transaction per
/// this many bytes rather than per fragment.
const RESERVE_CHUNK: u64 = 1 << 20;

/// How often the writer thread looks at the cameras.
const POLL: Duration = Duration::from_millis(100);

/// Fragments written for one camera per look, so one busy camera cannot
/// starve the others.
const ROUNDS_PER_POLL: usize = 8;

/// A clip as the shared state knows it: a stretch of the ring.
#[derive(Clone, Copy, Debug)]
struct Span {
    /// The clip's id: the id of the event that opened it.
    id: u64,
    /// Where the clip starts in the ring (a key frame).
    start: Cursor,
    /// The clip holds the units before this sequence number; `None` while
    /// it is open.
    end_seq: Option<u64>,
    /// The writer has a file for it (and so counts how it ends).
    seen: bool,
}

struct Shared {
    ring: PacketRing,
    tracker: ClipTracker,
    codec: Codec,
    spans: heapless::Deque<Span, MAX_SPANS>,
}

impl Shared {
    /// Performs the tracker's actions; returns the span an `Open` created
    /// had to displace (the oldest), if any.
    fn apply(&mut self, actions: Actions, event_id: u64, metrics: &CameraMetrics) {
        for action in actions {
            match action {
                Action::Close { reason } => self.close_open(reason),
                Action::Open { start_pts_us } => {
                    if self.spans.is_full() {
                        // The writer is behind by whole clips: the oldest
                        // is cut where it got to (the writer counts it when
                        // it had started it; nobody else would).
                        if self.spans.pop_front().is_some_and(|s| !s.seen) {
                            metrics.record.clips_truncated.inc();
                        }
                    }
                    let span = Span {
                        id: event_id,
                        start: self.ring.start_for(start_pts_us),
                        end_seq: None,
                        seen: false,
                    };
                    // Room was made above.
                    let _ = self.spans.push_back(span);
                    metrics.record.clips_opened.inc();
                }
                Action::Write => {}
            }
        }
    }

    fn close_open(&mut self, _reason: CloseReason) {
        let next = self.ring.next_seq();
        if let Some(span) = self.spans.back_mut().filter(|s| s.end_seq.is_none()) {
            span.end_seq = Some(next);
        }
    }

    fn open_id(&self) -> Option<u64> {
        self.spans
            .back()
            .filter(|s| s.end_seq.is_none())
            .map(|s| s.id)
    }
}

/// One camera's recording state.
pub struct CameraRecorder {
    shared: Mutex<Shared>,
    metrics: Arc<CameraMetrics>,
}

/// Bytes one camera's recorder allocates (its line in the memory budget).
pub fn camera_bytes(config: &RecordConfig) -> usize {
    super::ring::bytes_for(config.ring_size, config.ring_units)
        + std::mem::size_of::<CameraRecorder>()
}

/// Bytes the writer thread allocates for its fragments and open clips.
pub fn writer_bytes(config: &RecordConfig, cameras: usize) -> usize {
    FragmentBuilder::bytes_for(config.fragment_size, max_samples(config))
        + cameras * MAX_SPANS * std::mem::size_of::<ClipFile>()
}

/// Samples one fragment holds at most: a fragment's duration at up to 120
/// pictures a second, and never fewer than 64.
fn max_samples(config: &RecordConfig) -> usize {
    ((config.fragment.as_secs_f64() * 120.0).ceil() as usize).max(64)
}

impl CameraRecorder {
    /// A recorder with its ring allocated and no clip open.
    pub fn new(config: &RecordConfig, metrics: Arc<CameraMetrics>) -> Self {
        CameraRecorder {
            shared: Mutex::new(Shared {
                ring: PacketRing::new(config.ring_size, config.ring_units),
                tracker: ClipTracker::new(ClipConfig {
                    pre_roll: config.pre_roll,
                    post_roll: config.post_roll,
                    max_length: config.max_length,
                    silence: config.silence,
                    jump: config.jump,
                }),
                codec: Codec::H264,
                spans: heapless::Deque::new(),
            }),
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An access unit on its way to the decoder, at monotonic `now_ms`.
    pub fn on_packet(&self, packet: &PacketBuf, now_ms: u64) {
        let mut s = self.lock();
        if packet.discontinuity || packet.codec != s.codec {
            let a = s.tracker.discontinuity();
            s.apply(a, 0, &self.metrics);
            s.ring.reset();
            s.codec = packet.codec;
        }
        let a = s.tracker.on_unit(packet.pts_us, now_ms);
        s.apply(a, 0, &self.metrics);
        match s
            .ring
            .push(packet.as_slice(), packet.pts_us, packet.keyframe)
        {
            PushOutcome::Stored { .. } | PushOutcome::AwaitingKey => {}
            PushOutcome::Oversize | PushOutcome::GopTooLong => {
                self.metrics.record.ring_refused.inc();
            }
        }
    }

    /// Event `event_id` at stream time `pts_us`, seen at monotonic `now_ms`:
    /// opens or extends the camera's clip. Answers the clip's id.
    pub fn on_event(&self, event_id: u64, pts_us: i64, now_ms: u64) -> Option<u64> {
        let mut s = self.lock();
        let a = s.tracker.on_event(pts_us, now_ms);
        s.apply(a, event_id, &self.metrics);
        s.open_id()
    }

    /// Clips opened and not yet written out (tests, status).
    pub fn pending_clips(&self) -> usize {
        self.lock().spans.len()
    }

    /// Whether a clip is open.
    pub fn is_open(&self) -> bool {
        self.lock().open_id().is_some()
    }
}

/// The writer's side of one clip: its file and how far it got.
struct ClipFile {
    id: u64,
    cursor: Cursor,
    mux: Option<ClipMux>,
    file: Option<File>,
    written: u64,
    reserved: u64,
    /// Writing stopped (disk error, quota, ring lapped): the rest of the
    /// span is skipped and the file ends at its last whole fragment.
    stopped: bool,
}

/// What one round of filling produced.
enum Round {
    /// Nothing to do for this camera now.
    Idle,
    /// A fragment for clip `slot` is in the builder (maybe with its init
    /// segment first).
    Fragment { slot: usize, init: bool },
    /// Clip `slot` is complete: finish its file.
    Finish { slot: usize },
}

/// The writer thread's state.
pub struct ClipWriter {
    cameras: Vec<Arc<CameraRecorder>>,
    store: Arc<Store>,
    builder: FragmentBuilder,
    /// Per camera, the clips being written (at most `MAX_SPANS` each).
    files: Vec<heapless::Vec<ClipFile, MAX_SPANS>>,
    fragment_us: i64,
    started: Instant,
    stop: Arc<AtomicBool>,
}

impl ClipWriter {
    /// The writer for `cameras`, storing into `store`; `started` is the
    /// pipeline's monotonic origin, `stop` ends [`ClipWriter::run`] after it
    /// finishes every clip.
    pub fn new(
        config: &RecordConfig,
        cameras: Vec<Arc<CameraRecorder>>,
        store: Arc<Store>,
        started: Instant,
        stop: Arc<AtomicBool>,
    ) -> Self {
        let files = cameras.iter().map(|_| heapless::Vec::new()).collect();
        ClipWriter {
            cameras,
            store,
            builder: FragmentBuilder::new(config.fragment_size, max_samples(config)),
            files,
            fragment_us: i64::try_from(config.fragment.as_micros()).unwrap_or(i64::MAX),
            started,
            stop,
        }
    }

    /// Writes clips until stopped, then closes every open clip and writes
    /// out what the rings hold of them.
    pub fn run(mut self) {
        while !self.stop.load(Ordering::Acquire) {
            std::thread::sleep(POLL);
            let now_ms = self.started.elapsed().as_millis() as u64;
            self.step(now_ms);
        }
        self.finish_all();
    }

    /// One look at every camera at monotonic `now_ms`: ticks its clip
    /// clock and writes the fragments that are due. Answers whether work
    /// remained when a camera's share of rounds ran out.
    pub fn step(&mut self, now_ms: u64) -> bool {
        let mut more = false;
        for cam in 0..self.cameras.len() {
            more |= self.service(cam, false, now_ms);
        }
        more
    }

    /// Closes every open clip, writes out what the rings hold of them and
    /// finishes their files: afterwards the recorder holds no clip.
    pub fn finish_all(&mut self) {
        for cam in 0..self.cameras.len() {
            {
                let rec = self.cameras[cam].clone();
                let mut s = rec.lock();
                let a = s.tracker.shutdown();
                s.apply(a, 0, &rec.metrics);
            }
            let now_ms = self.started.elapsed().as_millis() as u64;
            while self.service(cam, true, now_ms) {}
        }
    }

    /// Clips the writer has files open for (tests).
    pub fn open_files(&self) -> usize {
        self.files.iter().map(|f| f.len()).sum()
    }

    /// Ticks camera `cam`'s clock and writes up to [`ROUNDS_PER_POLL`]
    /// fragments; `draining` writes whatever is there without waiting for a
    /// whole fragment's duration. Answers whether work remains.
    fn service(&mut self, cam: usize, draining: bool, now_ms: u64) -> bool {
        for _ in 0..ROUNDS_PER_POLL {
            match self.fill(cam, draining, now_ms) {
                Round::Idle => return false,
                Round::Fragment { slot, init } => self.write_fragment(cam, slot, init),
                Round::Finish { slot } => self.finish(cam, slot),
            }
        }
        true
    }

    /// Under the camera's lock: syncs the clip files with the spans and
    /// fills the builder with the next fragment that is due.
    fn fill(&mut self, cam: usize, draining: bool, now_ms: u64) -> Round {
        let rec = self.cameras[cam].clone();
        let metrics = &rec.metrics.record;
        let mut s = rec.lock();
        let a = s.tracker.tick(now_ms);
        s.apply(a, 0, &rec.metrics);
        metrics.ring_bytes.set(s.ring.bytes_held() as f64);
        metrics.ring_seconds.set(s.ring.span_us() as f64 / 1e6);
        metrics
            .recording
            .set(if s.spans.is_empty() { 0.0 } else { 1.0 });
        let files = &mut self.files[cam];
        // A clip whose span was displaced is finished where it got to.
        if let Some(slot) = files
            .iter()
            .position(|f| !s.spans.iter().any(|sp| sp.id == f.id))
        {
            files[slot].stopped = true;
            return Round::Finish { slot };
        }
        for span in s.spans.iter_mut() {
            span.seen = true;
        }
        let spans: heapless::Vec<Span, MAX_SPANS> = s.spans.iter().copied().collect();
        for span in spans {
            let slot = match files.iter().position(|f| f.id == span.id) {
                Some(i) => i,
                None => {
                    let file = ClipFile {
                        id: span.id,
                        cursor: span.start,
                        mux: None,
                        file: None,
                        written: 0,
                        reserved: 0,
                        stopped: false,
                    };
                    // At most MAX_SPANS spans, and every file has a span.
                    let _ = files.push(file);
                    files.len() - 1
                }
            };
            let f = &mut files[slot];
            let end = span.end_seq.unwrap_or(s.ring.next_seq());
            if f.stopped || f.cursor.seq() >= end {
                if span.end_seq.is_some() || f.stopped {
                    // Done: closed and written out, or abandoned. The span
                    // goes now, so a new clip can take its place.
                    if f.stopped && span.end_seq.is_none() {
                        let a = s.tracker.lapped();
                        s.apply(a, 0, &rec.metrics);
                    }
                    if let Some(i) = s.spans.iter().position(|sp| sp.id == span.id) {
                        remove_at(&mut s.spans, i);
                    }
                    return Round::Finish { slot };
                }
                continue;
            }
            // Wait until a fragment can end where it should (see
            // `cut_before`), unless the clip is closed (its end is known)
            // or the writer is draining.
            let due = draining
                || span.end_seq.is_some()
                || match s.ring.iter_from(f.cursor) {
                    Ok(mut units) => units.next().is_some_and(|first| {
                        units.any(|u| cut_before(first.pts_us, u.pts_us, u.key, self.fragment_us))
                    }),
                    // Lapped or reset: the fill below notices and stops.
                    Err(_) => true,
                };
            if !due {
                continue;
            }
            let init = f.mux.is_none();
            let (ring, codec) = (&s.ring, s.codec);
            let lapped = fill_fragment(
                &mut self.builder,
                ring,
                codec,
                f,
                end,
                self.fragment_us,
                &rec.metrics,
            );
            if lapped {
                f.stopped = true;
            }
            if self.builder.pending_samples() > 0 {
                return Round::Fragment { slot, init };
            }
            if f.stopped {
                if span.end_seq.is_none() {
                    let a = s.tracker.lapped();
                    s.apply(a, 0, &rec.metrics);
                }
                if let Some(i) = s.spans.iter().position(|sp| sp.id == span.id) {
                    remove_at(&mut s.spans, i);
                }
                return Round::Finish { slot };
            }
        }
        Round::Idle
    }

    /// Appends the builder's fragment (after the init segment for a new
    /// clip) to the clip's file, reserving quota first.
    fn write_fragment(&mut self, cam: usize, slot: usize, init: bool) {
        let rec = self.cameras[cam].clone();
        let f = &mut self.files[cam][slot];
        if let Err(e) = append(&mut self.builder, &self.store, f, init, &rec.metrics) {
            // Whatever the builder holds is dropped with the clip's rest.
            self.builder.discard_pending();
            f.stopped = true;
            rec.metrics.record.fail(&rec.metrics.name, &e.to_string());
        }
    }

    /// Closes clip `slot`'s file and records its size in the store.
    fn finish(&mut self, cam: usize, slot: usize) {
        let rec = self.cameras[cam].clone();
        let f = self.files[cam].swap_remove(slot);
        let path = self.store.clip_path(f.id);
        // A clip that never got a unit (closed at once by a reconnect) is
        // not a clip.
        let complete = !f.stopped && f.file.is_some();
        match f.file {
            // A file that did not even get its init segment is no clip.
            Some(file) if f.written > 0 => {
                if let Err(e) = file.sync_data() {
                    rec.metrics.record.fail(
                        &rec.metrics.name,
                        &format!("cannot sync {}: {e}", path.display()),
                    );
                }
                drop(file);
                let units = f.mux.as_ref().map_or(0, ClipMux::samples);
                // Tests compare these figures with what ffprobe reads.
                log::info!(
                    "camera {}: clip {} {}: {units} units, {} bytes",
                    rec.metrics.name,
                    f.id,
                    if complete { "finished" } else { "cut short" },
                    f.written
                );
                if complete {
                    rec.metrics.record.ok();
                }
            }
            _ => {
                let _ = std::fs::remove_file(&path);
            }
        }
        // Every clip opened ends counted exactly once: finished, or cut
        // short (here, or in `Shared::apply` when the writer never saw it).
        if complete {
            rec.metrics.record.clips_finished.inc();
        } else {
            rec.metrics.record.clips_truncated.inc();
        }
        if f.reserved > 0 {
            if let Err(e) = self.store.clip_finish(f.id, f.written) {
                rec.metrics.record.fail(&rec.metrics.name, &e.to_string());
            }
        }
    }
}

/// Writes the init segment (for a new clip) and the pending fragment to
/// clip `f`'s file, reserving quota before each.
fn append(
    builder: &mut FragmentBuilder,
    store: &Store,
    f: &mut ClipFile,
    init: bool,
    metrics: &CameraMetrics,
) -> Result<(), ClipWriteError> {
    let Some(mux) = f.mux.as_mut() else {
        return Err(ClipWriteError::NoStream);
    };
    let path = store.clip_path(f.id);
    let write_error = |source| ClipWriteError::Write {
        path: path.clone(),
        source,
    };
    if init {
        let len = builder
            .init_segment(mux)
            .map_err(ClipWriteError::Mux)?
            .len() as u64;
        reserve(store, f.id, &mut f.reserved, f.written, len)?;
        let mut file = File::create(&path).map_err(|source| ClipWriteError::Create {
            path: path.clone(),
            source,
        })?;
        let bytes = builder.init_segment(mux).map_err(ClipWriteError::Mux)?;
        file.write_all(bytes).map_err(write_error)?;
        f.written += len;
        f.file = Some(file);
    }
    let units = builder.pending_samples() as u64;
    let fragment = builder.finish_fragment(mux);
    let len = fragment.len() as u64;
    reserve(store, f.id, &mut f.reserved, f.written, len)?;
    let Some(file) = f.file.as_mut() else {
        return Err(ClipWriteError::NotOpen { path });
    };
    file.write_all(fragment).map_err(write_error)?;
    f.written += len;
    metrics.record.units_written.add(units);
    metrics.record.bytes_written.add(len);
    Ok(())
}

/// Reserves quota for `len` more bytes of clip `f` when its reservation is
/// short.
fn reserve(
    store: &Store,
    id: u64,
    reserved: &mut u64,
    written: u64,
    len: u64,
) -> Result<(), ClipWriteError> {
    if written + len <= *reserved {
        return Ok(());
    }
    let chunk = len.max(RESERVE_CHUNK);
    match store.clip_reserve(id, chunk, crate::clock::now_unix_ms()) {
        Ok(ClipGrant::Granted) => {
            *reserved += chunk;
            Ok(())
        }
        Ok(ClipGrant::Evicted) => Err(ClipWriteError::Evicted),
        Err(e) => Err(ClipWriteError::Store(Box::new(e))),
    }
}

/// Copies clip `f`'s next units (before `end`) from the ring into the
/// builder, up to one fragment's duration or the builder's room. Answers
/// whether the ring had overwritten (or reset past) units the clip still
/// needed.
fn fill_fragment(
    builder: &mut FragmentBuilder,
    ring: &PacketRing,
    codec: Codec,
    f: &mut ClipFile,
    end: u64,
    fragment_us: i64,
    metrics: &CameraMetrics,
) -> bool {
    let mut first: Option<i64> = None;
    while f.cursor.seq() < end {
        let mut next = f.cursor;
        let unit = match ring.read(&mut next) {
            Ok(Some(u)) => u,
            Ok(None) => break,
            Err(ReadError::Lapped { .. }) | Err(ReadError::Reset) => return true,
        };
        if first.is_some_and(|t| cut_before(t, unit.pts_us, unit.key, fragment_us)) {
            break;
        }
        if f.mux.is_none() {
            match ClipMux::new(codec, unit.data, unit.pts_us) {
                Ok(m) => f.mux = Some(m),
                Err(e) => {
                    metrics
                        .record
                        .fail(&metrics.name, &format!("clip {}: {e}", f.id));
                    f.stopped = true;
                    return false;
                }
            }
        }
        let Some(mux) = f.mux.as_mut() else {
            return false;
        };
        match builder.push(mux, unit.data, unit.pts_us, unit.key) {
            Ok(()) => {}
            Err(Mp4Error::FragmentFull) => break,
            Err(_) => {
                // A unit the muxer cannot take is skipped, counted as lost.
                metrics.record.ring_refused.inc();
            }
        }
        first.get_or_insert(unit.pts_us);
        f.cursor = next;
    }
    false
}

/// Cuts every clip file in `dir` back to its last whole fragment: a crash
/// (or power loss) while a fragment was being appended leaves a torn one,
/// which FFmpeg skips but a browser stops at with a decode error. Runs once
/// at start, before the store reconciles the clips' sizes. Answers how many
/// files were cut.
pub fn repair_clips(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut cut = 0;
    for path in entries.flatten().map(|e| e.path()) {
        if path.extension().is_none_or(|e| e != "mp4") {
            continue;
        }
        let repaired = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .and_then(|mut file| {
                let len = file.metadata()?.len();
                let whole = super::mp4::complete_len(&mut file)?;
                if whole == 0 {
                    // Not even the init segment: nothing to keep.
                    drop(file);
                    std::fs::remove_file(&path)?;
                    return Ok(true);
                }
                if whole < len {
                    file.set_len(whole)?;
                    file.sync_data()?;
                    return Ok(true);
                }
                Ok(false)
            });
        match repaired {
            Ok(true) => {
                log::warn!(
                    "clip {}: cut back to its last whole fragment",
                    path.display()
                );
                cut += 1;
            }
            Ok(false) => {}
            Err(e) => log::error!("clip {}: cannot check: {e}", path.display()),
        }
    }
    cut
}

/// Whether a fragment that began at `first_us` ends before a unit at
/// `pts_us`: at the first key frame once the fragment is `fragment_us`
/// long, so fragments hold whole groups of pictures and B-frames never lose
/// their reordering partners to the next fragment; a camera whose key
/// frames are further apart than four fragments is cut anywhere then, so a
/// crash still loses at most four fragments' worth.
fn cut_before(first_us: i64, pts_us: i64, key: bool, fragment_us: i64) -> bool {
    let elapsed = pts_us.saturating_sub(first_us);
    (key && elapsed >= fragment_us) || elapsed >= fragment_us.saturating_mul(4)
}

/// Removes the `i`th span, keeping the others in order.
fn remove_at(spans: &mut heapless::Deque<Span, MAX_SPANS>, i: usize) {
    for n in 0..spans.len() {
        if let Some(span) = spans.pop_front() {
            if n != i {
                // One was just popped: there is room.
                let _ = spans.push_back(span);
            }
        }
    }
}
