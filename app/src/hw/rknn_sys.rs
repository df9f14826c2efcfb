//! The part of librknnrt's C API (RKNN API 2.x) vigil calls: types with
//! their layouts asserted against rockchip-api.md, constants, and a table of
//! function pointers loaded at start.

use super::loader::{Lib, LoadError};
use std::ffi::{c_char, c_void};
use std::path::Path;

/// The library's file name.
pub const LIBRARY: &str = "librknnrt.so";

/// `rknn_context` (u64 on aarch64).
pub type RknnContext = u64;

/// `RKNN_QUERY_IN_OUT_NUM`.
pub const QUERY_IN_OUT_NUM: i32 = 0;
/// `RKNN_QUERY_SDK_VERSION`.
pub const QUERY_SDK_VERSION: i32 = 5;
/// `RKNN_QUERY_NATIVE_INPUT_ATTR`.
pub const QUERY_NATIVE_INPUT_ATTR: i32 = 8;
/// `RKNN_QUERY_NATIVE_OUTPUT_ATTR`.
pub const QUERY_NATIVE_OUTPUT_ATTR: i32 = 9;
/// `RKNN_TENSOR_INT8`.
pub const TENSOR_INT8: i32 = 2;
/// `RKNN_TENSOR_UINT8`.
pub const TENSOR_UINT8: i32 = 3;
/// `RKNN_TENSOR_NCHW`.
pub const FORMAT_NCHW: i32 = 0;
/// `RKNN_TENSOR_NHWC`.
pub const FORMAT_NHWC: i32 = 1;
/// `RKNN_TENSOR_NC1HWC2`.
pub const FORMAT_NC1HWC2: i32 = 2;
/// `RKNN_TENSOR_QNT_AFFINE_ASYMMETRIC`.
pub const QNT_AFFINE: i32 = 2;
/// `RKNN_MEMORY_SYNC_FROM_DEVICE`.
pub const SYNC_FROM_DEVICE: i32 = 2;
/// `RKNN_MEMORY_SYNC_TO_DEVICE`.
pub const SYNC_TO_DEVICE: i32 = 1;

/// `rknn_input_output_num`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct InOutNum {
    /// Inputs.
    pub n_input: u32,
    /// Outputs.
    pub n_output: u32,
}

/// `rknn_tensor_attr` (376 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TensorAttr {
    /// Tensor index.
    pub index: u32,
    /// Dimensions used in `dims`.
    pub n_dims: u32,
    /// Dimensions.
    pub dims: [u32; 16],
    /// NUL-terminated name.
    pub name: [c_char; 256],
    /// Elements.
    pub n_elems: u32,
    /// Bytes.
    pub size: u32,
    /// `rknn_tensor_format`.
    pub fmt: i32,
    /// `rknn_tensor_type`.
    pub kind: i32,
    /// `rknn_tensor_qnt_type`.
    pub qnt_type: i32,
    /// DFP fractional length.
    pub fl: i8,
    /// Affine zero point.
    pub zp: i32,
    /// Affine scale.
    pub scale: f32,
    /// Row stride in elements.
    pub w_stride: u32,
    /// Bytes including strides.
    pub size_with_stride: u32,
    /// Bypass conversion.
    pub pass_through: u8,
    /// Column stride.
    pub h_stride: u32,
}

impl Default for TensorAttr {
    fn default() -> Self {
        // SAFETY: a plain C struct of integers, floats and arrays: all-zero
        // is a valid value.
        unsafe { std::mem::zeroed() }
    }
}

impl std::fmt::Debug for TensorAttr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TensorAttr")
            .field("index", &self.index)
            .field("dims", &&self.dims[..self.n_dims.min(16) as usize])
            .field("fmt", &self.fmt)
            .field("type", &self.kind)
            .field("zp", &self.zp)
            .field("scale", &self.scale)
            .finish()
    }
}

/// `rknn_tensor_mem` (40 bytes).
#[repr(C)]
#[derive(Debug)]
pub struct TensorMem {
    /// CPU address.
    pub virt_addr: *mut c_void,
    /// Device address.
    pub phys_addr: u64,
    /// dma-buf fd.
    pub fd: i32,
    /// Offset in the fd.
    pub offset: i32,
    /// Bytes.
    pub size: u32,
    /// Flags.
    pub flags: u32,
    /// Runtime's private data.
    pub priv_data: *mut c_void,
}

/// `rknn_output` (24 bytes), for `rknn_outputs_get`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Output {
    /// Convert to f32.
    pub want_float: u8,
    /// `buf` is the caller's.
    pub is_prealloc: u8,
    /// Output index.
    pub index: u32,
    /// Data.
    pub buf: *mut c_void,
    /// Bytes.
    pub size: u32,
}

/// `rknn_input` (32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Input {
    /// Input index.
    pub index: u32,
    /// Data.
    pub buf: *mut c_void,
    /// Bytes.
    pub size: u32,
    /// Bypass conversion.
    pub pass_through: u8,
    /// `rknn_tensor_type`.
    pub kind: i32,
    /// `rknn_tensor_format`.
    pub fmt: i32,
}

const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<TensorAttr>() == 376);
    assert!(offset_of!(TensorAttr, dims) == 8);
    assert!(offset_of!(TensorAttr, name) == 72);
    assert!(offset_of!(TensorAttr, n_elems) == 328);
    assert!(offset_of!(TensorAttr, size) == 332);
    assert!(offset_of!(TensorAttr, fmt) == 336);
    assert!(offset_of!(TensorAttr, kind) == 340);
    assert!(offset_of!(TensorAttr, qnt_type) == 344);
    assert!(offset_of!(TensorAttr, fl) == 348);
    assert!(offset_of!(TensorAttr, zp) == 352);
    assert!(offset_of!(TensorAttr, scale) == 356);
    assert!(offset_of!(TensorAttr, w_stride) == 360);
    assert!(offset_of!(TensorAttr, size_with_stride) == 364);
    assert!(offset_of!(TensorAttr, pass_through) == 368);
    assert!(offset_of!(TensorAttr, h_stride) == 372);
    assert!(size_of::<TensorMem>() == 40);
    assert!(offset_of!(TensorMem, phys_addr) == 8);
    assert!(offset_of!(TensorMem, fd) == 16);
    assert!(offset_of!(TensorMem, offset) == 20);
    assert!(offset_of!(TensorMem, size) == 24);
    assert!(offset_of!(TensorMem, flags) == 28);
    assert!(offset_of!(TensorMem, priv_data) == 32);
    assert!(size_of::<Input>() == 32);
    assert!(offset_of!(Input, buf) == 8);
    assert!(offset_of!(Input, size) == 16);
    assert!(offset_of!(Input, pass_through) == 20);
    assert!(offset_of!(Input, kind) == 24);
    assert!(offset_of!(Input, fmt) == 28);
    assert!(size_of::<Output>() == 24);
    assert!(offset_of!(Output, index) == 4);
    assert!(offset_of!(Output, buf) == 8);
    assert!(offset_of!(Output, size) == 16);
};

/// Every RKNN function vigil calls, loaded once.
#[allow(missing_docs)]
pub struct RknnLib {
    pub lib: Lib,
    pub init: unsafe extern "C" fn(*mut RknnContext, *mut c_void, u32, u32, *mut c_void) -> i32,
    pub destroy: unsafe extern "C" fn(RknnContext) -> i32,
    pub query: unsafe extern "C" fn(RknnContext, i32, *mut c_void, u32) -> i32,
    pub set_core_mask: unsafe extern "C" fn(RknnContext, i32) -> i32,
    pub run: unsafe extern "C" fn(RknnContext, *mut c_void) -> i32,
    pub create_mem: unsafe extern "C" fn(RknnContext, u32) -> *mut TensorMem,
    pub destroy_mem: unsafe extern "C" fn(RknnContext, *mut TensorMem) -> i32,
    pub set_io_mem: unsafe extern "C" fn(RknnContext, *mut TensorMem, *mut TensorAttr) -> i32,
    pub mem_sync: unsafe extern "C" fn(RknnContext, *mut TensorMem, i32) -> i32,
}

impl RknnLib {
    /// Loads the library (from `dir`, or the loader's path) and every symbol.
    pub fn load(dir: Option<&Path>) -> Result<RknnLib, LoadError> {
        let lib = Lib::open(dir, LIBRARY)?;
        // SAFETY: each type below is the C signature in rockchip-api.md.
        unsafe {
            Ok(RknnLib {
                init: lib.sym("rknn_init")?,
                destroy: lib.sym("rknn_destroy")?,
                query: lib.sym("rknn_query")?,
                set_core_mask: lib.sym("rknn_set_core_mask")?,
                run: lib.sym("rknn_run")?,
                create_mem: lib.sym("rknn_create_mem")?,
                destroy_mem: lib.sym("rknn_destroy_mem")?,
                set_io_mem: lib.sym("rknn_set_io_mem")?,
                mem_sync: lib.sym("rknn_mem_sync")?,
                lib,
            })
        }
    }
}
