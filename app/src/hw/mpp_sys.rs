//! The part of librockchip_mpp's C API vigil calls: types, constants, the
//! `MppApi` vtable and a table of function pointers loaded at start.
//!
//! Hand-written from rockchip-api.md (mpp at ee946af) rather than generated:
//! a few dozen symbols do not justify bindgen and libclang in the build, and
//! every layout is asserted below against the reference's sizes and offsets.
//! Several documented names are macros, not symbols (`mpp_buffer_get_fd`,
//! `mpp_buffer_group_get_internal`...): the `_with_caller` forms are loaded.

use super::loader::{Lib, LoadError};
use std::ffi::{c_char, c_void};
use std::path::Path;

/// The library's file name.
pub const LIBRARY: &str = "librockchip_mpp.so";

/// `MPP_RET`: 0 is success.
pub type MppRet = i32;
/// `MppCtx`.
pub type MppCtx = *mut c_void;
/// `MppPacket`.
pub type MppPacket = *mut c_void;
/// `MppFrame`.
pub type MppFrame = *mut c_void;
/// `MppBuffer`.
pub type MppBuffer = *mut c_void;
/// `MppBufferGroup`.
pub type MppBufferGroup = *mut c_void;

/// `MPP_CTX_DEC`.
pub const MPP_CTX_DEC: i32 = 0;
/// `MPP_VIDEO_CodingAVC`.
pub const CODING_AVC: i32 = 7;
/// `MPP_VIDEO_CodingHEVC`.
pub const CODING_HEVC: i32 = 0x0100_0004;
/// `MPP_BUFFER_TYPE_DRM`.
pub const BUFFER_TYPE_DRM: i32 = 3;
/// `MPP_BUFFER_FLAGS_DMA32`: buffers below 4 GiB, which RGA2 needs.
pub const BUFFER_FLAGS_DMA32: i32 = 0x20_0000;
/// `MPP_BUFFER_INTERNAL` mode.
pub const BUFFER_MODE_INTERNAL: i32 = 0;
/// `MPP_SET_OUTPUT_TIMEOUT`.
pub const SET_OUTPUT_TIMEOUT: i32 = 0x20_0007;
/// `MPP_DEC_SET_EXT_BUF_GROUP`.
pub const DEC_SET_EXT_BUF_GROUP: i32 = 0x31_0002;
/// `MPP_DEC_SET_INFO_CHANGE_READY`.
pub const DEC_SET_INFO_CHANGE_READY: i32 = 0x31_0003;
/// `MPP_DEC_SET_DISABLE_ERROR`.
pub const DEC_SET_DISABLE_ERROR: i32 = 0x31_000B;
/// `MPP_DEC_SET_IMMEDIATE_OUT`.
pub const DEC_SET_IMMEDIATE_OUT: i32 = 0x31_000C;
/// `MPP_FMT_YUV420SP` (NV12).
pub const FMT_NV12: u32 = 0;
/// `MPP_ERR_TIMEOUT`.
pub const ERR_TIMEOUT: MppRet = -8;
/// `MPP_ERR_BUFFER_FULL`: the input queue (4 packets) is full.
pub const ERR_BUFFER_FULL: MppRet = -1012;

/// `MppApi`: the decoder's vtable (184 bytes).
#[repr(C)]
pub struct MppApi {
    /// Struct size.
    pub size: u32,
    /// API version.
    pub version: u32,
    /// `decode` (unused).
    pub decode: Option<unsafe extern "C" fn()>,
    /// `decode_put_packet(ctx, packet)`.
    pub decode_put_packet: Option<unsafe extern "C" fn(MppCtx, MppPacket) -> MppRet>,
    /// `decode_get_frame(ctx, &frame)`.
    pub decode_get_frame: Option<unsafe extern "C" fn(MppCtx, *mut MppFrame) -> MppRet>,
    /// encode, encode_put_frame, encode_get_packet, isp, isp_put_frame,
    /// isp_get_frame, poll, dequeue, enqueue (unused).
    pub unused: [Option<unsafe extern "C" fn()>; 9],
    /// `reset(ctx)`.
    pub reset: Option<unsafe extern "C" fn(MppCtx) -> MppRet>,
    /// `control(ctx, cmd, param)`.
    pub control: Option<unsafe extern "C" fn(MppCtx, i32, *mut c_void) -> MppRet>,
    /// Reserved.
    pub reserv: [u32; 16],
}

/// `MppBufferInfo` (40 bytes), for importing external buffers.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MppBufferInfo {
    /// `MppBufferType`.
    pub kind: u32,
    /// Bytes.
    pub size: usize,
    /// CPU address, if mapped.
    pub ptr: *mut c_void,
    /// Kernel handle.
    pub hnd: *mut c_void,
    /// dma-buf fd.
    pub fd: i32,
    /// Index in its group.
    pub index: i32,
}

const _: () = {
    assert!(std::mem::size_of::<MppApi>() == 184);
    assert!(std::mem::offset_of!(MppApi, decode_put_packet) == 16);
    assert!(std::mem::offset_of!(MppApi, decode_get_frame) == 24);
    assert!(std::mem::offset_of!(MppApi, reset) == 104);
    assert!(std::mem::offset_of!(MppApi, control) == 112);
    assert!(std::mem::offset_of!(MppApi, reserv) == 120);
    assert!(std::mem::size_of::<MppBufferInfo>() == 40);
    assert!(std::mem::offset_of!(MppBufferInfo, size) == 8);
    assert!(std::mem::offset_of!(MppBufferInfo, ptr) == 16);
    assert!(std::mem::offset_of!(MppBufferInfo, hnd) == 24);
    assert!(std::mem::offset_of!(MppBufferInfo, fd) == 32);
    assert!(std::mem::offset_of!(MppBufferInfo, index) == 36);
};

type FrameU32 = unsafe extern "C" fn(MppFrame) -> u32;

/// Every MPP function vigil calls, loaded once.
#[allow(missing_docs)]
pub struct MppLib {
    pub lib: Lib,
    pub create: unsafe extern "C" fn(*mut MppCtx, *mut *mut MppApi) -> MppRet,
    pub init: unsafe extern "C" fn(MppCtx, i32, i32) -> MppRet,
    pub destroy: unsafe extern "C" fn(MppCtx) -> MppRet,
    pub packet_init: unsafe extern "C" fn(*mut MppPacket, *mut c_void, usize) -> MppRet,
    pub packet_deinit: unsafe extern "C" fn(*mut MppPacket) -> MppRet,
    pub packet_set_data: unsafe extern "C" fn(MppPacket, *mut c_void),
    pub packet_set_pos: unsafe extern "C" fn(MppPacket, *mut c_void),
    pub packet_set_size: unsafe extern "C" fn(MppPacket, usize),
    pub packet_set_length: unsafe extern "C" fn(MppPacket, usize),
    pub packet_set_pts: unsafe extern "C" fn(MppPacket, i64),
    pub frame_deinit: unsafe extern "C" fn(*mut MppFrame) -> MppRet,
    pub frame_get_info_change: FrameU32,
    pub frame_get_eos: FrameU32,
    pub frame_get_errinfo: FrameU32,
    pub frame_get_discard: FrameU32,
    pub frame_get_width: FrameU32,
    pub frame_get_height: FrameU32,
    pub frame_get_hor_stride: FrameU32,
    pub frame_get_ver_stride: FrameU32,
    pub frame_get_fmt: FrameU32,
    pub frame_get_buf_size: unsafe extern "C" fn(MppFrame) -> usize,
    pub frame_get_pts: unsafe extern "C" fn(MppFrame) -> i64,
    pub frame_get_buffer: unsafe extern "C" fn(MppFrame) -> MppBuffer,
    pub buffer_group_get:
        unsafe extern "C" fn(*mut MppBufferGroup, i32, i32, *const c_char, *const c_char) -> MppRet,
    pub buffer_group_put: unsafe extern "C" fn(MppBufferGroup) -> MppRet,
    pub buffer_group_clear: unsafe extern "C" fn(MppBufferGroup) -> MppRet,
    pub buffer_group_limit_config: unsafe extern "C" fn(MppBufferGroup, usize, i32) -> MppRet,
    pub buffer_get_fd: unsafe extern "C" fn(MppBuffer, *const c_char) -> i32,
    pub buffer_get_ptr: unsafe extern "C" fn(MppBuffer, *const c_char) -> *mut c_void,
}

impl MppLib {
    /// Loads the library (from `dir`, or the loader's path) and every symbol.
    pub fn load(dir: Option<&Path>) -> Result<MppLib, LoadError> {
        let lib = Lib::open(dir, LIBRARY)?;
        // SAFETY: each type below is the C signature in rockchip-api.md.
        unsafe {
            Ok(MppLib {
                create: lib.sym("mpp_create")?,
                init: lib.sym("mpp_init")?,
                destroy: lib.sym("mpp_destroy")?,
                packet_init: lib.sym("mpp_packet_init")?,
                packet_deinit: lib.sym("mpp_packet_deinit")?,
                packet_set_data: lib.sym("mpp_packet_set_data")?,
                packet_set_pos: lib.sym("mpp_packet_set_pos")?,
                packet_set_size: lib.sym("mpp_packet_set_size")?,
                packet_set_length: lib.sym("mpp_packet_set_length")?,
                packet_set_pts: lib.sym("mpp_packet_set_pts")?,
                frame_deinit: lib.sym("mpp_frame_deinit")?,
                frame_get_info_change: lib.sym("mpp_frame_get_info_change")?,
                frame_get_eos: lib.sym("mpp_frame_get_eos")?,
                frame_get_errinfo: lib.sym("mpp_frame_get_errinfo")?,
                frame_get_discard: lib.sym("mpp_frame_get_discard")?,
                frame_get_width: lib.sym("mpp_frame_get_width")?,
                frame_get_height: lib.sym("mpp_frame_get_height")?,
                frame_get_hor_stride: lib.sym("mpp_frame_get_hor_stride")?,
                frame_get_ver_stride: lib.sym("mpp_frame_get_ver_stride")?,
                frame_get_fmt: lib.sym("mpp_frame_get_fmt")?,
                frame_get_buf_size: lib.sym("mpp_frame_get_buf_size")?,
                frame_get_pts: lib.sym("mpp_frame_get_pts")?,
                frame_get_buffer: lib.sym("mpp_frame_get_buffer")?,
                buffer_group_get: lib.sym("mpp_buffer_group_get")?,
                buffer_group_put: lib.sym("mpp_buffer_group_put")?,
                buffer_group_clear: lib.sym("mpp_buffer_group_clear")?,
                buffer_group_limit_config: lib.sym("mpp_buffer_group_limit_config")?,
                buffer_get_fd: lib.sym("mpp_buffer_get_fd_with_caller")?,
                buffer_get_ptr: lib.sym("mpp_buffer_get_ptr_with_caller")?,
                lib,
            })
        }
    }
}
