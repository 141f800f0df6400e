//! The MD5 compression on AVX2, for CPUs without AVX-512: a group of 16 lanes as two 256-bit
//! halves of 8 lanes, whose independent chains of steps run interleaved.
//!
//! As in `avx512`, each round loads one 64-byte block per lane and transposes the words in
//! registers (two 8x8 transposes per half: unpack 32, unpack 64, `vperm2i128`). AVX2 has no
//! rotate and no three-input logic, so a rotate is two shifts and an or, and F, G, H and I take
//! two or three instructions each. A lane without a block this round reads a static zero block
//! and keeps its state (a blend).

use std::arch::x86_64::{
    __m256i, _mm256_add_epi32, _mm256_and_si256, _mm256_blendv_epi8, _mm256_loadu_si256,
    _mm256_or_si256, _mm256_permute2x128_si256, _mm256_set1_epi32, _mm256_setzero_si256,
    _mm256_slli_epi32, _mm256_srli_epi32, _mm256_storeu_si256, _mm256_unpackhi_epi32,
    _mm256_unpackhi_epi64, _mm256_unpacklo_epi32, _mm256_unpacklo_epi64, _mm256_xor_si256,
};

use super::{BLOCK, K, LANES};

/// Lanes in a 256-bit register.
const HALF: usize = LANES / 2;

/// Proof that this CPU has AVX2: only [`Avx2::new`] makes one, after checking.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx2(());

impl Avx2 {
    /// `Some` if the CPU has AVX2 (`is_x86_feature_detected!` caches the answer).
    pub(crate) fn new() -> Option<Self> {
        std::arch::is_x86_feature_detected!("avx2").then_some(Self(()))
    }

    /// Compresses blocks `0..rounds` of every `blocks[i]` that has them into `states[i]`; a lane
    /// with fewer blocks is left as it is once they are used up.
    pub(super) fn compress(
        self,
        states: &mut [[u32; 4]; LANES],
        blocks: &[&[u8]; LANES],
        rounds: usize,
    ) {
        // SAFETY: `self` exists only if `new` found AVX2 on this CPU.
        unsafe { compress16(states, blocks, rounds) }
    }
}

/// The block a lane without data reads (its result is discarded).
static ZERO_BLOCK: [u8; BLOCK] = [0; BLOCK];

/// See [`Avx2::compress`].
#[target_feature(enable = "avx2")]
fn compress16(states: &mut [[u32; 4]; LANES], blocks: &[&[u8]; LANES], rounds: usize) {
    let zero = _mm256_setzero_si256();
    let (mut sa, mut sb, mut sc, mut sd) = ([zero; 2], [zero; 2], [zero; 2], [zero; 2]);
    for (h, states) in states.chunks_exact(HALF).enumerate() {
        let mut cols = [[0u32; HALF]; 4];
        for (lane, state) in states.iter().enumerate() {
            for (col, word) in cols.iter_mut().zip(state) {
                col[lane] = *word;
            }
        }
        [sa[h], sb[h], sc[h], sd[h]] = cols.map(|col| load_words(col));
    }

    let mut w = [[zero; 16]; 2];
    let mut masks = [zero; 2];
    for round in 0..rounds {
        let at = round * BLOCK;
        for (h, (w, mask)) in w.iter_mut().zip(&mut masks).enumerate() {
            let mut lo = [zero; HALF];
            let mut hi = [zero; HALF];
            let mut active = [0i32; HALF];
            for (lane, data) in blocks[h * HALF..h * HALF + HALF].iter().enumerate() {
                let block = match data.get(at..at + BLOCK) {
                    Some(block) => {
                        active[lane] = -1;
                        block
                    }
                    None => &ZERO_BLOCK[..],
                };
                // SAFETY: `block` is 64 readable bytes; both loads are unaligned and in it.
                unsafe {
                    lo[lane] = _mm256_loadu_si256(block.as_ptr().cast());
                    hi[lane] = _mm256_loadu_si256(block.as_ptr().add(32).cast());
                }
            }
            *mask = load_words(active.map(|a| a as u32));
            let (first, second) = w.split_at_mut(HALF);
            transpose(&lo, first);
            transpose(&hi, second);
        }

        let (mut a, mut b, mut c, mut d) = (sa, sb, sc, sd);
        let ones = _mm256_set1_epi32(-1);
        // F = d ^ (b & (c ^ d)); G = c ^ (d & (b ^ c)); H = b ^ c ^ d; I = c ^ (b | !d).
        macro_rules! f {
            ($b:expr, $c:expr, $d:expr) => {
                _mm256_xor_si256($d, _mm256_and_si256($b, _mm256_xor_si256($c, $d)))
            };
        }
        macro_rules! g {
            ($b:expr, $c:expr, $d:expr) => {
                _mm256_xor_si256($c, _mm256_and_si256($d, _mm256_xor_si256($b, $c)))
            };
        }
        macro_rules! h {
            ($b:expr, $c:expr, $d:expr) => {
                _mm256_xor_si256(_mm256_xor_si256($b, $c), $d)
            };
        }
        macro_rules! i {
            ($b:expr, $c:expr, $d:expr) => {
                _mm256_xor_si256($c, _mm256_or_si256($b, _mm256_xor_si256($d, ones)))
            };
        }
        macro_rules! step {
            ($f:ident, $a:ident, $b:ident, $c:ident, $d:ident, $m:expr, $k:expr, $s:expr) => {
                for x in 0..2 {
                    let t = _mm256_add_epi32(
                        _mm256_add_epi32($a[x], w[x][$m]),
                        _mm256_set1_epi32(K[$k] as i32),
                    );
                    let t = _mm256_add_epi32(t, $f!($b[x], $c[x], $d[x]));
                    let t = _mm256_or_si256(
                        _mm256_slli_epi32::<$s>(t),
                        _mm256_srli_epi32::<{ 32 - $s }>(t),
                    );
                    $a[x] = _mm256_add_epi32($b[x], t);
                }
            };
        }
        macro_rules! quad {
            (
                $f:ident,
                [$g0:expr, $g1:expr, $g2:expr, $g3:expr],
                $k:expr,
                [$s0:literal, $s1:literal, $s2:literal, $s3:literal]
            ) => {
                step!($f, a, b, c, d, $g0, $k, $s0);
                step!($f, d, a, b, c, $g1, $k + 1, $s1);
                step!($f, c, d, a, b, $g2, $k + 2, $s2);
                step!($f, b, c, d, a, $g3, $k + 3, $s3);
            };
        }
        quad!(f, [0, 1, 2, 3], 0, [7, 12, 17, 22]);
        quad!(f, [4, 5, 6, 7], 4, [7, 12, 17, 22]);
        quad!(f, [8, 9, 10, 11], 8, [7, 12, 17, 22]);
        quad!(f, [12, 13, 14, 15], 12, [7, 12, 17, 22]);
        quad!(g, [1, 6, 11, 0], 16, [5, 9, 14, 20]);
        quad!(g, [5, 10, 15, 4], 20, [5, 9, 14, 20]);
        quad!(g, [9, 14, 3, 8], 24, [5, 9, 14, 20]);
        quad!(g, [13, 2, 7, 12], 28, [5, 9, 14, 20]);
        quad!(h, [5, 8, 11, 14], 32, [4, 11, 16, 23]);
        quad!(h, [1, 4, 7, 10], 36, [4, 11, 16, 23]);
        quad!(h, [13, 0, 3, 6], 40, [4, 11, 16, 23]);
        quad!(h, [9, 12, 15, 2], 44, [4, 11, 16, 23]);
        quad!(i, [0, 7, 14, 5], 48, [6, 10, 15, 21]);
        quad!(i, [12, 3, 10, 1], 52, [6, 10, 15, 21]);
        quad!(i, [8, 15, 6, 13], 56, [6, 10, 15, 21]);
        quad!(i, [4, 11, 2, 9], 60, [6, 10, 15, 21]);

        // Lanes in the mask take the block's result; the others keep their state.
        for x in 0..2 {
            for (s, v) in [(&mut sa, a), (&mut sb, b), (&mut sc, c), (&mut sd, d)] {
                s[x] = _mm256_blendv_epi8(s[x], _mm256_add_epi32(s[x], v[x]), masks[x]);
            }
        }
    }

    for (h, states) in states.chunks_exact_mut(HALF).enumerate() {
        let mut cols = [[0u32; HALF]; 4];
        for (col, v) in cols.iter_mut().zip([sa[h], sb[h], sc[h], sd[h]]) {
            // SAFETY: `col` is 32 writable bytes; the store is unaligned.
            unsafe { _mm256_storeu_si256(col.as_mut_ptr().cast(), v) };
        }
        for (lane, state) in states.iter_mut().enumerate() {
            for (word, col) in state.iter_mut().zip(&cols) {
                *word = col[lane];
            }
        }
    }
}

/// Eight 32-bit words into one register.
#[target_feature(enable = "avx2")]
#[inline]
fn load_words(words: [u32; HALF]) -> __m256i {
    // SAFETY: `words` is 32 readable bytes; the load is unaligned.
    unsafe { _mm256_loadu_si256(words.as_ptr().cast()) }
}

/// The 8x8 transpose of 32-bit words: `rows[i]` is 32 bytes of lane `i`'s block, `out[j]` word
/// `j` of those bytes in every lane.
#[target_feature(enable = "avx2")]
#[inline]
fn transpose(rows: &[__m256i; HALF], out: &mut [__m256i]) {
    let r = rows;
    // u[m] (m < 4) of rows 0..3 and u[4 + m] of rows 4..7: word m in the low 128 bits, word
    // 4 + m in the high 128 bits, of four rows each.
    let mut u = *rows;
    for g in 0..2 {
        let t0 = _mm256_unpacklo_epi32(r[4 * g], r[4 * g + 1]);
        let t1 = _mm256_unpackhi_epi32(r[4 * g], r[4 * g + 1]);
        let t2 = _mm256_unpacklo_epi32(r[4 * g + 2], r[4 * g + 3]);
        let t3 = _mm256_unpackhi_epi32(r[4 * g + 2], r[4 * g + 3]);
        u[4 * g] = _mm256_unpacklo_epi64(t0, t2);
        u[4 * g + 1] = _mm256_unpackhi_epi64(t0, t2);
        u[4 * g + 2] = _mm256_unpacklo_epi64(t1, t3);
        u[4 * g + 3] = _mm256_unpackhi_epi64(t1, t3);
    }
    for m in 0..4 {
        out[m] = _mm256_permute2x128_si256::<0x20>(u[m], u[4 + m]);
        out[4 + m] = _mm256_permute2x128_si256::<0x31>(u[m], u[4 + m]);
    }
}
