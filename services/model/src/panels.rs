//! How the panel kernels (`gemm_i8`, `panels_f32`) lay out weights and
//! spread one product over rayon's pool.
//!
//! Weights are packed once into panels of `PANEL` output columns; work is
//! handed out in tiles of `TILE_ROWS` input rows by `TILE_PANELS` panels
//! (the AVX-512 register tile; the AVX2 kernels cover one such tile in
//! passes of 6 and 2 rows, one panel at a time).

use crate::error::{ModelError, Result};
use rayon::prelude::*;

/// Output columns per panel: one 512-bit register of 32-bit lanes.
pub const PANEL: usize = 16;
/// Panels per register tile (32 columns).
pub const TILE_PANELS: usize = 2;
/// Rows per tile (AVX-512: 8 x 2 accumulators + 2 weight registers).
pub const TILE_ROWS: usize = 8;
/// Rows a thread takes at a time when the product is split by rows; a
/// multiple of `TILE_ROWS`, so every chunk starts on a whole tile (the int8
/// kernel's padded rows rely on it).
const CHUNK_ROWS: usize = 64;
const _: () = assert!(CHUNK_ROWS.is_multiple_of(TILE_ROWS));

/// Panels for `outputs` columns, rounded up to whole tiles.
pub fn panel_count(outputs: usize) -> usize {
    outputs.div_ceil(PANEL * TILE_PANELS) * TILE_PANELS
}

/// One part of a product `spread` hands out: rows `first..first + count`,
/// panels `panels.0..panels.1`, into `out`, whose rows are `out_stride`
/// wide and start at column `PANEL * panels.0`.
pub struct Part<'a> {
    pub first: usize,
    pub count: usize,
    pub panels: (usize, usize),
    pub out: &'a mut [f32],
    pub out_stride: usize,
}

/// Runs `work` over the parts of a `rows x outputs` product into `dst`
/// (row-major), in parallel: whole row chunks when there are enough rows,
/// else column ranges (each part into its own buffer, copied into place
/// after).
pub fn spread<W>(rows: usize, outputs: usize, dst: &mut [f32], work: W)
where
    W: Fn(Part<'_>) + Sync,
{
    let n = outputs;
    let panels = panel_count(n);
    if rows == 0 || n == 0 {
        return;
    }
    let threads = rayon::current_num_threads();
    if rows >= CHUNK_ROWS * threads || threads == 1 {
        dst.par_chunks_mut(CHUNK_ROWS * n)
            .enumerate()
            .for_each(|(i, out)| {
                work(Part {
                    first: i * CHUNK_ROWS,
                    count: out.len() / n,
                    panels: (0, panels),
                    out,
                    out_stride: n,
                })
            });
        return;
    }
    // Few rows (short texts, small batches): split the columns.
    let parts = threads.min(panels / TILE_PANELS).max(1);
    let per = (panels / TILE_PANELS).div_ceil(parts) * TILE_PANELS;
    let pieces: Vec<(usize, usize, Vec<f32>)> = (0..parts)
        .into_par_iter()
        .map(|part| {
            let p0 = (part * per).min(panels);
            let p1 = (p0 + per).min(panels);
            let c0 = (p0 * PANEL).min(n);
            let width = (p1 * PANEL).min(n) - c0;
            let mut out = vec![0.0f32; rows * width];
            if width > 0 {
                work(Part {
                    first: 0,
                    count: rows,
                    panels: (p0, p1),
                    out: &mut out,
                    out_stride: width,
                });
            }
            (c0, width, out)
        })
        .collect();
    for (c0, width, out) in pieces {
        if width == 0 {
            continue;
        }
        for (dst_row, row) in dst.chunks_exact_mut(n).zip(out.chunks_exact(width)) {
            dst_row[c0..c0 + width].copy_from_slice(row);
        }
    }
}

/// `x[..rows * inputs]` and `dst[..rows * outputs]`, or an error naming the
/// layer (`what`) when a buffer is too short or the sizes overflow.
pub fn operands<'a>(
    what: &str,
    x: &'a [f32],
    dst: &'a mut [f32],
    rows: usize,
    (inputs, outputs): (usize, usize),
) -> Result<(&'a [f32], &'a mut [f32])> {
    let (x_len, dst_len) = (x.len(), dst.len());
    let sizes = rows.checked_mul(inputs).zip(rows.checked_mul(outputs));
    match sizes.and_then(|(xl, dl)| x.get(..xl).zip(dst.get_mut(..dl))) {
        Some(pair) => Ok(pair),
        None => Err(ModelError::Inference(format!(
            "{what} {inputs}->{outputs} over {rows} rows: buffers of {x_len} and {dst_len} \
             are too short (or the sizes overflow)"
        ))),
    }
}
