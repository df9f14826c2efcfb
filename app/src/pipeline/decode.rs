//! The decode stage: a camera's decoder and where its pictures go.
//!
//! A network or file camera's decoder thread (`vigil-dec-N`) pops packets
//! from the camera's queue and runs them through its [`DecodeStage`]; a V4L2
//! camera's capture thread drives the same stage for H.264 units (see
//! `v4l2.rs`). The stage samples pictures down to `detect_fps`, copies them
//! into the camera's frame pool (software) or takes a ticket for the MPP
//! frame (hardware), and queues them for the inference workers; it also feeds
//! every packet to the camera's recorder. Nothing here allocates per packet
//! or picture.

use super::{DecoderFactory, FrameQueue, POLL};
use crate::config::CameraConfig;
use crate::decode::limit::{Admit, SizeGate, TooLarge};
use crate::decode::{DecodeError, Decoder, Picture};
use crate::frame::{Frame, FrameBuf};
use crate::metrics::{CameraMetrics, CameraState, DropReason};
use crate::packet::{Codec, PacketBuf};
use crate::pool::Pool;
use crate::queue::PopError;
use crate::record::recorder::CameraRecorder;
use crate::sampler::Sampler;
use crate::source::sink::PacketQueue;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

/// Where a camera's decoded pictures are kept while they wait for a worker.
#[derive(Clone)]
pub(super) enum FrameStore {
    /// Buffers the software decoder's pictures are copied into.
    Buffers(Pool<FrameBuf>),
    /// Tickets bounding how many MPP frames the pipeline holds.
    Tickets(Pool<()>),
}

/// Starts camera `i`'s decoder thread (`vigil-dec-N`): it decodes what the
/// camera's source task queues until the queue is closed, then hands its
/// stage (and with it the decoder) back through the join.
pub(super) fn spawn(
    i: usize,
    packets: Arc<PacketQueue>,
    stage: DecodeStage,
) -> std::io::Result<JoinHandle<DecodeStage>> {
    let ctx = DecodeContext { packets, stage };
    std::thread::Builder::new()
        .name(format!("vigil-dec-{i}"))
        .spawn(move || ctx.run())
}

/// What a decoder thread owns.
struct DecodeContext {
    packets: Arc<PacketQueue>,
    stage: DecodeStage,
}

impl DecodeContext {
    fn run(mut self) -> DecodeStage {
        loop {
            let packet = match self.packets.pop_timeout(POLL) {
                Ok(p) => p,
                Err(PopError::Timeout) => continue,
                Err(PopError::Closed) => break,
            };
            self.stage.decode(&packet);
        }
        self.stage
    }
}

/// What every camera's [`DecodeStage`] shares.
pub(super) struct StageShared {
    /// Where every camera's pictures wait for a worker.
    pub frame_queue: Arc<FrameQueue>,
    /// Makes a camera's decoder.
    pub factory: DecoderFactory,
    /// The pipeline's start (the recorder's clock).
    pub started: Instant,
}

/// Why a camera's packets are kept from its decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    /// The stream's codec is not the one the camera's decoder is for.
    Codec {
        /// The camera's codec.
        camera: Codec,
        /// The stream's.
        stream: Codec,
        /// Whether the camera's codec is the configured one (else it was
        /// the stream's first).
        configured: bool,
    },
    /// The stream is larger than `max_resolution`.
    Size(TooLarge),
    /// An SPS could not be read, so the stream's size is unknown.
    Params,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Codec {
                camera,
                stream,
                configured: true,
            } => write!(
                f,
                "stream codec is {stream} but the camera is configured for {camera} (codec = \"{camera}\")"
            ),
            Refusal::Codec { camera, stream, .. } => write!(
                f,
                "stream codec changed from {camera} to {stream}; restart vigil to decode it \
                 (a camera's decoder is made once, for one codec)"
            ),
            Refusal::Size(t) => t.fmt(f),
            Refusal::Params => f.write_str(
                "stream parameter set (SPS) unreadable: its size cannot be checked against max_resolution",
            ),
        }
    }
}

/// A camera's decoder and where its pictures go: run by the camera's
/// decoder thread for network and file cameras, and by the capture thread
/// of a V4L2 camera (whose raw pictures skip the decoder, see
/// `V4l2Handler` in `v4l2.rs`).
pub(super) struct DecodeStage {
    /// The camera's index.
    pub camera: usize,
    /// The camera's frame pool (or tickets).
    pub frames: FrameStore,
    frame_queue: Arc<FrameQueue>,
    /// The camera's counters and state.
    pub metrics: Arc<CameraMetrics>,
    /// Keeps pictures down to `detect_fps`.
    pub sampler: Sampler,
    factory: DecoderFactory,
    recorder: Option<Arc<CameraRecorder>>,
    started: Instant,
    /// The codec of the camera's decoder: the configured one, else the
    /// first packet's. Fixed for the life of the process.
    codec: Option<Codec>,
    /// Whether `codec` came from the configuration.
    configured: bool,
    /// The camera's `max_resolution`.
    max: (u32, u32),
    /// Made on the first packet the gate lets through, then kept for the
    /// life of the process and reset on every discontinuity.
    decoder: Option<Box<dyn Decoder>>,
    /// Keeps streams over `max_resolution` from the decoder.
    gate: SizeGate,
    /// Why packets are refused now, if they are.
    refusal: Option<Refusal>,
    /// The refusal's words, formatted once per refusal (not per packet).
    reason: String,
    size: (u32, u32),
    /// Set when the camera's pictures cannot be used (too large for the
    /// pool frames) until the next discontinuity or reopen.
    pub unusable: bool,
    /// A codec the factory refused is not asked for again: otherwise every
    /// packet would retry it and format the same error.
    refused: Option<Codec>,
}

impl DecodeStage {
    /// Camera `camera`'s stage; its decoder is made on the first packet.
    pub fn new(
        camera: usize,
        cam: &CameraConfig,
        frames: FrameStore,
        metrics: Arc<CameraMetrics>,
        recorder: Option<Arc<CameraRecorder>>,
        shared: &StageShared,
    ) -> Self {
        let max = (cam.max_width, cam.max_height);
        DecodeStage {
            camera,
            frames,
            frame_queue: shared.frame_queue.clone(),
            metrics,
            sampler: Sampler::new(cam.detect_fps),
            factory: shared.factory.clone(),
            recorder,
            started: shared.started,
            codec: cam.codec,
            configured: cam.codec.is_some(),
            max,
            decoder: None,
            gate: SizeGate::new(max),
            refusal: None,
            reason: String::new(),
            size: (0, 0),
            unusable: false,
            refused: None,
        }
    }

    /// Keeps packets from the decoder for `why`: the camera goes to state
    /// error with the reason (again, if something changed the state since)
    /// and the packet is counted as dropped for `drop`.
    fn refuse(&mut self, why: Refusal, drop: DropReason) {
        if self.refusal != Some(why) {
            self.refusal = Some(why);
            self.reason = why.to_string();
        }
        self.metrics.set_state(CameraState::Error, &self.reason);
        self.metrics.packets_dropped.inc(drop);
    }

    /// Whether `packet` may reach the decoder: its codec is the camera's
    /// and the size gate lets it through. `Some(true)`: yes, after a reset
    /// (packets were kept from the decoder before it).
    fn admit(&mut self, packet: &PacketBuf) -> Option<bool> {
        let codec = *self.codec.get_or_insert(packet.codec);
        if packet.codec != codec {
            let why = Refusal::Codec {
                camera: codec,
                stream: packet.codec,
                configured: self.configured,
            };
            self.refuse(why, DropReason::DecodeError);
            return None;
        }
        match self.gate.admit(codec, packet.as_slice()) {
            Admit::Feed | Admit::Reopened => {}
            Admit::AwaitingParams => {
                self.metrics
                    .packets_dropped
                    .inc(DropReason::AwaitingKeyframe);
                return None;
            }
            Admit::Refused(t) => {
                self.refuse(Refusal::Size(t), DropReason::Oversize);
                return None;
            }
            Admit::Unreadable => {
                self.refuse(Refusal::Params, DropReason::DecodeError);
                return None;
            }
        }
        if self.refusal.take().is_none() {
            return Some(false);
        }
        // The stream came back: the camera recovers by itself.
        if self.metrics.state() == CameraState::Error {
            self.metrics.set_state(CameraState::Streaming, "");
        }
        Some(true)
    }

    /// Decodes one packet (after handing it to the recorder) and queues
    /// the pictures the sampler keeps.
    pub fn decode(&mut self, packet: &PacketBuf) {
        if let Some(rec) = &self.recorder {
            rec.on_packet(packet, self.started.elapsed().as_millis() as u64);
        }
        if self.refused == Some(packet.codec) {
            self.metrics.packets_dropped.inc(DropReason::DecodeError);
            return;
        }
        let Some(resumed) = self.admit(packet) else {
            return;
        };
        let codec = packet.codec;
        if self.decoder.is_none() {
            match (self.factory)(codec, self.max) {
                Ok(d) => self.decoder = Some(d),
                Err(e) => {
                    self.refused = Some(codec);
                    self.metrics.set_state(CameraState::Error, &e.to_string());
                    self.metrics.packets_dropped.inc(DropReason::DecodeError);
                    return;
                }
            }
        }
        // Taken out for the call so the picture callback can use the rest
        // of the stage; put back below (a move, not an allocation).
        let Some(mut dec) = self.decoder.take() else {
            return;
        };
        if packet.discontinuity || resumed {
            dec.reset();
            self.sampler.reset();
            self.unusable = false;
        }
        let result = dec.decode(packet, &mut |pic| {
            self.metrics.frames_decoded.inc();
            if pic.size() != self.size {
                self.size = pic.size();
                self.metrics.set_format(codec, self.size.0, self.size.1);
            }
            if self.unusable || !self.sampler.take(pic.pts_us) {
                self.metrics.frames_dropped.inc(DropReason::Sampling);
                return;
            }
            let frame = match (&self.frames, pic.image) {
                (FrameStore::Buffers(pool), Picture::Borrowed(image)) => {
                    let Some(mut frame) = pool.try_take() else {
                        self.metrics.frames_dropped.inc(DropReason::PoolEmpty);
                        return;
                    };
                    if let Err(e) = frame.copy_from(&image) {
                        self.unusable = true;
                        self.metrics.set_state(CameraState::Error, &e.to_string());
                        self.metrics.frames_dropped.inc(DropReason::DecodeError);
                        return;
                    }
                    frame.pts_us = pic.pts_us;
                    frame.camera = self.camera;
                    Frame::Cpu(frame)
                }
                (FrameStore::Tickets(pool), Picture::Mpp(picture)) => {
                    // Without a ticket the picture drops here and its
                    // frame goes straight back to the decoder.
                    let Some(ticket) = pool.try_take() else {
                        self.metrics.frames_dropped.inc(DropReason::PoolEmpty);
                        return;
                    };
                    Frame::Mpp {
                        picture,
                        camera: self.camera,
                        ticket,
                    }
                }
                _ => {
                    // A decoder of the other backend: cannot happen, as
                    // the parts come in matching pairs; counted if it does.
                    self.metrics.frames_dropped.inc(DropReason::DecodeError);
                    return;
                }
            };
            self.push(frame);
        });
        self.decoder = Some(dec);
        match result {
            Ok(()) => {}
            Err(DecodeError::TooLarge(t)) => {
                // The decoder's own reading (MPP's info change) found the
                // stream too large and configured nothing for it.
                self.gate.refused_by_decoder(t);
                self.refuse(Refusal::Size(t), DropReason::Oversize);
            }
            Err(e) => {
                self.metrics.packets_dropped.inc(DropReason::DecodeError);
                log::debug!("camera {}: {e}", self.metrics.name);
            }
        }
    }

    /// Queues a frame for the workers; a full queue drops its oldest.
    pub fn push(&self, frame: Frame) {
        if let Some(old) = self.frame_queue.push(frame) {
            drop(old);
            self.metrics.frames_dropped.inc(DropReason::QueueFull);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::decode::DecodedPicture;
    use crate::queue::WhenFull;
    use crate::source::annexb::tests::harness;
    use crate::source::annexb::AnnexBFile;
    use crate::source::{test_media, FileSource};
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts what reaches a decoder; `inner` decodes, if there is one.
    struct Counting {
        inner: Option<Box<dyn Decoder>>,
        fed: Arc<AtomicUsize>,
    }

    impl Decoder for Counting {
        fn decode(
            &mut self,
            packet: &PacketBuf,
            emit: &mut dyn FnMut(DecodedPicture<'_>),
        ) -> Result<(), DecodeError> {
            self.fed.fetch_add(1, Ordering::SeqCst);
            match &mut self.inner {
                Some(d) => d.decode(packet, emit),
                None => Ok(()),
            }
        }

        fn reset(&mut self) {
            if let Some(d) = &mut self.inner {
                d.reset();
            }
        }
    }

    /// What a test reads back: decoders made, packets fed to them.
    #[derive(Clone, Default)]
    struct Counts {
        made: Arc<AtomicUsize>,
        fed: Arc<AtomicUsize>,
    }

    /// A stage for one camera of `max` whose factory counts its decoders:
    /// OpenH264 when `real`, else a decoder of any codec that decodes
    /// nothing (as MPP takes both codecs).
    fn stage(max: &str, real: bool) -> (DecodeStage, Counts) {
        let text = format!(
            "[[camera]]\nname = \"c\"\nurl = \"c.h264\"\nmax_resolution = \"{max}\"\n\
             detect_fps = 60\nframe_pool = 4\n"
        );
        let config = Config::parse(&text, "t").unwrap();
        let cam = &config.cameras[0];
        let counts = Counts::default();
        let c = counts.clone();
        let factory: DecoderFactory = Arc::new(move |codec, _max| {
            c.made.fetch_add(1, Ordering::SeqCst);
            let inner = if real {
                Some(crate::decode::openh264::new_software_decoder(codec)?)
            } else {
                None
            };
            Ok(Box::new(Counting {
                inner,
                fed: c.fed.clone(),
            }) as Box<dyn Decoder>)
        });
        let shared = StageShared {
            frame_queue: Arc::new(FrameQueue::new(4, WhenFull::DropOldest)),
            factory,
            started: Instant::now(),
        };
        let (w, h) = (cam.max_width, cam.max_height);
        let stage = DecodeStage::new(
            0,
            cam,
            FrameStore::Buffers(Pool::with("frames", 4, || FrameBuf::new(w, h))),
            Arc::new(CameraMetrics::new("c")),
            None,
            &shared,
        );
        (stage, counts)
    }

    /// The `n` access units of a clip as a source delivers them (the first
    /// one a key frame marked `discontinuity`).
    fn units(path: &Path, codec: Codec, n: usize) -> Vec<PacketBuf> {
        let mut src = AnnexBFile::open(path, codec).unwrap();
        let mut h = harness(1 << 20);
        let mut out = Vec::new();
        while out.len() < n {
            if let Some(p) = src.next_unit(&mut h.sink).unwrap().packet {
                h.sink.send(p);
            }
            if let Some(p) = h.queue.try_pop() {
                let mut copy = PacketBuf::with_capacity(p.len());
                copy.begin(p.codec, p.pts_us, p.keyframe);
                copy.extend_from_slice(p.as_slice()).unwrap();
                copy.discontinuity = p.discontinuity;
                out.push(copy);
            }
        }
        out
    }

    /// 20 frames of H.264 at `size`, a key frame (with its SPS) every 10.
    fn h264(size: &str) -> Vec<PacketBuf> {
        let path = test_media::ffmpeg(
            &format!("gate-{size}.h264"),
            &format!(
                "-f lavfi -i testsrc2=size={size}:rate=25 -frames:v 20 -c:v libx264 -bf 0 \
                 -g 10 -pix_fmt yuv420p -f h264 {{out}}"
            ),
        );
        units(&path, Codec::H264, 20)
    }

    fn run(stage: &mut DecodeStage, packets: &[PacketBuf]) {
        for p in packets {
            stage.decode(p);
        }
    }

    #[test]
    fn a_stream_over_max_resolution_never_reaches_the_decoder_and_the_camera_recovers() {
        let (mut stage, counts) = stage("320x240", true);
        let m = stage.metrics.clone();
        let (big, small) = (h264("640x480"), h264("320x240"));
        run(&mut stage, &big);
        let s = m.status();
        assert_eq!(
            (s.state, s.reason.as_str()),
            (
                CameraState::Error,
                "stream 640x480 exceeds max_resolution 320x240"
            )
        );
        assert_eq!(counts.fed.load(Ordering::SeqCst), 0, "a packet was fed");
        assert_eq!(m.frames_decoded.get(), 0);
        assert_eq!(m.packets_dropped.get(DropReason::Oversize), 20);
        // The stream comes back within the limit: decoded again, at once.
        run(&mut stage, &small);
        assert_eq!(m.status().state, CameraState::Streaming);
        assert_eq!(counts.fed.load(Ordering::SeqCst), 20);
        assert!(m.frames_decoded.get() >= 19, "{}", m.frames_decoded.get());
        assert_eq!(m.status().width, 320);
        // Too large again (without a reconnect): refused from its SPS on.
        let decoded = m.frames_decoded.get();
        run(&mut stage, &big);
        assert_eq!(m.status().state, CameraState::Error);
        assert_eq!(counts.fed.load(Ordering::SeqCst), 20);
        assert!(m.frames_decoded.get() <= decoded + 1);
        assert_eq!(m.packets_dropped.get(DropReason::Oversize), 40);
        assert_eq!(counts.made.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_codec_change_mid_stream_makes_no_second_decoder() {
        let (mut stage, counts) = stage("640x480", false);
        let m = stage.metrics.clone();
        let h264 = h264("320x240");
        let h265 = units(&test_media::h265(), Codec::H265, 20);
        run(&mut stage, &h264);
        assert_eq!(counts.fed.load(Ordering::SeqCst), 20);
        run(&mut stage, &h265);
        let s = m.status();
        assert_eq!(s.state, CameraState::Error);
        assert_eq!(
            s.reason,
            "stream codec changed from h264 to h265; restart vigil to decode it \
             (a camera's decoder is made once, for one codec)"
        );
        assert_eq!(counts.fed.load(Ordering::SeqCst), 20, "h265 was fed");
        run(&mut stage, &h264);
        assert_eq!(m.status().state, CameraState::Streaming);
        assert_eq!(counts.fed.load(Ordering::SeqCst), 40);
        assert_eq!(
            counts.made.load(Ordering::SeqCst),
            1,
            "one decoder per camera, whatever the stream does"
        );
    }

    #[test]
    fn a_configured_codec_refuses_the_other_from_the_first_packet() {
        let text = "[[camera]]\nname = \"c\"\nurl = \"rtsp://10.0.0.1/s\"\ncodec = \"h265\"\n";
        let config = Config::parse(text, "t").unwrap();
        let (mut stage, counts) = stage("640x480", false);
        stage.codec = config.cameras[0].codec;
        stage.configured = true;
        run(&mut stage, &h264("320x240")[..3]);
        let s = m_status(&stage);
        assert_eq!(
            s,
            (
                CameraState::Error,
                "stream codec is h264 but the camera is configured for h265 (codec = \"h265\")"
                    .to_owned()
            )
        );
        assert_eq!(counts.made.load(Ordering::SeqCst), 0);
    }

    fn m_status(stage: &DecodeStage) -> (CameraState, String) {
        let s = stage.metrics.status();
        (s.state, s.reason)
    }
}
