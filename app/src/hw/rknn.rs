//! An RKNN model on one NPU core with zero-copy input and output memory.
//!
//! One [`RknnModel`] per NPU core in use, created at start and kept for the
//! life of the process: `rknn_destroy` leaves about 40 MB behind per model
//! (rockchip-linux/rknn-toolkit2 #284), so contexts are never churned. The
//! input and every output are `rknn_create_mem` buffers bound once with
//! `rknn_set_io_mem`; per picture RGA (or the CPU) writes the input in
//! place, [`RknnModel::run`] runs, and the outputs are read in place as int8
//! with their affine quantisation — no `rknn_outputs_get`, so no
//! `rknn_outputs_release` to forget (airockchip/rknn-toolkit2 #207).
//! Each output is bound with its native attribute (`NATIVE_OUTPUT_ATTR`,
//! unchanged) when that is int8 NC1HWC2 with affine quantisation — the
//! NPU's own layout, so the runtime converts nothing per inference — and
//! read in place as [`RawTensor::I8Nc1hwc2`]; any other output (native NCHW
//! or NHWC, not int8, or a native shape that does not match `OUTPUT_ATTR`)
//! is bound with its `OUTPUT_ATTR` as NCHW int8, so the runtime converts,
//! and read as [`RawTensor::I8`]. Either way [`RknnModel::output`] gives the
//! logical NCHW dims of `OUTPUT_ATTR`, and the same postprocessing code as
//! the CPU backend reads them ([`crate::detect::yolo`]).

use super::rknn_sys::{self as sys, InOutNum, RknnContext, RknnLib, TensorAttr, TensorMem};
use crate::detect::yolo::RawTensor;
use std::ffi::c_void;
use std::fmt;
use std::sync::Arc;

/// `RKNN_QUERY_OUTPUT_ATTR`.
const QUERY_OUTPUT_ATTR: i32 = 2;
/// Most outputs a model may have (YOLOv8 from the zoo has 9).
pub const MAX_OUTPUTS: usize = 12;

/// How a bound output's memory is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// NCHW int8, converted by the runtime.
    Nchw,
    /// The native NC1HWC2 int8, read in place.
    Nc1hwc2 {
        channels: usize,
        height: usize,
        width: usize,
        w_stride: usize,
        c2: usize,
    },
}

/// One bound output.
struct Output {
    /// `OUTPUT_ATTR`: the logical NCHW shape (dims `[N, C, H, W]`).
    logical: TensorAttr,
    /// The attribute bound with `rknn_set_io_mem`: `logical` as NCHW int8,
    /// or the native attribute unchanged.
    bound: TensorAttr,
    layout: Layout,
    /// Bytes of `mem` (as created).
    bytes: u32,
    mem: *mut TensorMem,
}

/// The NC1HWC2 layout of an output whose native attribute is int8 NC1HWC2
/// with affine quantisation and agrees with its logical NCHW attribute
/// (same H and W, C within C1 x C2), and the bytes its memory needs; `None`
/// when the output should be bound NCHW instead.
fn native_layout(logical: &TensorAttr, native: &TensorAttr) -> Option<(Layout, u32)> {
    if native.kind != sys::TENSOR_INT8
        || native.fmt != sys::FORMAT_NC1HWC2
        || native.qnt_type != sys::QNT_AFFINE
        || native.n_dims != 5
        || logical.n_dims != 4
    {
        return None;
    }
    // Native [N, C1, H, W, C2]; logical [N, C, H, W].
    let d = &native.dims;
    let (n, c1, height, width, c2) = (d[0], d[1], d[2], d[3], d[4]);
    let d = &logical.dims;
    let (ln, channels, lh, lw) = (d[0], d[1], d[2], d[3]);
    let w_stride = if native.w_stride == 0 {
        width
    } else {
        native.w_stride
    };
    if n != 1
        || ln != 1
        || c2 == 0
        || (height, width) != (lh, lw)
        || channels == 0
        || channels.div_ceil(c2) != c1
        || w_stride < width
    {
        return None;
    }
    let need = [c1, height, w_stride, c2]
        .into_iter()
        .try_fold(1u32, u32::checked_mul)?;
    let bytes = need.max(native.size_with_stride).max(native.size);
    Some((
        Layout::Nc1hwc2 {
            channels: channels as usize,
            height: height as usize,
            width: width as usize,
            w_stride: w_stride as usize,
            c2: c2 as usize,
        },
        bytes,
    ))
}

/// An RKNN call that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RknnError {
    /// The call.
    pub call: &'static str,
    /// Its return code (or -1 for a refused model shape).
    pub code: i32,
    /// Context.
    pub detail: String,
}

impl fmt::Display for RknnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RKNN {} failed with {}", self.call, self.code)?;
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

impl std::error::Error for RknnError {}

fn check(call: &'static str, code: i32) -> Result<(), RknnError> {
    if code == 0 {
        Ok(())
    } else {
        Err(RknnError {
            call,
            code,
            detail: String::new(),
        })
    }
}

/// A loaded model with its input and output memory bound.
pub struct RknnModel {
    lib: Arc<RknnLib>,
    ctx: RknnContext,
    input_attr: TensorAttr,
    input: *mut TensorMem,
    outputs: heapless::Vec<Output, MAX_OUTPUTS>,
}

// SAFETY: a context is used by one inference worker at a time (the tensor
// pool lends it); RKNN allows a context to move between threads.
unsafe impl Send for RknnModel {}

impl RknnModel {
    /// Loads `model` (the bytes of a `.rknn` file) on the cores in
    /// `core_mask` (1, 2, 4: one core each) and binds its memory.
    pub fn load(lib: Arc<RknnLib>, model: &[u8], core_mask: i32) -> Result<RknnModel, RknnError> {
        let mut ctx: RknnContext = 0;
        let len = u32::try_from(model.len()).map_err(|_| RknnError {
            call: "rknn_init",
            code: -1,
            detail: "model over 4 GiB".into(),
        })?;
        // SAFETY: the runtime reads `len` bytes of `model` during the call.
        check("rknn_init", unsafe {
            (lib.init)(
                &mut ctx,
                model.as_ptr() as *mut c_void,
                len,
                0,
                std::ptr::null_mut(),
            )
        })?;
        // From here `Drop` owns the context and whatever memory is bound.
        let mut m = RknnModel {
            lib: lib.clone(),
            ctx,
            input_attr: TensorAttr::default(),
            input: std::ptr::null_mut(),
            outputs: heapless::Vec::new(),
        };
        // SAFETY: a live context; each query fills a struct of the size given.
        unsafe {
            check("rknn_set_core_mask", (lib.set_core_mask)(ctx, core_mask))?;
            let mut io = InOutNum::default();
            check(
                "rknn_query(IN_OUT_NUM)",
                (lib.query)(
                    ctx,
                    sys::QUERY_IN_OUT_NUM,
                    (&mut io as *mut InOutNum).cast(),
                    size_of::<InOutNum>() as u32,
                ),
            )?;
            if io.n_input != 1 || io.n_output as usize > MAX_OUTPUTS || io.n_output == 0 {
                return Err(RknnError {
                    call: "rknn_query(IN_OUT_NUM)",
                    code: -1,
                    detail: format!(
                        "{} inputs and {} outputs; vigil takes 1 input and 1..={MAX_OUTPUTS} outputs",
                        io.n_input, io.n_output
                    ),
                });
            }
            // Zero-copy input: NHWC u8, as the native input attribute says
            // (the NPU normalises and quantises).
            let mut attr = TensorAttr::default();
            check(
                "rknn_query(NATIVE_INPUT_ATTR)",
                (lib.query)(
                    ctx,
                    sys::QUERY_NATIVE_INPUT_ATTR,
                    (&mut attr as *mut TensorAttr).cast(),
                    size_of::<TensorAttr>() as u32,
                ),
            )?;
            attr.kind = sys::TENSOR_UINT8;
            attr.fmt = sys::FORMAT_NHWC;
            m.input = (lib.create_mem)(ctx, attr.size_with_stride.max(attr.size));
            if m.input.is_null() {
                return Err(RknnError {
                    call: "rknn_create_mem",
                    code: -1,
                    detail: "input".into(),
                });
            }
            check(
                "rknn_set_io_mem(input)",
                (lib.set_io_mem)(ctx, m.input, &mut attr),
            )?;
            m.input_attr = attr;
            for i in 0..io.n_output {
                let mut logical = TensorAttr {
                    index: i,
                    ..TensorAttr::default()
                };
                check(
                    "rknn_query(OUTPUT_ATTR)",
                    (lib.query)(
                        ctx,
                        QUERY_OUTPUT_ATTR,
                        (&mut logical as *mut TensorAttr).cast(),
                        size_of::<TensorAttr>() as u32,
                    ),
                )?;
                let mut native = TensorAttr {
                    index: i,
                    ..TensorAttr::default()
                };
                check(
                    "rknn_query(NATIVE_OUTPUT_ATTR)",
                    (lib.query)(
                        ctx,
                        sys::QUERY_NATIVE_OUTPUT_ATTR,
                        (&mut native as *mut TensorAttr).cast(),
                        size_of::<TensorAttr>() as u32,
                    ),
                )?;
                let (bound, layout, bytes) = match native_layout(&logical, &native) {
                    // In place, in the NPU's layout: bound unchanged.
                    Some((layout, bytes)) => (native, layout, bytes),
                    // The runtime converts to NCHW int8.
                    None => {
                        let mut attr = logical;
                        attr.kind = sys::TENSOR_INT8;
                        attr.fmt = sys::FORMAT_NCHW;
                        (attr, Layout::Nchw, attr.n_elems)
                    }
                };
                let mem = (lib.create_mem)(ctx, bytes);
                if mem.is_null() {
                    return Err(RknnError {
                        call: "rknn_create_mem",
                        code: -1,
                        detail: format!("output {i}"),
                    });
                }
                // Recorded before binding, so Drop frees it either way.
                let _ = m.outputs.push(Output {
                    logical,
                    bound,
                    layout,
                    bytes,
                    mem,
                });
                let last = m.outputs.len() - 1;
                check(
                    "rknn_set_io_mem(output)",
                    (lib.set_io_mem)(ctx, mem, &mut m.outputs[last].bound),
                )?;
            }
        }
        Ok(m)
    }

    /// The input picture size the model takes (width, height) and channels.
    pub fn input_shape(&self) -> (u32, u32, u32) {
        let d = &self.input_attr.dims;
        // NHWC: [1, H, W, C].
        (d[2], d[1], d[3])
    }

    /// The input buffer's dma-buf fd, for RGA to write into.
    pub fn input_fd(&self) -> i32 {
        // SAFETY: bound in `load`, freed only in Drop.
        unsafe { (*self.input).fd }
    }

    /// The input buffer for the CPU to write into (NHWC u8).
    pub fn input_mut(&mut self) -> &mut [u8] {
        // SAFETY: `size` bytes mapped at `virt_addr` by the runtime, alive
        // until Drop; `&mut self` makes this the only view.
        unsafe {
            let mem = &*self.input;
            std::slice::from_raw_parts_mut(mem.virt_addr.cast::<u8>(), mem.size as usize)
        }
    }

    /// Writes the CPU's cached writes to the input buffer back to memory,
    /// so the NPU (and RGA writing after this) see them.
    pub fn flush_input(&mut self) -> Result<(), RknnError> {
        // SAFETY: a live context with its input memory bound.
        check("rknn_mem_sync(input)", unsafe {
            (self.lib.mem_sync)(self.ctx, self.input, sys::SYNC_TO_DEVICE)
        })
    }

    /// Runs the model on what is in the input buffer (written by RGA, or by
    /// the CPU followed by [`RknnModel::flush_input`]).
    pub fn run(&mut self) -> Result<(), RknnError> {
        let lib = &self.lib;
        // SAFETY: a live context with its memory bound.
        unsafe {
            check("rknn_run", (lib.run)(self.ctx, std::ptr::null_mut()))?;
            for o in &self.outputs {
                check(
                    "rknn_mem_sync(output)",
                    (lib.mem_sync)(self.ctx, o.mem, sys::SYNC_FROM_DEVICE),
                )?;
            }
        }
        Ok(())
    }

    /// Output `i` in place, with its logical shape (NCHW dims of
    /// `OUTPUT_ATTR`, whatever layout the memory is in).
    pub fn output(&self, i: usize) -> Option<(RawTensor<'_>, &[u32])> {
        let o = self.outputs.get(i)?;
        // SAFETY: `bytes` int8 values mapped at `virt_addr` (created with
        // that size in `load`), alive until Drop.
        let data = unsafe {
            std::slice::from_raw_parts((*o.mem).virt_addr.cast::<i8>(), o.bytes as usize)
        };
        let (zero_point, scale) = (o.bound.zp, o.bound.scale);
        let tensor = match o.layout {
            Layout::Nchw => RawTensor::I8 {
                data,
                zero_point,
                scale,
            },
            Layout::Nc1hwc2 {
                channels,
                height,
                width,
                w_stride,
                c2,
            } => RawTensor::I8Nc1hwc2 {
                data,
                zero_point,
                scale,
                channels,
                height,
                width,
                w_stride,
                c2,
            },
        };
        Some((tensor, &o.logical.dims[..o.logical.n_dims.min(16) as usize]))
    }

    /// Whether output `i` is read in the NPU's native NC1HWC2 layout (no
    /// conversion by the runtime).
    pub fn output_is_native(&self, i: usize) -> bool {
        self.outputs
            .get(i)
            .is_some_and(|o| matches!(o.layout, Layout::Nc1hwc2 { .. }))
    }

    /// Bytes of input and output memory bound to the context.
    pub fn bound_bytes(&self) -> usize {
        // SAFETY: bound in `load`, freed only in Drop.
        let input = unsafe { (*self.input).size as usize };
        input + self.outputs.iter().map(|o| o.bytes as usize).sum::<usize>()
    }

    /// Number of outputs.
    pub fn outputs(&self) -> usize {
        self.outputs.len()
    }
}

impl Drop for RknnModel {
    fn drop(&mut self) {
        let lib = &self.lib;
        // SAFETY: each memory was created on this context and is destroyed
        // once, before the context (rockchip-api.md's pairing rule).
        unsafe {
            while let Some(o) = self.outputs.pop() {
                (lib.destroy_mem)(self.ctx, o.mem);
            }
            if !self.input.is_null() {
                (lib.destroy_mem)(self.ctx, self.input);
            }
            (lib.destroy)(self.ctx);
        }
    }
}
