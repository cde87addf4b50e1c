//! The int8 register tiles of `gemm_i8`: `acc[r][c] = Σ_i a[r][i] *
//! w[c][i]` for 8 rows of u8 inputs and the 32 columns of two s8 weight
//! panels, summed exactly in i32, so every kernel gives the same bits.
//!
//! - AVX-512 VNNI: `vpdpbusd` does 64 multiply-adds (u8 x s8, four per i32
//!   lane) per instruction; 8 rows x 2 panels of accumulators.
//! - AVX2: no u8 x s8 instruction that does not saturate (`vpmaddubsw`
//!   clamps pair sums at 16 bits, and 255 x 127 x 2 does not fit), so both
//!   sides are i16 and `vpmaddwd` sums pairs into i32: two partial sums per
//!   column, added at the end; 3 rows x 1 panel at a time to fit 16
//!   registers. The weights are stored widened (`Panels::Wide`, same layout
//!   in i16): `vpmaddwd` then reads them straight from memory, where
//!   widening each 16 bytes in the loop cost as many instructions as the
//!   products themselves on CPUs whose vector units are 128 bits wide.
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

/// Packed s8 weights: panel `p`, group `g` (inputs `4g..4g+4`) is 64
/// values at `(p * k4 / 4 + g) * 64`; value `c*4 + j` is the weight of
/// column `16p + c` for input `4g + j`.
pub enum Panels {
    /// As bytes, for VNNI (and the portable loop).
    Bytes(Vec<i8>),
    /// The same values as i16, for the AVX2 tile.
    Wide(Vec<i16>),
}

/// Part of `Panels`, as the tiles take it.
#[derive(Clone, Copy)]
pub enum PanelsRef<'a> {
    Bytes(&'a [i8]),
    Wide(&'a [i16]),
}

impl Panels {
    /// The layout `kernel` reads, from the values as bytes.
    pub fn for_kernel(bytes: Vec<i8>, kernel: Kernel) -> Panels {
        match kernel {
            Kernel::Avx2 => Panels::Wide(bytes.into_iter().map(i16::from).collect()),
            Kernel::Vnni | Kernel::Portable => Panels::Bytes(bytes),
        }
    }

    /// Values `start..start + len`.
    pub fn slice(&self, start: usize, len: usize) -> PanelsRef<'_> {
        match self {
            Panels::Bytes(v) => PanelsRef::Bytes(&v[start..start + len]),
            Panels::Wide(v) => PanelsRef::Wide(&v[start..start + len]),
        }
    }
}

impl PanelsRef<'_> {
    fn len(self) -> usize {
        match self {
            PanelsRef::Bytes(v) => v.len(),
            PanelsRef::Wide(v) => v.len(),
        }
    }
}

/// One tile on `kernel`, or on the portable loop where the CPU lacks it or
/// the weights are not in the kernel's layout. `a` holds 8 rows of `k4`
/// bytes, `w` two panels of `16 * k4` values.
pub fn tile(
    kernel: Kernel,
    a: &[u8],
    w: PanelsRef<'_>,
    k4: usize,
    acc: &mut [[i32; 32]; TILE_ROWS],
) {
    let fits = a.len() >= TILE_ROWS * k4 && w.len() >= TILE_PANELS * PANEL * k4;
    #[cfg(target_arch = "x86_64")]
    if fits && kernel.supported() {
        // SAFETY: the CPU has the kernel's features (checked just above),
        // and `a` and `w` hold what the kernels read (`fits`).
        match (kernel, w) {
            (Kernel::Vnni, PanelsRef::Bytes(w)) => return unsafe { vnni::tile(a, w, k4, acc) },
            (Kernel::Avx2, PanelsRef::Wide(w)) => return unsafe { avx2::tile(a, w, k4, acc) },
            _ => {}
        }
    }
    let _ = fits;
    match w {
        PanelsRef::Bytes(w) => portable(a, w, k4, acc),
        PanelsRef::Wide(w) => portable(a, w, k4, acc),
    }
}

fn portable<T: Copy + Into<i32>>(a: &[u8], w: &[T], k4: usize, acc: &mut [[i32; 32]; TILE_ROWS]) {
    for (r, acc_row) in acc.iter_mut().enumerate() {
        let row = &a[r * k4..(r + 1) * k4];
        for (half, panel) in w.chunks_exact(PANEL * k4).enumerate() {
            let mut sums = [0i32; PANEL];
            for (group, a4) in panel.chunks_exact(64).zip(row.chunks_exact(4)) {
                for (c, sum) in sums.iter_mut().enumerate() {
                    for j in 0..4 {
                        *sum += i32::from(a4[j]) * group[c * 4 + j].into();
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
    /// `2 * PANEL * k4` values.
    #[target_feature(enable = "avx2")]
    pub unsafe fn tile(a: &[u8], w: &[i16], k4: usize, acc: &mut [[i32; 32]; TILE_ROWS]) {
        const _: () = assert!(TILE_ROWS == 8);
        for half in 0..TILE_PANELS {
            // SAFETY: panel `half` is bytes half*16*k4 .. (half+1)*16*k4,
            // rows 0..8 of `a` are inside it (the caller's guarantee).
            unsafe {
                let panel = w.as_ptr().add(half * PANEL * k4);
                rows::<3>(a, 0, panel, k4, acc, half);
                rows::<3>(a, 3, panel, k4, acc, half);
                rows::<2>(a, 6, panel, k4, acc, half);
            }
        }
    }

    /// Rows `r0..r0 + R` of `a` times one panel, into columns `16 * half..`
    /// of `acc`. Per row, 4 registers of 8 i32: columns 4t..4t+4, two
    /// partial sums (inputs 0-1 and 2-3 of each group) apiece; 3 rows are
    /// 12 accumulators and 3 broadcast inputs, the weights read from memory
    /// by `vpmaddwd` itself.
    ///
    /// # Safety
    /// avx2; `a` holds rows `r0..r0 + R` of `k4` bytes, `panel` 16 * k4.
    #[target_feature(enable = "avx2")]
    unsafe fn rows<const R: usize>(
        a: &[u8],
        r0: usize,
        panel: *const i16,
        k4: usize,
        acc: &mut [[i32; 32]; TILE_ROWS],
        half: usize,
    ) {
        let mut s = [[_mm256_setzero_si256(); 4]; R];
        for g in 0..k4 / 4 {
            // Each row's four inputs of group g widened to i16 and repeated
            // in every 64-bit lane (one per column of a weight vector).
            let x: [__m256i; R] = std::array::from_fn(|i| {
                // SAFETY: 4 bytes at (r0 + i) * k4 + 4g, inside row r0 + i.
                let four = unsafe {
                    a.as_ptr()
                        .add((r0 + i) * k4 + g * 4)
                        .cast::<i32>()
                        .read_unaligned()
                };
                _mm256_broadcastq_epi64(_mm_cvtepu8_epi16(_mm_cvtsi32_si128(four)))
            });
            for t in 0..4 {
                // SAFETY: values 64g + 16t .. +16 of the panel.
                let wt = unsafe { _mm256_loadu_si256(panel.add(g * 64 + 16 * t).cast()) };
                for (si, xi) in s.iter_mut().zip(&x) {
                    si[t] = _mm256_add_epi32(si[t], _mm256_madd_epi16(wt, *xi));
                }
            }
        }
        for (i, si) in s.iter().enumerate() {
            // Pairwise sums put columns in order 0 1 4 5 | 2 3 6 7; the
            // 64-bit permute restores 0..8.
            let lo = _mm256_permute4x64_epi64(_mm256_hadd_epi32(si[0], si[1]), 0b11_01_10_00);
            let hi = _mm256_permute4x64_epi64(_mm256_hadd_epi32(si[2], si[3]), 0b11_01_10_00);
            let out = &mut acc[r0 + i][half * PANEL..(half + 1) * PANEL];
            // SAFETY: 16 i32 into a 16-element slice.
            unsafe {
                _mm256_storeu_si256(out.as_mut_ptr().cast(), lo);
                _mm256_storeu_si256(out.as_mut_ptr().add(8).cast(), hi);
            }
        }
    }
}
