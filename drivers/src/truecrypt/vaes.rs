//! AES-256-XTS on VAES and AVX-512 (x86-64), chosen at run time when the CPU has them.
//!
//! The RustCrypto `aes` crate (0.8) runs AES-NI on 128-bit registers, 8 blocks at a time, and
//! stops at about 0.7x of OpenSSL's XTS on the Zen 4 build host. Here one 512-bit `vaesdec`
//! does a round of four blocks, and a whole 512-byte data unit (32 blocks, eight registers) is
//! in flight at once, so the AES units seldom wait on a round's latency. The 32 tweaks of a unit
//! are made in registers: the first four by doubling in scalar code, the other 28 by multiplying
//! those four by x^4, x^8, ... x^28 in GF(2^128) (a shift per 64-bit lane, the carry between
//! lanes, and a carry-less multiply by 0x87 for the bits that leave the top).
//!
//! This is the crate's second `unsafe` module (after `ioctl`): the intrinsics need the CPU
//! features checked at run time, and the loads and stores take raw pointers. Every block says why
//! it is sound. [`XtsAes::new`] returns `None` on a CPU without the features, and the caller
//! keeps the portable `aes` path.
//!
//! Why not OpenSSL's EVP AES-256-XTS through the `openssl` crate: the OpenSSL 3.0 of the build
//! host runs XTS on 128-bit AES-NI (~9 GB/s), which with the read's copy out of the page cache
//! would leave the read near 0.6x of itself; it would also add libssl-dev to the build and C
//! code under the reading of customer media. This kernel has no new dependency.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{
    __m128i, __m512i, _mm512_aesdec_epi128, _mm512_aesdeclast_epi128, _mm512_aesenc_epi128,
    _mm512_aesenclast_epi128, _mm512_broadcast_i32x4, _mm512_bslli_epi128,
    _mm512_clmulepi64_epi128, _mm512_loadu_si512, _mm512_mask_storeu_epi8, _mm512_maskz_loadu_epi8,
    _mm512_set1_epi64, _mm512_setzero_si512, _mm512_slli_epi64, _mm512_srli_epi64,
    _mm512_storeu_si512, _mm512_xor_si512, _mm_aesimc_si128, _mm_aeskeygenassist_si128,
    _mm_loadu_si128, _mm_setzero_si128, _mm_shuffle_epi32, _mm_slli_si128, _mm_storeu_si128,
    _mm_xor_si128,
};

use zeroize::Zeroize;

use super::xts::UNIT;

/// AES-256 rounds plus the initial key: 15 round keys.
const ROUND_KEYS: usize = 15;

/// The round keys of one XTS-AES-256 key pair (wiped on drop).
pub(super) struct XtsAes {
    /// Data key, encryption schedule.
    enc: [u128; ROUND_KEYS],
    /// Data key, decryption schedule (the equivalent inverse cipher's, for `aesdec`).
    dec: [u128; ROUND_KEYS],
    /// Tweak key, encryption schedule.
    tweak: [u128; ROUND_KEYS],
}

impl Drop for XtsAes {
    fn drop(&mut self) {
        self.enc.zeroize();
        self.dec.zeroize();
        self.tweak.zeroize();
    }
}

/// Whether this CPU runs the VAES path (`is_x86_feature_detected!` caches the answer).
pub(super) fn supported() -> bool {
    #[cfg(not(target_arch = "x86_64"))]
    return false;
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("aes")
        && std::arch::is_x86_feature_detected!("vaes")
        && std::arch::is_x86_feature_detected!("vpclmulqdq")
        && std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw");
}

impl XtsAes {
    /// Schedules the data and tweak keys; `None` if the CPU lacks VAES or AVX-512.
    pub(super) fn new(data_key: &[u8], tweak_key: &[u8]) -> Option<Self> {
        let data_key: &[u8; 32] = data_key.try_into().ok()?;
        let tweak_key: &[u8; 32] = tweak_key.try_into().ok()?;
        #[cfg(target_arch = "x86_64")]
        if supported() {
            let mut keys = Self {
                enc: [0; ROUND_KEYS],
                dec: [0; ROUND_KEYS],
                tweak: [0; ROUND_KEYS],
            };
            // SAFETY: `supported()` checked that the CPU has AES-NI.
            unsafe {
                expand_key(data_key, &mut keys.enc, Some(&mut keys.dec));
                expand_key(tweak_key, &mut keys.tweak, None);
            }
            return Some(keys);
        }
        let _ = (data_key, tweak_key);
        None
    }

    /// One XTS pass over `buf` (a multiple of 16 bytes; a last unit may be short), whose first
    /// unit has number `first_unit`: decrypts or encrypts in place.
    pub(super) fn pass(&self, buf: &mut [u8], first_unit: u64, encrypt: bool) {
        let p = buf.as_mut_ptr();
        // SAFETY: `p` is valid for reads and writes of `buf.len()` bytes, and the source and
        // destination are the same bytes (the kernel loads a group before it stores it).
        unsafe { self.run(p, p, buf.len(), first_unit, encrypt) }
    }

    /// [`XtsAes::pass`] from `src` into `dst`, which must be as long.
    ///
    /// # Panics
    ///
    /// The lengths differ.
    pub(super) fn pass_from(&self, src: &[u8], dst: &mut [u8], first_unit: u64, encrypt: bool) {
        assert_eq!(src.len(), dst.len(), "XTS source and destination lengths");
        // SAFETY: `src` is valid for reads and `dst` for writes of their (equal) length; a
        // shared and a mutable borrow cannot overlap.
        unsafe {
            self.run(
                src.as_ptr(),
                dst.as_mut_ptr(),
                src.len(),
                first_unit,
                encrypt,
            )
        }
    }

    /// # Safety
    ///
    /// `src` must be valid for reads and `dst` for writes of `len` bytes, and they must be the
    /// same pointer or not overlap.
    unsafe fn run(&self, src: *const u8, dst: *mut u8, len: usize, first_unit: u64, encrypt: bool) {
        debug_assert!(len.is_multiple_of(16));
        #[cfg(target_arch = "x86_64")]
        for (i, at) in (0..len).step_by(MAX_UNITS * UNIT).enumerate() {
            let unit = first_unit.wrapping_add((i * MAX_UNITS) as u64);
            let n = (len - at).min(MAX_UNITS * UNIT);
            // SAFETY: an `XtsAes` exists only if `new` found AES-NI, VAES, VPCLMULQDQ,
            // AVX-512F and AVX-512BW on this CPU; `at + n <= len`, so both ranges stay inside
            // what the caller vouched for.
            unsafe {
                if encrypt {
                    xts_batch::<true>(self, src.add(at), dst.add(at), n, unit);
                } else {
                    xts_batch::<false>(self, src.add(at), dst.add(at), n, unit);
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (src, dst, len, first_unit, encrypt);
    }
}

/// Units per kernel call: their first tweaks are encrypted together, in four registers.
const MAX_UNITS: usize = 16;

/// AES-256 key expansion with `aeskeygenassist`; with `dec`, also the decryption schedule.
///
/// # Safety
///
/// The CPU must have AES-NI.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "aes")]
unsafe fn expand_key(
    key: &[u8; 32],
    enc: &mut [u128; ROUND_KEYS],
    dec: Option<&mut [u128; ROUND_KEYS]>,
) {
    // SAFETY: each half of `key` is 16 readable bytes; the loads are unaligned.
    let (mut a, mut b) = unsafe {
        (
            _mm_loadu_si128(key.as_ptr().cast()),
            _mm_loadu_si128(key.as_ptr().add(16).cast()),
        )
    };
    let mut keys = [a; ROUND_KEYS];
    keys[1] = b;
    // Rounds 2..=13 in pairs; round key 14 needs only the first half of a pair.
    macro_rules! pair {
        ($i:expr, $rcon:expr) => {
            a = mix(
                a,
                _mm_shuffle_epi32::<0xff>(_mm_aeskeygenassist_si128::<$rcon>(b)),
            );
            keys[$i] = a;
            b = mix(
                b,
                _mm_shuffle_epi32::<0xaa>(_mm_aeskeygenassist_si128::<0>(a)),
            );
            keys[$i + 1] = b;
        };
    }
    pair!(2, 0x01);
    pair!(4, 0x02);
    pair!(6, 0x04);
    pair!(8, 0x08);
    pair!(10, 0x10);
    pair!(12, 0x20);
    a = mix(
        a,
        _mm_shuffle_epi32::<0xff>(_mm_aeskeygenassist_si128::<0x40>(b)),
    );
    keys[14] = a;
    for (out, k) in enc.iter_mut().zip(&keys) {
        *out = to_u128(*k);
    }
    if let Some(dec) = dec {
        // The equivalent inverse cipher: the keys reversed, InvMixColumns on the inner ones.
        for (i, out) in dec.iter_mut().enumerate() {
            let k = keys[ROUND_KEYS - 1 - i];
            *out = to_u128(if i == 0 || i == ROUND_KEYS - 1 {
                k
            } else {
                _mm_aesimc_si128(k)
            });
        }
    }
    // Wipe the stack copy of the schedule (black_box keeps the stores).
    keys = [_mm_setzero_si128(); ROUND_KEYS];
    std::hint::black_box(&keys);
    a = keys[0];
    b = keys[0];
    std::hint::black_box((&a, &b));
}

/// One step of the FIPS-197 schedule: `prev` xored with its own shifted copies, then with the
/// broadcast word that `aeskeygenassist` made from the other half.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "aes")]
#[inline]
fn mix(prev: __m128i, assist: __m128i) -> __m128i {
    let mut k = prev;
    k = _mm_xor_si128(k, _mm_slli_si128::<4>(k));
    k = _mm_xor_si128(k, _mm_slli_si128::<4>(k));
    k = _mm_xor_si128(k, _mm_slli_si128::<4>(k));
    _mm_xor_si128(k, assist)
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn to_u128(v: __m128i) -> u128 {
    let mut out = [0u8; 16];
    // SAFETY: `out` is 16 writable bytes; the store is unaligned (SSE2 is part of x86-64).
    unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), v) };
    u128::from_le_bytes(out)
}

/// Broadcasts round key `k` to the four 128-bit lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn broadcast(k: u128) -> __m512i {
    let bytes = k.to_le_bytes();
    // SAFETY: `bytes` is 16 readable bytes; the load is unaligned.
    _mm512_broadcast_i32x4(unsafe { _mm_loadu_si128(bytes.as_ptr().cast()) })
}

/// Multiplies each 128-bit lane of `t` (an XTS tweak, little-endian) by x^K in GF(2^128)
/// (BACK = 64 - K, 0 < K < 57): both 64-bit halves shift left by K, the low half's top bits
/// carry into the high half, and the high half's top bits fold back into the low one times
/// x^7 + x^2 + x + 1 (0x87).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,vpclmulqdq")]
#[inline]
fn mul_xk<const K: u32, const BACK: u32>(t: __m512i, poly: __m512i) -> __m512i {
    let shifted = _mm512_slli_epi64::<K>(t);
    let carries = _mm512_srli_epi64::<BACK>(t);
    // The low half's carry into the high half; the high half's drops out of the lane ...
    let inner = _mm512_bslli_epi128::<8>(carries);
    // ... and comes back reduced: its high qword (imm bit 0) times the polynomial (low qword).
    let folded = _mm512_clmulepi64_epi128::<0x01>(carries, poly);
    _mm512_xor_si512(_mm512_xor_si512(shifted, inner), folded)
}

/// Multiplies a tweak by x in GF(2^128), little-endian as IEEE 1619 lays it out.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn mul_x(t: u128) -> u128 {
    (t << 1) ^ ((t >> 127) * 0x87)
}

/// The four tweaks `t, t*x, t*x^2, t*x^3` of a four-block group, one per lane.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn first_four(t: u128) -> __m512i {
    let t1 = mul_x(t);
    let t2 = mul_x(t1);
    let t3 = mul_x(t2);
    let mut bytes = [0u8; 64];
    for (lane, v) in bytes.chunks_exact_mut(16).zip([t, t1, t2, t3]) {
        lane.copy_from_slice(&v.to_le_bytes());
    }
    // SAFETY: `bytes` is 64 readable bytes; the load is unaligned.
    unsafe { _mm512_loadu_si512(bytes.as_ptr().cast()) }
}

/// The AES rounds on four blocks per register, `N` registers interleaved so the AES units
/// always have an independent round to start.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "vaes,avx512f")]
#[inline]
fn rounds<const ENCRYPT: bool, const N: usize>(x: &mut [__m512i; N], rk: &[__m512i; ROUND_KEYS]) {
    for v in x.iter_mut() {
        *v = _mm512_xor_si512(*v, rk[0]);
    }
    for k in &rk[1..ROUND_KEYS - 1] {
        for v in x.iter_mut() {
            *v = if ENCRYPT {
                _mm512_aesenc_epi128(*v, *k)
            } else {
                _mm512_aesdec_epi128(*v, *k)
            };
        }
    }
    let last = rk[ROUND_KEYS - 1];
    for v in x.iter_mut() {
        *v = if ENCRYPT {
            _mm512_aesenclast_epi128(*v, last)
        } else {
            _mm512_aesdeclast_epi128(*v, last)
        };
    }
}

/// Broadcasts a 15-key schedule.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn broadcast_all(keys: &[u128; ROUND_KEYS]) -> [__m512i; ROUND_KEYS] {
    let mut out = [_mm512_setzero_si512(); ROUND_KEYS];
    for (o, k) in out.iter_mut().zip(keys) {
        *o = broadcast(*k);
    }
    out
}

/// One XTS pass over `len` bytes, at most [`MAX_UNITS`] units (any more are left alone), from
/// `src` into `dst`.
///
/// # Safety
///
/// The CPU must have AES-NI, VAES, VPCLMULQDQ, AVX-512F and AVX-512BW. `src` must be valid for
/// reads and `dst` for writes of `len` bytes, the same pointer or not overlapping.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "aes,vaes,vpclmulqdq,avx512f,avx512bw")]
unsafe fn xts_batch<const ENCRYPT: bool>(
    keys: &XtsAes,
    src: *const u8,
    dst: *mut u8,
    len: usize,
    first_unit: u64,
) {
    let nunits = len.div_ceil(UNIT).min(MAX_UNITS);

    // The first tweak of each unit, E_k2(unit number): 16 blocks in four registers. (u128s,
    // not bytes: x86-64 is little-endian, as the tweaks are, and 16 words wipe faster than
    // 256 bytes.)
    let mut unit_tweaks = [0u128; MAX_UNITS];
    for (i, t) in unit_tweaks.iter_mut().take(nunits).enumerate() {
        *t = u128::from(first_unit.wrapping_add(i as u64));
    }
    let mut tw = [_mm512_setzero_si512(); 4];
    for (i, v) in tw.iter_mut().enumerate() {
        // SAFETY: `unit_tweaks` is 4 x 64 readable bytes; the load is unaligned.
        *v = unsafe { _mm512_loadu_si512(unit_tweaks.as_ptr().add(4 * i).cast()) };
    }
    rounds::<true, 4>(&mut tw, &broadcast_all(&keys.tweak));
    for (i, v) in tw.iter().enumerate() {
        // SAFETY: as for the loads, writing.
        unsafe { _mm512_storeu_si512(unit_tweaks.as_mut_ptr().add(4 * i).cast(), *v) };
    }

    let rk = broadcast_all(if ENCRYPT { &keys.enc } else { &keys.dec });
    let poly = _mm512_set1_epi64(0x87);

    for (u, &t) in unit_tweaks.iter().enumerate().take(nunits) {
        let at = u * UNIT;
        let unit_len = (len - at).min(UNIT);
        // SAFETY: `at < len`: inside both ranges the caller vouched for.
        let (from, to) = unsafe { (src.add(at), dst.add(at)) };
        let t0 = first_four(t);
        if unit_len == UNIT {
            // Eight registers: the tweaks of blocks 4i..4i+3 are those of blocks 0..3 times x^4i.
            let tweaks = [
                t0,
                mul_xk::<4, 60>(t0, poly),
                mul_xk::<8, 56>(t0, poly),
                mul_xk::<12, 52>(t0, poly),
                mul_xk::<16, 48>(t0, poly),
                mul_xk::<20, 44>(t0, poly),
                mul_xk::<24, 40>(t0, poly),
                mul_xk::<28, 36>(t0, poly),
            ];
            let mut x = [_mm512_setzero_si512(); 8];
            for (i, (v, tweak)) in x.iter_mut().zip(&tweaks).enumerate() {
                // SAFETY: the unit is 512 bytes from `from`: 64-byte loads at 0, 64, ... 448
                // stay inside it. All eight are loaded before any store (in-place calls).
                let block = unsafe { _mm512_loadu_si512(from.add(64 * i).cast()) };
                *v = _mm512_xor_si512(block, *tweak);
            }
            rounds::<ENCRYPT, 8>(&mut x, &rk);
            for (i, (v, tweak)) in x.iter().zip(&tweaks).enumerate() {
                // SAFETY: as for the loads, 512 bytes from `to`.
                unsafe { _mm512_storeu_si512(to.add(64 * i).cast(), _mm512_xor_si512(*v, *tweak)) };
            }
        } else {
            // A short unit (the 448-byte header): four blocks at a time, the last group masked.
            let mut t4 = t0;
            for g in (0..unit_len).step_by(64) {
                let n = (unit_len - g).min(64);
                let mask: u64 = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
                // SAFETY: the mask covers `n` bytes from `from + g` and `to + g`, inside the
                // unit; masked-off bytes are neither read nor written, and cannot fault.
                let block = unsafe { _mm512_maskz_loadu_epi8(mask, from.add(g).cast()) };
                let mut x = [_mm512_xor_si512(block, t4)];
                rounds::<ENCRYPT, 1>(&mut x, &rk);
                // SAFETY: as for the load.
                unsafe {
                    _mm512_mask_storeu_epi8(to.add(g).cast(), mask, _mm512_xor_si512(x[0], t4))
                };
                t4 = mul_xk::<4, 60>(t4, poly);
            }
        }
    }
    unit_tweaks.zeroize();
}
