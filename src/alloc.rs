//! The global allocator: the system's, except for huge blocks.
//!
//! tiny_http 0.12 throws away the unread rest of a request body with
//! `vec![0; remaining]` (tiny-http issue #252), after the answer is sent. A
//! client that announces `Content-Length: 100000000000` and sends nothing
//! makes it ask for 100 GB, and an allocation failure aborts the process.
//! The server shuts the socket's read side first, so the read into that
//! buffer returns at once; this allocator makes the buffer itself harmless:
//! a block of [`HUGE`] bytes or more is an anonymous `mmap` with
//! `MAP_NORESERVE`. The kernel reserves nothing for it and only pages that
//! are written take memory, so a never-touched 100 GB block costs nothing.
//! A length above `isize::MAX` panics in `vec!` (the server catches it); a
//! length between [`LAZY_LIMIT`] and `isize::MAX` could not be mapped, so
//! the server never lets tiny_http drain such a body (see
//! `server::refuse_unmappable_body`).
//!
//! Invariant: every block of `HUGE` bytes or more comes from `mmap` and
//! goes back with `munmap`; everything smaller is the system allocator's.
//! Nothing in the proxy itself allocates blocks that big (bodies stop at
//! `max_body_size`).

use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks of at least this size are mapped directly.
pub const HUGE: usize = 1 << 30;

/// The largest block [`Allocator`] is sure to map: well under the free
/// address space of a 47-bit x86-64 or aarch64 process. The server refuses a
/// body longer than this without letting tiny_http drain it.
pub const LAZY_LIMIT: u64 = 1 << 43;

/// Page alignment `mmap` gives.
const PAGE: usize = 4096;

/// See the module documentation.
pub struct Allocator;

fn is_huge(layout: Layout) -> bool {
    layout.size() >= HUGE && layout.align() <= PAGE
}

// SAFETY: small blocks are the system allocator's; huge ones are fresh
// private anonymous mappings (zeroed, page-aligned, at least `size` bytes),
// released with the same size they were mapped with.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_huge(layout) {
            map(layout.size())
        } else {
            // SAFETY: the caller's layout contract is passed on.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(layout) {
            map(layout.size())
        } else {
            // SAFETY: as above.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(layout) {
            // SAFETY: a huge layout's block was mapped by `map` with this size.
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
        } else {
            // SAFETY: a small block came from the system allocator.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees a valid layout for `new_size`.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !is_huge(layout) && !is_huge(new_layout) {
            // SAFETY: both sizes are the system allocator's.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: allocate, copy the common prefix, free: the GlobalAlloc
        // contract of each call holds.
        unsafe {
            let new = self.alloc(new_layout);
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

/// A private anonymous mapping of `size` bytes, or null.
fn map(size: usize) -> *mut u8 {
    // SAFETY: a fresh anonymous mapping touches no existing memory.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p.cast()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_blocks_are_mapped_zeroed_and_released() {
        let a = Allocator;
        let layout = Layout::from_size_align(64 * HUGE, 8).unwrap();
        // SAFETY: valid layout; the block is freed with the same layout.
        unsafe {
            let p = a.alloc_zeroed(layout);
            assert!(!p.is_null(), "64 GiB of untouched address space must map");
            assert_eq!(*p, 0);
            *p.add(layout.size() - 1) = 7;
            let q = a.realloc(p, layout, 16);
            assert!(!q.is_null());
            assert_eq!(*q, 0);
            a.dealloc(q, Layout::from_size_align(16, 8).unwrap());
        }
    }
}
