//! The 16-lane MD5 compression on AVX-512F: one 32-bit lane per message.
//!
//! Each round loads one 64-byte block of every lane (16 `vmovdqu32`) and transposes the 16x16
//! words in registers (unpack 32, unpack 64, two `vshufi32x4` stages: 64 shuffles), so that
//! register `w[j]` holds word `j` of all 16 blocks; the 64 steps then run on whole registers,
//! `vpternlogd` computing F, G, H or I in one instruction and `vprold` rotating. A lane without
//! a block this round reads a static zero block and keeps its state (a masked add). `N` groups
//! of 16 lanes run interleaved (the caller uses 1 or 2: 3 and 4 measured slower than 2), and
//! each lane's data 1 KiB on is prefetched during the steps.
//!
//! Gathers instead of the transpose: the 16 lanes' blocks are anywhere in memory, so a word of
//! all 16 takes two `vpgatherqd` (64-bit addresses); measured on 16 x 64 MiB, 4.2 GB/s against
//! 6.1 GB/s with the transpose.

use std::arch::x86_64::{
    __m512i, _mm512_add_epi32, _mm512_loadu_si512, _mm512_mask_add_epi32, _mm512_rol_epi32,
    _mm512_set1_epi32, _mm512_setzero_si512, _mm512_shuffle_i32x4, _mm512_storeu_si512,
    _mm512_ternarylogic_epi32, _mm512_unpackhi_epi32, _mm512_unpackhi_epi64, _mm512_unpacklo_epi32,
    _mm512_unpacklo_epi64, _mm_prefetch, _MM_HINT_T0,
};

use super::{BLOCK, K, LANES};

/// How far ahead in each lane the kernel asks for data (`prefetcht0`), one lane's line per group
/// after each four steps, so the requests are spread over the round rather than issued in a
/// burst with the loads. On 32 x 8 MiB out of memory the hardware prefetchers alone left the
/// two-group kernel at ~5.4 GB/s, the same prefetches in a burst at ~6.3, spread at ~10 (as fast
/// as in cache); 512 and 2048 bytes measured no better.
const PREFETCH: usize = 1024;

/// Proof that this CPU has AVX-512F: only [`Avx512::new`] makes one, after checking.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx512(());

impl Avx512 {
    /// `Some` if the CPU has AVX-512F (`is_x86_feature_detected!` caches the answer).
    pub(crate) fn new() -> Option<Self> {
        std::arch::is_x86_feature_detected!("avx512f").then_some(Self(()))
    }

    /// Compresses blocks `0..rounds` of every `blocks[g][i]` that has them into `states[g][i]`
    /// (a lane with fewer blocks is left as it is once they are used up); the `N` groups of 16
    /// lanes run interleaved.
    pub(super) fn compress<const N: usize>(
        self,
        states: &mut [[[u32; 4]; LANES]; N],
        blocks: &[[&[u8]; LANES]; N],
        rounds: usize,
    ) {
        // SAFETY: `self` exists only if `new` found AVX-512F on this CPU.
        unsafe { compress_groups(states, blocks, rounds) }
    }
}

/// The block a lane without data reads (its result is discarded).
static ZERO_BLOCK: [u8; BLOCK] = [0; BLOCK];

/// `vpternlogd` truth tables for (b, c, d) = (0xF0, 0xCC, 0xAA).
/// F = (b & c) | (!b & d).
const F: i32 = 0xCA;
/// G = (b & d) | (c & !d).
const G: i32 = 0xE4;
/// H = b ^ c ^ d.
const H: i32 = 0x96;
/// I = c ^ (b | !d).
const I: i32 = 0x39;

/// See [`Avx512::compress`].
#[target_feature(enable = "avx512f")]
fn compress_groups<const N: usize>(
    states: &mut [[[u32; 4]; LANES]; N],
    blocks: &[[&[u8]; LANES]; N],
    rounds: usize,
) {
    let zero = _mm512_setzero_si512();
    let (mut sa, mut sb, mut sc, mut sd) = ([zero; N], [zero; N], [zero; N], [zero; N]);
    for (g, states) in states.iter().enumerate() {
        let mut cols = [[0u32; LANES]; 4];
        for (lane, state) in states.iter().enumerate() {
            for (col, word) in cols.iter_mut().zip(state) {
                col[lane] = *word;
            }
        }
        [sa[g], sb[g], sc[g], sd[g]] = cols.map(|col| load_words(col));
    }

    let mut w = [[zero; LANES]; N];
    let mut masks = [0u16; N];
    // Where each lane's data will be read PREFETCH bytes on (a hint: may be past the data).
    let mut ahead = [[ZERO_BLOCK.as_ptr(); LANES]; N];
    for round in 0..rounds {
        let at = round * BLOCK;
        for (gi, ((w, mask), blocks)) in w.iter_mut().zip(&mut masks).zip(blocks).enumerate() {
            let mut rows = [zero; LANES];
            *mask = 0;
            for (lane, (row, data)) in rows.iter_mut().zip(blocks).enumerate() {
                let block = match data.get(at..at + BLOCK) {
                    Some(block) => {
                        *mask |= 1 << lane;
                        block
                    }
                    None => &ZERO_BLOCK[..],
                };
                // SAFETY: `block` is 64 readable bytes; the load is unaligned.
                *row = unsafe { _mm512_loadu_si512(block.as_ptr().cast()) };
                ahead[gi][lane] = block.as_ptr().wrapping_add(PREFETCH);
            }
            *w = transpose(&rows);
        }

        let (mut a, mut b, mut c, mut d) = (sa, sb, sc, sd);
        macro_rules! step {
            ($f:ident, $a:ident, $b:ident, $c:ident, $d:ident, $m:expr, $k:expr, $s:expr) => {
                for g in 0..N {
                    let t = _mm512_add_epi32(
                        _mm512_add_epi32($a[g], w[g][$m]),
                        _mm512_set1_epi32(K[$k] as i32),
                    );
                    let t =
                        _mm512_add_epi32(t, _mm512_ternarylogic_epi32::<$f>($b[g], $c[g], $d[g]));
                    $a[g] = _mm512_add_epi32($b[g], _mm512_rol_epi32::<$s>(t));
                }
            };
        }
        macro_rules! quad {
            (
                $f:ident,
                [$g0:expr, $g1:expr, $g2:expr, $g3:expr],
                $k:expr,
                [$s0:expr, $s1:expr, $s2:expr, $s3:expr]
            ) => {
                for ahead in &ahead {
                    // SAFETY: a prefetch is a hint that never faults, whatever the address.
                    // (`_mm_prefetch` is safe in Rust 1.95's std; this keeps older ones building.)
                    #[allow(unused_unsafe)]
                    unsafe {
                        _mm_prefetch::<_MM_HINT_T0>(ahead[$k / 4].cast())
                    };
                }
                step!($f, a, b, c, d, $g0, $k, $s0);
                step!($f, d, a, b, c, $g1, $k + 1, $s1);
                step!($f, c, d, a, b, $g2, $k + 2, $s2);
                step!($f, b, c, d, a, $g3, $k + 3, $s3);
            };
        }
        quad!(F, [0, 1, 2, 3], 0, [7, 12, 17, 22]);
        quad!(F, [4, 5, 6, 7], 4, [7, 12, 17, 22]);
        quad!(F, [8, 9, 10, 11], 8, [7, 12, 17, 22]);
        quad!(F, [12, 13, 14, 15], 12, [7, 12, 17, 22]);
        quad!(G, [1, 6, 11, 0], 16, [5, 9, 14, 20]);
        quad!(G, [5, 10, 15, 4], 20, [5, 9, 14, 20]);
        quad!(G, [9, 14, 3, 8], 24, [5, 9, 14, 20]);
        quad!(G, [13, 2, 7, 12], 28, [5, 9, 14, 20]);
        quad!(H, [5, 8, 11, 14], 32, [4, 11, 16, 23]);
        quad!(H, [1, 4, 7, 10], 36, [4, 11, 16, 23]);
        quad!(H, [13, 0, 3, 6], 40, [4, 11, 16, 23]);
        quad!(H, [9, 12, 15, 2], 44, [4, 11, 16, 23]);
        quad!(I, [0, 7, 14, 5], 48, [6, 10, 15, 21]);
        quad!(I, [12, 3, 10, 1], 52, [6, 10, 15, 21]);
        quad!(I, [8, 15, 6, 13], 56, [6, 10, 15, 21]);
        quad!(I, [4, 11, 2, 9], 60, [6, 10, 15, 21]);

        // Lanes in the mask add the block's result; the others keep their state.
        for g in 0..N {
            sa[g] = _mm512_mask_add_epi32(sa[g], masks[g], sa[g], a[g]);
            sb[g] = _mm512_mask_add_epi32(sb[g], masks[g], sb[g], b[g]);
            sc[g] = _mm512_mask_add_epi32(sc[g], masks[g], sc[g], c[g]);
            sd[g] = _mm512_mask_add_epi32(sd[g], masks[g], sd[g], d[g]);
        }
    }

    for (g, states) in states.iter_mut().enumerate() {
        let mut cols = [[0u32; LANES]; 4];
        for (col, v) in cols.iter_mut().zip([sa[g], sb[g], sc[g], sd[g]]) {
            // SAFETY: `col` is 64 writable bytes; the store is unaligned.
            unsafe { _mm512_storeu_si512(col.as_mut_ptr().cast(), v) };
        }
        for (lane, state) in states.iter_mut().enumerate() {
            for (word, col) in state.iter_mut().zip(&cols) {
                *word = col[lane];
            }
        }
    }
}

/// Sixteen 32-bit words into one register.
#[target_feature(enable = "avx512f")]
#[inline]
fn load_words(words: [u32; LANES]) -> __m512i {
    // SAFETY: `words` is 64 readable bytes; the load is unaligned.
    unsafe { _mm512_loadu_si512(words.as_ptr().cast()) }
}

/// The 16x16 transpose of 32-bit words: `rows[i]` is block `i`, result `j` is word `j` of each
/// block (lane `i` from block `i`).
#[target_feature(enable = "avx512f")]
#[inline]
fn transpose(rows: &[__m512i; LANES]) -> [__m512i; LANES] {
    // Within each 128-bit lane, per group of four rows r0..r3: u[m] = (r0[m], r1[m], r2[m],
    // r3[m]) for word m of that 128-bit lane.
    let mut u = *rows;
    for g in 0..4 {
        let r = &rows[4 * g..4 * g + 4];
        let t0 = _mm512_unpacklo_epi32(r[0], r[1]);
        let t1 = _mm512_unpackhi_epi32(r[0], r[1]);
        let t2 = _mm512_unpacklo_epi32(r[2], r[3]);
        let t3 = _mm512_unpackhi_epi32(r[2], r[3]);
        u[4 * g] = _mm512_unpacklo_epi64(t0, t2);
        u[4 * g + 1] = _mm512_unpackhi_epi64(t0, t2);
        u[4 * g + 2] = _mm512_unpacklo_epi64(t1, t3);
        u[4 * g + 3] = _mm512_unpackhi_epi64(t1, t3);
    }
    // Then the 128-bit lanes: word 4k + m of all blocks is 128-bit lane k of u[m], u[4 + m],
    // u[8 + m], u[12 + m].
    let mut w = u;
    for m in 0..4 {
        let x_lo = _mm512_shuffle_i32x4::<0x44>(u[m], u[4 + m]);
        let x_hi = _mm512_shuffle_i32x4::<0xEE>(u[m], u[4 + m]);
        let y_lo = _mm512_shuffle_i32x4::<0x44>(u[8 + m], u[12 + m]);
        let y_hi = _mm512_shuffle_i32x4::<0xEE>(u[8 + m], u[12 + m]);
        w[m] = _mm512_shuffle_i32x4::<0x88>(x_lo, y_lo);
        w[4 + m] = _mm512_shuffle_i32x4::<0xDD>(x_lo, y_lo);
        w[8 + m] = _mm512_shuffle_i32x4::<0x88>(x_hi, y_hi);
        w[12 + m] = _mm512_shuffle_i32x4::<0xDD>(x_hi, y_hi);
    }
    w
}
