//! RGA: NV12 decoder pictures to the NPU's RGB input, letterboxed, in
//! hardware, between dma-bufs (no CPU copy).
//!
//! librga's im2d API is C++ with C entry points; only the `_t` functions
//! and `improcess` are real symbols (`imresize`, `imfill`, `wrapbuffer_fd`
//! are macros). Buffers are imported once with `importbuffer_fd` and
//! released at teardown (the pairing rockchip-api.md gives): an
//! [`RgaBuffer`] is that import, released by its `Drop`. `rga_buffer_t` is
//! passed and returned by value; vigil never reads its fields, so it is an
//! opaque, 8-aligned 96-byte value, which the C ABI passes the same way on
//! x86-64 and aarch64 (a composite over 16 bytes goes by reference).
//!
//! vigil asks RGA only to scale and convert (`improcess`), never to fill:
//! on the RK3588 only the RGA2 core fills, and RGA2 reaches only memory
//! below 4 GiB, which the NPU's input buffer (allocated by librknnrt) need
//! not be on a board with more RAM. The two RGA3 cores scale and convert at
//! any address; the letterbox border is written by the CPU instead, once
//! per picture geometry (`npu`). The decoder's buffers come from a DMA32
//! group anyway (`mpp`). RGA3 wants YUV width strides aligned to 16, which
//! `npu` checks before importing a picture.

use super::loader::{Lib, LoadError};
use crate::detect::letterbox::Letterbox;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// The library's file name.
pub const LIBRARY: &str = "librga.so";
/// `RK_FORMAT_RGB_888`.
pub const FORMAT_RGB_888: i32 = 0x200;
/// `RK_FORMAT_YCbCr_420_SP` (NV12).
pub const FORMAT_NV12: i32 = 0xA00;
/// `IM_SYNC`.
const IM_SYNC: i32 = 0x80000;

/// `rga_buffer_t`, opaque.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
pub struct RgaBufferT([u8; 96]);

/// `im_rect`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImRect {
    /// Left.
    pub x: i32,
    /// Top.
    pub y: i32,
    /// Width.
    pub width: i32,
    /// Height.
    pub height: i32,
}

/// `im_handle_param_t`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct HandleParam {
    width: u32,
    height: u32,
    format: u32,
}

const _: () = {
    assert!(std::mem::size_of::<RgaBufferT>() == 96);
    assert!(std::mem::size_of::<ImRect>() == 16);
    assert!(std::mem::size_of::<HandleParam>() == 12);
};

/// Every RGA function vigil calls, loaded once.
#[allow(missing_docs)]
pub struct RgaLib {
    pub lib: Lib,
    importbuffer_fd: unsafe extern "C" fn(i32, *mut HandleParam) -> u32,
    releasebuffer_handle: unsafe extern "C" fn(u32) -> i32,
    wrapbuffer_handle_t: unsafe extern "C" fn(u32, i32, i32, i32, i32, i32) -> RgaBufferT,
    improcess: unsafe extern "C" fn(
        RgaBufferT,
        RgaBufferT,
        RgaBufferT,
        ImRect,
        ImRect,
        ImRect,
        i32,
    ) -> i32,
}

impl RgaLib {
    /// Loads the library (from `dir`, or the loader's path) and every symbol.
    pub fn load(dir: Option<&Path>) -> Result<RgaLib, LoadError> {
        let lib = Lib::open(dir, LIBRARY)?;
        // SAFETY: each type below is the C signature in rockchip-api.md.
        unsafe {
            Ok(RgaLib {
                importbuffer_fd: lib.sym("importbuffer_fd")?,
                releasebuffer_handle: lib.sym("releasebuffer_handle")?,
                wrapbuffer_handle_t: lib.sym("wrapbuffer_handle_t")?,
                improcess: lib.sym("improcess")?,
                lib,
            })
        }
    }
}

/// An RGA call that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgaError {
    /// The call.
    pub call: &'static str,
    /// Its status.
    pub status: i32,
}

impl fmt::Display for RgaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RGA {} failed with status {}", self.call, self.status)
    }
}

impl std::error::Error for RgaError {}

/// `IM_STATUS_NOERROR` is 2 and `IM_STATUS_SUCCESS` 1.
fn check(call: &'static str, status: i32) -> Result<(), RgaError> {
    if status == 1 || status == 2 {
        Ok(())
    } else {
        Err(RgaError { call, status })
    }
}

/// A dma-buf imported into RGA once; released on drop.
pub struct RgaBuffer {
    lib: Arc<RgaLib>,
    handle: u32,
    buffer: RgaBufferT,
    width: i32,
    height: i32,
}

impl RgaBuffer {
    /// Imports `fd` holding a `width` x `height` picture of `format` with
    /// the given strides (pixels per row, rows per plane).
    pub fn import(
        lib: Arc<RgaLib>,
        fd: i32,
        (width, height): (u32, u32),
        (wstride, hstride): (u32, u32),
        format: i32,
    ) -> Result<RgaBuffer, RgaError> {
        let mut param = HandleParam {
            width: wstride,
            height: hstride,
            format: format as u32,
        };
        // SAFETY: `fd` is a live dma-buf of the caller's; `param` outlives the call.
        let handle = unsafe { (lib.importbuffer_fd)(fd, &mut param) };
        if handle == 0 {
            return Err(RgaError {
                call: "importbuffer_fd",
                status: 0,
            });
        }
        let (w, h) = (width as i32, height as i32);
        // SAFETY: a handle just imported; plain values.
        let buffer = unsafe {
            (lib.wrapbuffer_handle_t)(handle, w, h, wstride as i32, hstride as i32, format)
        };
        Ok(RgaBuffer {
            lib,
            handle,
            buffer,
            width: w,
            height: h,
        })
    }

    /// Scales `src` into `dst_rect` of this buffer, converting NV12 to
    /// RGB, synchronously; the rest of the buffer is left as it is (the
    /// caller writes the letterbox border, see `npu`).
    pub fn scale_into(&mut self, src: &RgaBuffer, dst_rect: ImRect) -> Result<(), RgaError> {
        let src_rect = ImRect {
            x: 0,
            y: 0,
            width: src.width,
            height: src.height,
        };
        // SAFETY: both buffers are live imports; `pat` is unused (usage has
        // no pattern flags beyond IM_SYNC), passed all-zero as librga does.
        unsafe {
            check(
                "improcess",
                (self.lib.improcess)(
                    src.buffer,
                    self.buffer,
                    RgaBufferT([0; 96]),
                    src_rect,
                    dst_rect,
                    ImRect::default(),
                    IM_SYNC,
                ),
            )
        }
    }
}

impl Drop for RgaBuffer {
    fn drop(&mut self) {
        // SAFETY: the handle from importbuffer_fd, released once.
        unsafe {
            (self.lib.releasebuffer_handle)(self.handle);
        }
    }
}

/// Where a `src_w` x `src_h` picture goes inside a `dst_w` x `dst_h` model
/// input: exactly [`Letterbox::fit`]'s geometry, so [`Letterbox::undo`] maps
/// the NPU's boxes back as it does the CPU's.
pub fn letterbox_rect(src_w: u32, src_h: u32, dst_w: u32, dst_h: u32) -> ImRect {
    let l = Letterbox::fit(src_w, src_h, dst_w, dst_h);
    let w = (src_w.max(1) as f32 * l.scale).round() as i32;
    let h = (src_h.max(1) as f32 * l.scale).round() as i32;
    ImRect {
        x: l.pad_x as i32,
        y: l.pad_y as i32,
        width: w.clamp(1, dst_w as i32),
        height: h.clamp(1, dst_h as i32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letterbox_keeps_aspect_and_centres() {
        assert_eq!(
            letterbox_rect(640, 360, 640, 640),
            ImRect {
                x: 0,
                y: 140,
                width: 640,
                height: 360
            }
        );
        assert_eq!(
            letterbox_rect(1080, 1920, 640, 640),
            ImRect {
                x: 140,
                y: 0,
                width: 360,
                height: 640
            }
        );
        let r = letterbox_rect(1920, 1080, 640, 640);
        assert_eq!((r.width, r.height), (640, 360));
    }
}
