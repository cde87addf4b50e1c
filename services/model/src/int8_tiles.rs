//! The int8 register tiles of `gemm_i8`: `acc[r][c] = Σ_i a[r][i] *
//! w[c][i]` for 8 rows of u8 inputs and the 32 columns of two panels of s8
//! weights (held as bytes, or as i16 for AVX2: `Panels`), summed exactly in
//! i32, so every kernel gives the same bits.
//!
//! - AVX-512 VNNI: `vpdpbusd` does 64 multiply-adds (u8 x s8, four per i32
//!   lane) per instruction; 8 rows x 2 panels of accumulators.
//! - AVX2: no u8 x s8 instruction that does not saturate (`vpmaddubsw`
//!   clamps pair sums at 16 bits, and 255 x 127 x 2 does not fit), so both
//!   sides are i16 and `vpmaddwd` sums a pair of inputs into each i32
//!   lane. The weights are stored widened, in pairs (`Panels::Wide`), and
//!   the inputs widened per call, so the loop is the f32 tile's: 6 rows x
//!   16 columns, two weight loads and one broadcast per row per step.
//!   Where `vpmaddwd` issues at half the FMA rate (measured on an AVX2 EPYC:
//!   `scripts/model/simd_throughput.c`) this matches the f32 tile, no more.
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

/// Packed s8 weights, `16 * k4` values per panel, in one of two layouts.
pub enum Panels {
    /// For VNNI: panel `p`, group `g` (inputs `4g..4g+4`) is 64 bytes at
    /// `(p * k4 / 4 + g) * 64`; byte `c*4 + j` is the weight of column
    /// `16p + c` for input `4g + j`.
    Bytes(Vec<i8>),
    /// For AVX2, as i16: panel `p`, pair `h` (inputs `2h, 2h+1`) is 32
    /// values at `(p * k4 / 2 + h) * 32`; value `c*2 + j` is the weight of
    /// column `16p + c` for input `2h + j`: one `vpmaddwd` of 8 columns
    /// sums a pair into each column's lane.
    Wide(Vec<i16>),
}

/// Part of `Panels`, as the tiles take it.
#[derive(Clone, Copy)]
pub enum PanelsRef<'a> {
    Bytes(&'a [i8]),
    Wide(&'a [i16]),
}

impl Panels {
    /// The layout `kernel` reads, from the values in the `Bytes` layout.
    pub fn for_kernel(bytes: Vec<i8>, k4: usize, kernel: Kernel) -> Panels {
        match kernel {
            Kernel::Avx2 => {
                let mut wide = vec![0i16; bytes.len()];
                let per_panel = PANEL * k4;
                for (at, b) in bytes.iter().enumerate() {
                    let (p, rest) = (at / per_panel, at % per_panel);
                    let (g, c, j) = (rest / 64, rest % 64 / 4, rest % 4);
                    let (h, jj) = ((4 * g + j) / 2, j % 2);
                    wide[p * per_panel + h * 32 + c * 2 + jj] = i16::from(*b);
                }
                Panels::Wide(wide)
            }
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

/// A tile's quantized input rows: 8 rows of `k4` values, as bytes, and
/// widened to u16 where the AVX2 tile runs.
#[derive(Clone, Copy)]
pub struct Rows<'a> {
    pub bytes: &'a [u8],
    pub wide: Option<&'a [u16]>,
}

/// One tile on `kernel`, or on the portable loop where the CPU lacks it or
/// the operands are not in the kernel's layout. `w` holds two panels of
/// `16 * k4` values.
pub fn tile(
    kernel: Kernel,
    rows: Rows<'_>,
    w: PanelsRef<'_>,
    k4: usize,
    acc: &mut [[i32; 32]; TILE_ROWS],
) {
    let a = rows.bytes;
    let fits = a.len() >= TILE_ROWS * k4 && w.len() >= TILE_PANELS * PANEL * k4;
    #[cfg(target_arch = "x86_64")]
    if fits && kernel.supported() {
        // SAFETY: the CPU has the kernel's features (checked just above),
        // and `a` (or its widened form, checked here) and `w` hold what the
        // kernels read (`fits`).
        match (kernel, w, rows.wide) {
            (Kernel::Vnni, PanelsRef::Bytes(w), _) => return unsafe { vnni::tile(a, w, k4, acc) },
            (Kernel::Avx2, PanelsRef::Wide(w), Some(a)) if a.len() >= TILE_ROWS * k4 => {
                return unsafe { avx2::tile(a, w, k4, acc) };
            }
            _ => {}
        }
    }
    let _ = fits;
    // Only reached with whole tiles (`gemm_i8` pads rows to 8 and slices
    // two whole panels), which the loop's indexing relies on.
    debug_assert!(a.len() >= TILE_ROWS * k4 && w.len() >= TILE_PANELS * PANEL * k4);
    match w {
        PanelsRef::Bytes(w) => portable(a, k4, acc, |p, c, i| {
            i32::from(w[p * PANEL * k4 + i / 4 * 64 + c * 4 + i % 4])
        }),
        PanelsRef::Wide(w) => portable(a, k4, acc, |p, c, i| {
            i32::from(w[p * PANEL * k4 + i / 2 * 32 + c * 2 + i % 2])
        }),
    }
}

/// The tiles' sums as plain loops; `weight(p, c, i)` reads the weight of
/// panel `p`, column `c`, input `i` from whichever layout.
fn portable(
    a: &[u8],
    k4: usize,
    acc: &mut [[i32; 32]; TILE_ROWS],
    weight: impl Fn(usize, usize, usize) -> i32,
) {
    for (r, acc_row) in acc.iter_mut().enumerate() {
        let row = &a[r * k4..(r + 1) * k4];
        for (col, out) in acc_row.iter_mut().enumerate() {
            let (p, c) = (col / PANEL, col % PANEL);
            *out = row
                .iter()
                .enumerate()
                .map(|(i, x)| i32::from(*x) * weight(p, c, i))
                .sum();
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
    /// The CPU must have avx2; `a` must hold `TILE_ROWS * k4` values and `w`
    /// `2 * PANEL * k4` (the `Wide` layout).
    #[target_feature(enable = "avx2")]
    pub unsafe fn tile(a: &[u16], w: &[i16], k4: usize, acc: &mut [[i32; 32]; TILE_ROWS]) {
        const _: () = assert!(TILE_ROWS == 8);
        for half in 0..TILE_PANELS {
            // SAFETY: panel `half` is values half*16*k4 .. (half+1)*16*k4 of
            // `w`, and `a` holds rows 0..8 of k4 values (both checked by
            // `tile` before the call).
            unsafe {
                let panel = w.as_ptr().add(half * PANEL * k4);
                rows::<6>(a, 0, panel, k4, acc, half);
                rows::<2>(a, 6, panel, k4, acc, half);
            }
        }
    }

    /// Rows `r0..r0 + R` of `a` times one panel, into columns `16 * half..`
    /// of `acc`: per row two registers of 8 i32 (columns 0-7 and 8-15),
    /// each step one pair of inputs; 6 rows are 12 accumulators, 2 weight
    /// vectors and a broadcast, like the f32 tile.
    ///
    /// # Safety
    /// avx2; `a` holds rows `r0..r0 + R` of `k4` values, `panel` 16 * k4.
    #[target_feature(enable = "avx2")]
    unsafe fn rows<const R: usize>(
        a: &[u16],
        r0: usize,
        panel: *const i16,
        k4: usize,
        acc: &mut [[i32; 32]; TILE_ROWS],
        half: usize,
    ) {
        let mut s = [[_mm256_setzero_si256(); 2]; R];
        for h in 0..k4 / 2 {
            // SAFETY: values 32h .. 32h + 32 of the panel.
            let (w0, w1) = unsafe {
                (
                    _mm256_loadu_si256(panel.add(h * 32).cast()),
                    _mm256_loadu_si256(panel.add(h * 32 + 16).cast()),
                )
            };
            for (i, si) in s.iter_mut().enumerate() {
                // SAFETY: inputs 2h, 2h + 1 of row r0 + i (at most 255,
                // so as i16 pairs they multiply exactly).
                let pair = unsafe {
                    a.as_ptr()
                        .add((r0 + i) * k4 + 2 * h)
                        .cast::<i32>()
                        .read_unaligned()
                };
                let x = _mm256_set1_epi32(pair);
                si[0] = _mm256_add_epi32(si[0], _mm256_madd_epi16(w0, x));
                si[1] = _mm256_add_epi32(si[1], _mm256_madd_epi16(w1, x));
            }
        }
        for (i, si) in s.iter().enumerate() {
            let out = &mut acc[r0 + i][half * PANEL..(half + 1) * PANEL];
            // SAFETY: 16 i32 into a 16-element slice.
            unsafe {
                _mm256_storeu_si256(out.as_mut_ptr().cast(), si[0]);
                _mm256_storeu_si256(out.as_mut_ptr().add(8).cast(), si[1]);
            }
        }
    }
}
