//! The `vigil` binary: parses the command line and hands over to the library.

use vigil::alloc_count::CountingAllocator;

// Counting costs one relaxed atomic per allocation and makes the
// "no allocation per frame" promise observable in production metrics.
#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn main() {
    vigil::logger::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(vigil::cli::main(&args));
}
