//! Waiting for SIGTERM or SIGINT without a signal handler.
//!
//! [`block`] must run in `main` before any thread is spawned: the signals are
//! then blocked in every thread (the mask is inherited), and the one thread
//! that calls [`wait`] receives them synchronously with `sigwait`. No code
//! runs in signal context.

use std::mem::MaybeUninit;

fn stop_set() -> libc::sigset_t {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set; sigaddset only writes into it.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), libc::SIGTERM);
        libc::sigaddset(set.as_mut_ptr(), libc::SIGINT);
        set.assume_init()
    }
}

/// Blocks SIGTERM and SIGINT in the calling thread and its future children.
pub fn block() {
    let set = stop_set();
    // SAFETY: `set` is a valid, initialised signal set.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Waits until SIGTERM or SIGINT arrives; returns its name.
pub fn wait() -> &'static str {
    let set = stop_set();
    let mut sig: libc::c_int = 0;
    loop {
        // SAFETY: `set` is initialised and `sig` is a valid out pointer.
        let rc = unsafe { libc::sigwait(&set, &mut sig) };
        if rc == 0 {
            return if sig == libc::SIGINT {
                "SIGINT"
            } else {
                "SIGTERM"
            };
        }
    }
}
