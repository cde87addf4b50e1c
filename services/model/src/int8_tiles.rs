//! The int8 register tiles of `gemm_i8`: `acc[r][c] = Σ_i a[r][i] *
//! w[c][i]` for 8 rows of u8 inputs and the 32 columns of two s8 weight
//! panels, summed exactly in i32, so every kernel gives the same bits.
//!
//! - AVX-512 VNNI: `vpdpbusd` does 64 multiply-adds (u8 x s8, four per i32
//!   lane) per instruction; 8 rows x 2 panels of accumulators.
//! - AVX2: no u8 x s8 instruction that does not saturate (`vpmaddubsw`
//!   clamps pair sums at 16 bits, and 255 x 127 x 2 does not fit), so both
//!   sides are widened to i16 and `vpmaddwd` sums pairs into i32: two
//!   partial sums per column, added at the end; 2 rows x 1 panel at a time
//!   to fit 16 registers.
//! - Portable: plain loops, for other CPUs.
//!
//! Why `unsafe` here: `std::arch` intrinsics (raw pointer loads) inside
//! `#[target_feature]` functions, called only after the run-time check;
//! every pointer read is inside slices whose lengths are checked first.
#![allow(unsafe_code)]

use crate::panels::{PANEL, TILE_PANELS, TILE_ROWS};

/// Which tile kernel runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    Vnni,
    Avx2,
    Portable,
}

impl Kernel {
    /// The fastest kernel this CPU runs.
    pub fn best() -> Kernel {
        [Kernel::Vnni, Kernel::Avx2]
            .into_iter()
            .find(|k| k.supported())
            .unwrap_or(Kernel::Portable)
    }

    pub fn supported(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                Kernel::Vnni => {
                    std::is_x86_feature_detected!("avx512f")
                        && std::is_x86_feature_detected!("avx512bw")
                        && std::is_x86_feature_detected!("avx512vnni")
                }
                Kernel::Avx2 => std::is_x86_feature_detected!("avx2"),
                Kernel::Portable => true,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == Kernel::Portable
        }
    }
}

/// One tile on `kernel`, or on the portable loop where the CPU lacks it.
/// `a` holds 8 rows of `k4` bytes, `w` two panels of `16 * k4` bytes.
pub fn tile(kernel: Kernel, a: &[u8], w: &[i8], k4: usize, acc: &mut [[i32; 32]; TILE_ROWS]) {
    let fits = a.len() >= TILE_ROWS * k4 && w.len() >= TILE_PANELS * PANEL * k4;
    #[cfg(target_arch = "x86_64")]
    if fits && kernel != Kernel::Portable && kernel.supported() {
        // SAFETY: the CPU has the kernel's features (checked just above),
        // and `a` and `w` hold what the kernels read (`fits`).
        unsafe {
            match kernel {
                Kernel::Vnni => vnni::tile(a, w, k4, acc),
                _ => avx2::tile(a, w, k4, acc),
            }
        }
        return;
    }
    let _ = fits;
    portable(a, w, k4, acc);
}

fn portable(a: &[u8], w: &[i8], k4: usize, acc: &mut [[i32; 32]; TILE_ROWS]) {
    for (r, acc_row) in acc.iter_mut().enumerate() {
        let row = &a[r * k4..(r + 1) * k4];
        for (half, panel) in w.chunks_exact(PANEL * k4).enumerate() {
            let mut sums = [0i32; PANEL];
            for (group, a4) in panel.chunks_exact(64).zip(row.chunks_exact(4)) {
                for (c, sum) in sums.iter_mut().enumerate() {
                    for j in 0..4 {
                        *sum += i32::from(a4[j]) * i32::from(group[c * 4 + j]);
                    }
                }
            }
            acc_row[half * PANEL..(half + 1) * PANEL].copy_from_slice(&sums);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    use super::{PANEL, TILE_ROWS};
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must have avx512f, avx512bw and avx512vnni; `a` must hold
    /// `TILE_ROWS * k4` bytes and `w` `2 * PANEL * k4` bytes.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn tile(a: &[u8], w: &[i8], k4: usize, acc: &mut [[i32; 32]; TILE_ROWS]) {
        let mut sums = [[_mm512_setzero_si512(); 2]; TILE_ROWS];
        let w0 = w.as_ptr();
        // SAFETY (whole loop): group g < k4 / 4 reads bytes g*64..g*64+64
        // of each panel (panel 1 starts at PANEL * k4), and 4 bytes at
        // r * k4 + 4g of `a`: all inside the lengths the caller checked.
        let w1 = unsafe { w0.add(PANEL * k4) };
        for g in 0..k4 / 4 {
            let (b0, b1) = unsafe {
                (
                    _mm512_loadu_si512(w0.add(g * 64).cast()),
                    _mm512_loadu_si512(w1.add(g * 64).cast()),
                )
            };
            for (r, s) in sums.iter_mut().enumerate() {
                let four = unsafe {
                    a.as_ptr()
                        .add(r * k4 + g * 4)
                        .cast::<i32>()
                        .read_unaligned()
                };
                let x = _mm512_set1_epi32(four);
                s[0] = _mm512_dpbusd_epi32(s[0], x, b0);
                s[1] = _mm512_dpbusd_epi32(s[1], x, b1);
            }
        }
        for (s, out) in sums.iter().zip(acc.iter_mut()) {
            let (lo, hi) = out.split_at_mut(PANEL);
            unsafe {
                _mm512_storeu_si512(lo.as_mut_ptr().cast(), s[0]);
                _mm512_storeu_si512(hi.as_mut_ptr().cast(), s[1]);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{PANEL, TILE_PANELS, TILE_ROWS};
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must have avx2; `a` must hold `TILE_ROWS * k4` bytes and `w`
    /// `2 * PANEL * k4` bytes.
    #[target_feature(enable = "avx2")]
    pub unsafe fn tile(a: &[u8], w: &[i8], k4: usize, acc: &mut [[i32; 32]; TILE_ROWS]) {
        for half in 0..TILE_PANELS {
            // SAFETY: panel `half` is bytes half*16*k4 .. (half+1)*16*k4.
            let panel = unsafe { w.as_ptr().add(half * PANEL * k4) };
            for r in (0..TILE_ROWS).step_by(2) {
                // Per row, 4 registers of 8 i32: columns 4t..4t+4, two
                // partial sums (inputs 0-1 and 2-3 of each group) apiece.
                let mut s = [[_mm256_setzero_si256(); 4]; 2];
                for g in 0..k4 / 4 {
                    // SAFETY: 64 bytes of group g of the panel, and 4 bytes
                    // at (r + i) * k4 + 4g of `a` (r + i < TILE_ROWS).
                    let wv = unsafe {
                        let p = panel.add(g * 64);
                        [
                            _mm256_cvtepi8_epi16(_mm_loadu_si128(p.cast())),
                            _mm256_cvtepi8_epi16(_mm_loadu_si128(p.add(16).cast())),
                            _mm256_cvtepi8_epi16(_mm_loadu_si128(p.add(32).cast())),
                            _mm256_cvtepi8_epi16(_mm_loadu_si128(p.add(48).cast())),
                        ]
                    };
                    for (i, si) in s.iter_mut().enumerate() {
                        let four = unsafe {
                            a.as_ptr()
                                .add((r + i) * k4 + g * 4)
                                .cast::<[u8; 4]>()
                                .read_unaligned()
                        };
                        // The four inputs as i16 lanes, repeated per column.
                        let pattern = four
                            .iter()
                            .enumerate()
                            .fold(0u64, |p, (j, v)| p | (u64::from(*v) << (16 * j)));
                        let x = _mm256_set1_epi64x(pattern as i64);
                        for (acc_t, w_t) in si.iter_mut().zip(&wv) {
                            *acc_t = _mm256_add_epi32(*acc_t, _mm256_madd_epi16(*w_t, x));
                        }
                    }
                }
                for (i, si) in s.iter().enumerate() {
                    let mut lanes = [0i32; 32];
                    for (t, v) in si.iter().enumerate() {
                        // SAFETY: 8 i32 into lanes[8t..8t + 8].
                        unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().add(8 * t).cast(), *v) };
                    }
                    let out = &mut acc[r + i][half * PANEL..(half + 1) * PANEL];
                    for (c, o) in out.iter_mut().enumerate() {
                        *o = lanes[2 * c] + lanes[2 * c + 1];
                    }
                }
            }
        }
    }
}
