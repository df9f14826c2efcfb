//! One MPP hardware decoder per camera, created once and reset on
//! reconnect, with its frame memory capped by a limited buffer group.
//!
//! The rules come from MPP's own issue tracker (rockchip-api.md): repeated
//! create/destroy grows memory (#367, #623), so a camera's decoder lives as
//! long as the process and [`MppDecoder::reset`] is all a reconnect does;
//! without a buffer group MPP silently makes an unlimited one, so the
//! decoder gets a group limited to `buffers` frames before it may output
//! anything; every frame it returns, info-change and EOS frames included,
//! is deinit'ed exactly once; the group is put only after every buffer is
//! back (#428). Ownership makes those orders hold by construction: the
//! context, packet and group live in one [`Inner`] behind an `Arc`, every
//! [`MppPicture`] holds a clone, and `Inner`'s `Drop` (the only teardown)
//! runs after the last picture has deinit'ed its frame.

use super::mpp_sys::{self as sys, MppApi, MppBufferGroup, MppCtx, MppFrame, MppLib, MppPacket};
use crate::image::{DmaBuf, ImageRef, Nv12};
use crate::packet::Codec;
use std::ffi::c_void;
use std::fmt;
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// Numbers decoders so readers can tell their buffers apart ([`DmaBuf`]).
static NEXT_DECODER_ID: AtomicU32 = AtomicU32::new(1);

/// Tag MPP records for our allocations (shows in its debug logs).
const TAG: &std::ffi::CStr = c"vigil";

/// An MPP call that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MppError {
    /// The call.
    pub call: &'static str,
    /// Its return code.
    pub code: i32,
}

impl fmt::Display for MppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MPP {} failed with {}", self.call, self.code)
    }
}

impl std::error::Error for MppError {}

/// Why [`MppDecoder::new`] failed; whatever it had made is released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewError {
    /// `mpp_create` succeeded but gave no `MppApi`: nothing could be called
    /// on the context, which was destroyed at once.
    NoApi,
    /// An MPP call failed.
    Call(MppError),
}

impl fmt::Display for NewError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NewError::NoApi => write!(f, "MPP mpp_create gave a context without an MppApi"),
            NewError::Call(e) => write!(f, "cannot create the MPP decoder: {e}"),
        }
    }
}

impl std::error::Error for NewError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NewError::NoApi => None,
            NewError::Call(e) => Some(e),
        }
    }
}

impl From<MppError> for NewError {
    fn from(e: MppError) -> NewError {
        NewError::Call(e)
    }
}

fn check(call: &'static str, code: i32) -> Result<(), MppError> {
    if code == 0 {
        Ok(())
    } else {
        Err(MppError { call, code })
    }
}

/// An info change to a picture larger than the decoder's limit: refused
/// before the buffer group was configured for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Oversize {
    /// The geometry MPP asked buffers for.
    pub geometry: Geometry,
    /// The largest width and height the caller allows.
    pub max: (u32, u32),
}

impl fmt::Display for Oversize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = &self.geometry;
        write!(
            f,
            "MPP info change to {}x{} refused: the limit is {}x{}",
            g.width, g.height, self.max.0, self.max.1
        )
    }
}

/// Why [`MppDecoder::next_picture`] gave no picture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PictureError {
    /// An MPP call failed.
    Mpp(MppError),
    /// The stream changed to a picture over the limit; nothing was
    /// configured for it and the decoder waits (until a reset) for nothing.
    Oversize(Oversize),
}

impl fmt::Display for PictureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PictureError::Mpp(e) => e.fmt(f),
            PictureError::Oversize(o) => o.fmt(f),
        }
    }
}

impl std::error::Error for PictureError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PictureError::Mpp(e) => Some(e),
            PictureError::Oversize(_) => None,
        }
    }
}

impl From<MppError> for PictureError {
    fn from(e: MppError) -> Self {
        PictureError::Mpp(e)
    }
}

/// What a packet submission did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Put {
    /// The decoder took (copied) the packet.
    Taken,
    /// Its input queue is full: take frames out, then retry.
    Full,
}

/// The picture geometry negotiated at the last info change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Geometry {
    /// Visible width.
    pub width: u32,
    /// Visible height.
    pub height: u32,
    /// Bytes per luma row.
    pub hor_stride: u32,
    /// Rows per plane (luma rows before chroma starts).
    pub ver_stride: u32,
    /// Bytes of one frame buffer.
    pub buf_size: usize,
}

struct Inner {
    lib: Arc<MppLib>,
    ctx: MppCtx,
    /// NULL only while `MppDecoder::new` has not checked it yet.
    api: *mut MppApi,
    packet: MppPacket,
    group: MppBufferGroup,
    /// `mpp_init` succeeded: only then may the context be reset (MPP
    /// answers MPP_ERR_INIT before it).
    inited: bool,
}

// SAFETY: MPP serialises calls on a context internally; its multi-thread
// test (mpi_dec_mt_test.c) feeds and drains one context from two threads.
// vigil uses a decoder from one thread and only deinits frames elsewhere.
unsafe impl Send for Inner {}
// SAFETY: as above; the only shared use is `frame_deinit` from pictures.
unsafe impl Sync for Inner {}

impl Drop for Inner {
    fn drop(&mut self) {
        let lib = &self.lib;
        // SAFETY: every non-NULL handle was created by this Inner and is
        // released once, here, in the order rockchip-api.md gives: reset,
        // packet, context, then the group (MPP does not free an external
        // group). NULL ones are what a failed `MppDecoder::new` left unmade;
        // a context whose init failed or never ran is not reset.
        unsafe {
            if self.inited {
                if let Some(reset) = (*self.api).reset {
                    reset(self.ctx);
                }
            }
            if !self.packet.is_null() {
                (lib.packet_deinit)(&mut self.packet);
            }
            (lib.destroy)(self.ctx);
            if !self.group.is_null() {
                (lib.buffer_group_put)(self.group);
            }
        }
    }
}

impl Inner {
    /// `control(cmd, param)` through the vtable (`api` checked non-NULL).
    fn control<T>(&self, name: &'static str, cmd: i32, param: *mut T) -> Result<(), MppError> {
        // SAFETY: the vtable from mpp_create; `param` is what `cmd` takes.
        let code = unsafe {
            match (*self.api).control {
                Some(control) => control(self.ctx, cmd, param.cast::<c_void>()),
                None => -1,
            }
        };
        check(name, code)
    }
}

/// A camera's decoder.
pub struct MppDecoder {
    inner: Arc<Inner>,
    buffers: usize,
    geometry: Option<Geometry>,
    id: u32,
    /// Info changes applied: each frees the group's buffers and makes new ones.
    generation: u32,
    /// Frames MPP marked as broken or discarded (deinit'ed, not returned).
    pub errors: u64,
}

/// A decoded NV12 picture in an MPP buffer; dropping it returns the frame.
pub struct MppPicture {
    inner: Arc<Inner>,
    frame: MppFrame,
    /// The dma-buf fd of the buffer (owned by MPP: never close it).
    pub fd: i32,
    /// Where the buffer is mapped for the CPU.
    pub ptr: *const u8,
    /// The geometry of the stream when it was decoded.
    pub geometry: Geometry,
    /// Stream time of the picture.
    pub pts: i64,
    /// Which decoder and buffer generation the buffer belongs to.
    pub dma: DmaBuf,
}

// SAFETY: the frame is only deinit'ed (by Drop), which MPP allows from any
// thread; the buffer stays valid until then.
unsafe impl Send for MppPicture {}

impl MppPicture {
    /// The luma plane (`hor_stride * ver_stride` bytes, `width` used per row).
    pub fn luma(&self) -> &[u8] {
        let g = &self.geometry;
        self.mapped(g.hor_stride as usize * g.ver_stride as usize)
    }

    /// The first `len` bytes of the mapping (fewer if the buffer is
    /// smaller; none if MPP gave no CPU mapping).
    fn mapped(&self, len: usize) -> &[u8] {
        if self.ptr.is_null() {
            return &[];
        }
        // SAFETY: MPP maps `buf_size` bytes at `ptr`, valid until this
        // picture deinits its frame (which needs `&mut self`).
        unsafe { std::slice::from_raw_parts(self.ptr, len.min(self.geometry.buf_size)) }
    }

    /// The whole picture as an NV12 view carrying its dma-buf.
    pub fn image(&self) -> ImageRef<'_> {
        let g = &self.geometry;
        let data = self.mapped(g.hor_stride as usize * g.ver_stride as usize * 3 / 2);
        ImageRef::Nv12(Nv12 {
            width: g.width,
            height: g.height,
            data,
            stride: g.hor_stride as usize,
            rows: g.ver_stride as usize,
            dma: Some(self.dma),
        })
    }
}

impl Drop for MppPicture {
    fn drop(&mut self) {
        // SAFETY: the frame came from decode_get_frame and is deinit'ed once.
        unsafe {
            (self.inner.lib.frame_deinit)(&mut self.frame);
        }
    }
}

impl MppDecoder {
    /// Creates the decoder for `codec` with at most `buffers` frame buffers
    /// (reference pictures plus those held by the pipeline).
    pub fn new(lib: Arc<MppLib>, codec: Codec, buffers: usize) -> Result<MppDecoder, NewError> {
        let coding = match codec {
            Codec::H264 => sys::CODING_AVC,
            Codec::H265 => sys::CODING_HEVC,
        };
        let mut ctx: MppCtx = ptr::null_mut();
        let mut api: *mut MppApi = ptr::null_mut();
        // SAFETY: out-pointers to locals; checked before use.
        check("mpp_create", unsafe { (lib.create)(&mut ctx, &mut api) })?;
        // From here `Inner` owns the context: an early return destroys it.
        let mut inner = Inner {
            lib: lib.clone(),
            ctx,
            api,
            packet: ptr::null_mut(),
            group: ptr::null_mut(),
            inited: false,
        };
        if api.is_null() {
            return Err(NewError::NoApi);
        }
        let mut group: MppBufferGroup = ptr::null_mut();
        // SAFETY: out-pointer to a local; tag strings are 'static C strings.
        let got = unsafe {
            (lib.buffer_group_get)(
                &mut group,
                sys::BUFFER_TYPE_DRM | sys::BUFFER_FLAGS_DMA32,
                sys::BUFFER_MODE_INTERNAL,
                TAG.as_ptr(),
                TAG.as_ptr(),
            )
        };
        inner.group = group;
        check("mpp_buffer_group_get", got)?;
        let mut packet: MppPacket = ptr::null_mut();
        // SAFETY: an empty packet made once and reused for every access unit.
        let made = unsafe { (lib.packet_init)(&mut packet, ptr::null_mut(), 0) };
        inner.packet = packet;
        check("mpp_packet_init", made)?;
        let mut one: u32 = 1;
        // Output as soon as decoded, and keep decoding after stream errors
        // (MPP #629, #927); both must be set before mpp_init.
        inner.control(
            "MPP_DEC_SET_IMMEDIATE_OUT",
            sys::DEC_SET_IMMEDIATE_OUT,
            &mut one,
        )?;
        inner.control(
            "MPP_DEC_SET_DISABLE_ERROR",
            sys::DEC_SET_DISABLE_ERROR,
            &mut one,
        )?;
        // SAFETY: the context from mpp_create.
        check("mpp_init", unsafe {
            (lib.init)(inner.ctx, sys::MPP_CTX_DEC, coding)
        })?;
        inner.inited = true;
        let decoder = MppDecoder {
            inner: Arc::new(inner),
            buffers,
            geometry: None,
            id: NEXT_DECODER_ID.fetch_add(1, Ordering::Relaxed),
            generation: 0,
            errors: 0,
        };
        // Never block the decoder thread in get_frame.
        let mut timeout: i64 = 0;
        decoder.control(
            "MPP_SET_OUTPUT_TIMEOUT",
            sys::SET_OUTPUT_TIMEOUT,
            &mut timeout,
        )?;
        // The group must be attached before any output, or MPP makes an
        // unlimited internal one (refused before mpp_init).
        decoder.control(
            "MPP_DEC_SET_EXT_BUF_GROUP",
            sys::DEC_SET_EXT_BUF_GROUP,
            decoder.inner.group,
        )?;
        Ok(decoder)
    }

    fn control<T>(&self, name: &'static str, cmd: i32, param: *mut T) -> Result<(), MppError> {
        self.inner.control(name, cmd, param)
    }

    /// Submits one access unit; MPP copies it, so `data` may be reused.
    pub fn put(&mut self, data: &[u8], pts: i64) -> Result<Put, MppError> {
        let lib = &self.inner.lib;
        let p = self.inner.packet;
        let data_ptr = data.as_ptr() as *mut c_void;
        // SAFETY: the packet is ours; MPP reads `data` during the call only.
        let code = unsafe {
            (lib.packet_set_data)(p, data_ptr);
            (lib.packet_set_size)(p, data.len());
            (lib.packet_set_pos)(p, data_ptr);
            (lib.packet_set_length)(p, data.len());
            (lib.packet_set_pts)(p, pts);
            match (*self.inner.api).decode_put_packet {
                Some(put) => put(self.inner.ctx, p),
                None => -1,
            }
        };
        match code {
            0 => Ok(Put::Taken),
            sys::ERR_BUFFER_FULL => Ok(Put::Full),
            code => Err(MppError {
                call: "decode_put_packet",
                code,
            }),
        }
    }

    /// The next decoded picture, if one is ready. Info changes are handled
    /// here (group resized to `buffers` frames of the new size, unless the
    /// new size exceeds `max`: [`PictureError::Oversize`]); EOS and broken
    /// frames are deinit'ed and skipped.
    pub fn next_picture(&mut self, max: (u32, u32)) -> Result<Option<MppPicture>, PictureError> {
        let lib = self.inner.lib.clone();
        loop {
            let mut frame: MppFrame = ptr::null_mut();
            // SAFETY: the vtable and context from mpp_create.
            let code = unsafe {
                match (*self.inner.api).decode_get_frame {
                    Some(get) => get(self.inner.ctx, &mut frame),
                    None => -1,
                }
            };
            if code == sys::ERR_TIMEOUT || (code == 0 && frame.is_null()) {
                return Ok(None);
            }
            check("decode_get_frame", code)?;
            // SAFETY: a non-NULL frame from decode_get_frame; each branch
            // below deinits it exactly once or hands it to an MppPicture.
            unsafe {
                if (lib.frame_get_info_change)(frame) != 0 {
                    let g = Geometry {
                        width: (lib.frame_get_width)(frame),
                        height: (lib.frame_get_height)(frame),
                        hor_stride: (lib.frame_get_hor_stride)(frame),
                        ver_stride: (lib.frame_get_ver_stride)(frame),
                        buf_size: (lib.frame_get_buf_size)(frame),
                    };
                    let result = self.apply_info_change(g, max);
                    (lib.frame_deinit)(&mut frame);
                    result?;
                    continue;
                }
                let broken =
                    (lib.frame_get_errinfo)(frame) != 0 || (lib.frame_get_discard)(frame) != 0;
                let buffer = (lib.frame_get_buffer)(frame);
                if (lib.frame_get_eos)(frame) != 0 || broken || buffer.is_null() {
                    if broken {
                        self.errors += 1;
                    }
                    (lib.frame_deinit)(&mut frame);
                    continue;
                }
                let geometry = self.geometry.unwrap_or_default();
                let fd = (lib.buffer_get_fd)(buffer, TAG.as_ptr());
                return Ok(Some(MppPicture {
                    inner: self.inner.clone(),
                    fd,
                    dma: DmaBuf {
                        fd,
                        source: self.id,
                        generation: self.generation,
                    },
                    ptr: (lib.buffer_get_ptr)(buffer, TAG.as_ptr()) as *const u8,
                    pts: (lib.frame_get_pts)(frame),
                    geometry,
                    frame,
                }));
            }
        }
    }

    /// Sizes the group for the stream's new geometry, after checking it
    /// against `max`: the stream declares the size, so an oversize one is
    /// refused before any buffer is configured (and MPP, not told the info
    /// change is ready, outputs nothing until the next reset).
    fn apply_info_change(&mut self, g: Geometry, max: (u32, u32)) -> Result<(), PictureError> {
        if g.width > max.0 || g.height > max.1 {
            return Err(PictureError::Oversize(Oversize { geometry: g, max }));
        }
        let lib = &self.inner.lib;
        // SAFETY: our group; clear only frees buffers nobody holds.
        unsafe {
            check(
                "mpp_buffer_group_clear",
                (lib.buffer_group_clear)(self.inner.group),
            )?;
            check(
                "mpp_buffer_group_limit_config",
                (lib.buffer_group_limit_config)(self.inner.group, g.buf_size, self.buffers as i32),
            )?;
        }
        self.geometry = Some(g);
        self.generation = self.generation.wrapping_add(1);
        self.control(
            "MPP_DEC_SET_INFO_CHANGE_READY",
            sys::DEC_SET_INFO_CHANGE_READY,
            ptr::null_mut::<c_void>(),
        )?;
        Ok(())
    }

    /// Drops everything queued inside the decoder (after a reconnect or a
    /// lost packet); the context, group and pictures already out stay valid.
    pub fn reset(&mut self) -> Result<(), MppError> {
        // SAFETY: the vtable and context from mpp_create.
        let code = unsafe {
            match (*self.inner.api).reset {
                Some(reset) => reset(self.inner.ctx),
                None => -1,
            }
        };
        check("reset", code)
    }

    /// The geometry of the current stream, once known.
    pub fn geometry(&self) -> Option<Geometry> {
        self.geometry
    }
}
