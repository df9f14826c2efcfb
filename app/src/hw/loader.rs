//! Opening a Rockchip library at run time and taking its symbols, with
//! errors that name the library and the symbol.
//!
//! The libraries are loaded with `dlopen` rather than linked so that one
//! aarch64 binary runs on boards with and without the NPU runtime, the CI
//! builds without Rockchip's proprietary files, and the tests can load C
//! doubles of the same names (docs/decisions and rockchip-api.md say why).
//! Every function pointer is copied out once at load time; the `Library`
//! stays alive in an `Arc` beside them for as long as any pointer is used.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a library could not be used.
#[derive(Debug)]
pub enum LoadError {
    /// `dlopen` failed (not installed, wrong architecture...).
    Open {
        /// The file name or path tried.
        library: String,
        /// What the dynamic loader said.
        reason: String,
    },
    /// The library lacks a symbol vigil calls.
    Symbol {
        /// The library.
        library: String,
        /// The missing symbol.
        symbol: &'static str,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Open { library, reason } => write!(f, "cannot load {library}: {reason}"),
            LoadError::Symbol { library, symbol } => {
                write!(
                    f,
                    "{library} has no symbol `{symbol}` (a different version?)"
                )
            }
        }
    }
}

impl std::error::Error for LoadError {}

/// An open library.
#[derive(Clone)]
pub struct Lib {
    name: String,
    lib: Arc<libloading::Library>,
}

impl Lib {
    /// Opens `file` (e.g. `librga.so`) from `dir` when given, else through
    /// the dynamic loader's search path.
    pub fn open(dir: Option<&Path>, file: &str) -> Result<Lib, LoadError> {
        let path: PathBuf = match dir {
            Some(d) => d.join(file),
            None => PathBuf::from(file),
        };
        let name = path.display().to_string();
        // SAFETY: loading runs the library's initialisers; these are the
        // vendor's libraries (or our test doubles), trusted like any
        // shared library the binary could have been linked against.
        let lib = unsafe { libloading::Library::new(&path) }.map_err(|e| LoadError::Open {
            library: name.clone(),
            reason: e.to_string(),
        })?;
        Ok(Lib {
            name,
            lib: Arc::new(lib),
        })
    }

    /// The library's name as opened.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Copies out the function pointer `symbol`.
    ///
    /// # Safety
    /// `T` must be the symbol's true C type (an `unsafe extern "C" fn`).
    pub unsafe fn sym<T: Copy>(&self, symbol: &'static str) -> Result<T, LoadError> {
        let mut name = Vec::with_capacity(symbol.len() + 1);
        name.extend_from_slice(symbol.as_bytes());
        name.push(0);
        // SAFETY: the caller promises `T` matches the symbol's type.
        unsafe { self.lib.get::<T>(&name) }
            .map(|s| *s)
            .map_err(|_| LoadError::Symbol {
                library: self.name.clone(),
                symbol,
            })
    }
}

impl fmt::Debug for Lib {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lib").field("name", &self.name).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_library_and_the_symbol() {
        let e = Lib::open(Some(Path::new("/nonexistent")), "librga.so").unwrap_err();
        assert!(e.to_string().contains("/nonexistent/librga.so"), "{e}");
        let libc = Lib::open(None, "libc.so.6").expect("libc");
        // SAFETY: getpid's real type.
        let getpid: unsafe extern "C" fn() -> i32 = unsafe { libc.sym("getpid") }.unwrap();
        // SAFETY: getpid has no preconditions.
        assert_eq!(unsafe { getpid() } as u32, std::process::id());
        // SAFETY: never called.
        let missing = unsafe { libc.sym::<unsafe extern "C" fn()>("rknn_init") }.unwrap_err();
        assert_eq!(
            missing.to_string(),
            "libc.so.6 has no symbol `rknn_init` (a different version?)"
        );
    }
}
