//! Process-wide allocator tuning for the big per-step buffers of training
//! and whole-network runs.
//!
//! Why: a training step allocates and frees tens of megabytes per layer
//! (the tape's activations, im2col columns, gradients; MobileNet-V2 at
//! batch 128 has single tensors of 58 MB). glibc serves every allocation
//! above its mmap threshold (at most 32 MB) with a fresh `mmap` and returns
//! it with `munmap` on free, and trims the heap top beyond the trim
//! threshold, so every step the kernel faults in and zeroes the same
//! memory again: `perf` put 27% of a MobileNet-V2 step in `clear_page_erms`.
//! Keeping freed memory in the process (no mmap for large blocks, no trim)
//! makes the next step reuse it. Measured in the README's performance
//! section.
//!
//! One arena for all threads: an FTT step runs its clean and faulty halves
//! on different threads (`Trainer::train_step`), and with glibc's default
//! of one arena per thread the blocks one thread frees are not reused by
//! the other, so every step grew fresh memory (MobileNet-V2 FTT step:
//! 6.0 GB peak and 2.21x a QAT step with per-thread arenas, 4.2 GB and
//! 1.82x with one). The big blocks are few per layer, so the shared
//! arena's lock is not contended; small ones go through the per-thread
//! cache.
//!
//! Only glibc on Linux is tuned; elsewhere this is a no-op. Setting the
//! environment variable `FTNAS_MALLOC=default` leaves the allocator alone
//! (lower resident memory after a peak, slower steps).

/// Tune the C allocator once, at program start (before threads exist).
/// Returns whether the tuning was applied.
pub fn keep_freed_memory() -> bool {
    if std::env::var_os("FTNAS_MALLOC").is_some_and(|v| v == "default") {
        return false;
    }
    imp::apply()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod imp {
    use std::os::raw::c_int;

    // glibc <malloc.h> parameter numbers.
    const M_TRIM_THRESHOLD: c_int = -1;
    const M_MMAP_MAX: c_int = -4;
    const M_ARENA_MAX: c_int = -8;

    extern "C" {
        fn mallopt(param: c_int, value: c_int) -> c_int;
    }

    pub fn apply() -> bool {
        // SAFETY: mallopt only changes allocator parameters; it is called
        // with documented parameter numbers and valid values. glibc
        // serialises it against concurrent allocation with the arena lock.
        unsafe {
            mallopt(M_MMAP_MAX, 0) == 1
                && mallopt(M_TRIM_THRESHOLD, c_int::MAX) == 1
                && mallopt(M_ARENA_MAX, 1) == 1
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    pub fn apply() -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tuning_keeps_large_allocations_usable() {
        // Applying it in a test process is harmless; afterwards large
        // blocks still allocate, zero and free correctly.
        super::keep_freed_memory();
        for _ in 0..3 {
            let v = vec![0f32; 20 << 20];
            assert!(v.iter().all(|&x| x == 0.0));
            let mut w = vec![1u8; 70 << 20];
            w[70 << 19] = 2;
            assert_eq!(w.iter().map(|&b| b as usize).sum::<usize>(), (70 << 20) + 1);
        }
    }
}
