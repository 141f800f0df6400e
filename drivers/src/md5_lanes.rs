//! Multi-buffer MD5: many independent messages hashed at once, one per 32-bit SIMD lane.
//!
//! MD5 of one stream is a chain of 64 dependent steps per 64-byte block, so one message runs at
//! ~900 MB/s per core at best, however wide the CPU ([`digest`] and [`Md5Lane::update`]: the
//! portable scalar code, its steps ordered for the shortest chain, about as fast as OpenSSL's
//! assembly on the Zen 5 build host, where md-5 runs at ~690). The station hashes many
//! independent messages (each 8 MiB multipart part for its Content-MD5 and the multipart ETag,
//! many small files), and those chains can run side by side: an AVX-512 register holds one 32-bit state word of 16 messages,
//! and each MD5 step is the same handful of instructions on all 16 (`vpternlogd` for F, G, H and
//! I, `vprold` for the rotates). One core then hashes 16 blocks in about the time of one.
//!
//! [`update_many`] tops up each lane's pending partial block first (compressed by the scalar code
//! if it completes), then feeds the lanes' whole 64-byte blocks to the SIMD kernel, and keeps each
//! lane's tail (< 64 bytes) pending. The kernel loads one block of each lane and transposes the
//! 16x16 words in registers. One group's 64 steps are a single chain of dependent instructions
//! (about 8 cycles a step on the Zen 5 build host), so with more than 16 lanes two groups run
//! interleaved and fill each other's waits: 32 lanes hash ~1.6x as fast as 16. Lanes of unequal
//! length are handled with a mask: a lane whose blocks are used up reads a dummy block and its
//! state is not updated; once a single lane is left, its remaining blocks go to the scalar code.
//! Equal lengths (16 parts of 8 MiB) keep all lanes busy to the end. [`digest_many`] also sends
//! each message's last block or two (tail and padding) through the kernel, so small files are
//! hashed 16 or 32 at a time too.
//!
//! Without AVX-512F the same scheme runs on AVX2 (`md5_lanes::avx2`: a group of 16 lanes as two
//! 8-lane registers, rotates and F..I in two or three instructions each; ~2.8 GB/s for 16 lanes
//! on the build host against ~6.4 on AVX-512). Without either (or off x86-64) everything runs
//! through the scalar MD5 compression (`compress_blocks`), one lane after another. All paths
//! give the same bytes; the tests run every kernel the CPU has against md-5.
//!
//! This module allows `unsafe` for the intrinsics of `md5_lanes::avx512` and `md5_lanes::avx2`,
//! whose CPU features are checked at run time; every block says why it is sound.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

/// Lanes per SIMD group: 32-bit words in a 512-bit register.
const LANES: usize = 16;

/// Groups of 16 lanes the SIMD kernel runs interleaved: one group's 64 steps are a chain of
/// dependent instructions, and a second independent chain fills the cycles it waits.
const GROUPS: usize = 2;

/// Lanes taken per pass of [`update_many`].
const CHUNK: usize = LANES * GROUPS;

/// MD5 block size in bytes.
const BLOCK: usize = 64;

/// The initial MD5 state (RFC 1321, 3.3).
const INIT: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

/// The 64 additive constants, `floor(abs(sin(i + 1)) * 2^32)`.
const K: [u32; 64] = [
    0xd76a_a478,
    0xe8c7_b756,
    0x2420_70db,
    0xc1bd_ceee,
    0xf57c_0faf,
    0x4787_c62a,
    0xa830_4613,
    0xfd46_9501,
    0x6980_98d8,
    0x8b44_f7af,
    0xffff_5bb1,
    0x895c_d7be,
    0x6b90_1122,
    0xfd98_7193,
    0xa679_438e,
    0x49b4_0821,
    0xf61e_2562,
    0xc040_b340,
    0x265e_5a51,
    0xe9b6_c7aa,
    0xd62f_105d,
    0x0244_1453,
    0xd8a1_e681,
    0xe7d3_fbc8,
    0x21e1_cde6,
    0xc337_07d6,
    0xf4d5_0d87,
    0x455a_14ed,
    0xa9e3_e905,
    0xfcef_a3f8,
    0x676f_02d9,
    0x8d2a_4c8a,
    0xfffa_3942,
    0x8771_f681,
    0x6d9d_6122,
    0xfde5_380c,
    0xa4be_ea44,
    0x4bde_cfa9,
    0xf6bb_4b60,
    0xbebf_bc70,
    0x289b_7ec6,
    0xeaa1_27fa,
    0xd4ef_3085,
    0x0488_1d05,
    0xd9d4_d039,
    0xe6db_99e5,
    0x1fa2_7cf8,
    0xc4ac_5665,
    0xf429_2244,
    0x432a_ff97,
    0xab94_23a7,
    0xfc93_a039,
    0x655b_59c3,
    0x8f0c_cc92,
    0xffef_f47d,
    0x8584_5dd1,
    0x6fa8_7e4f,
    0xfe2c_e6e0,
    0xa301_4314,
    0x4e08_11a1,
    0xf753_7e82,
    0xbd3a_f235,
    0x2ad7_d2bb,
    0xeb86_d391,
];

/// One message's running MD5: state words, bytes seen, the < 64 bytes not yet compressed.
#[derive(Clone)]
pub struct Md5Lane {
    /// The chaining state A, B, C, D.
    state: [u32; 4],
    /// Bytes fed so far (the length field counts bits modulo 2^64).
    len: u64,
    /// Bytes not yet compressed: the start of an incomplete block.
    pending: [u8; BLOCK],
    /// How many bytes of `pending` are used (< 64).
    pending_len: usize,
}

impl Default for Md5Lane {
    fn default() -> Self {
        Self::new()
    }
}

impl Md5Lane {
    /// An empty message's state.
    pub fn new() -> Self {
        Self {
            state: INIT,
            len: 0,
            pending: [0; BLOCK],
            pending_len: 0,
        }
    }

    /// Feeds `data` to this lane alone (scalar code).
    pub fn update(&mut self, data: &[u8]) {
        let rest = self.top_up(data);
        let whole = rest.len() / BLOCK * BLOCK;
        let (blocks, tail) = rest.split_at(whole);
        compress_blocks(&mut self.state, blocks);
        self.keep(tail);
    }

    /// The digest, after the standard padding (0x80, zeros, the length in bits little-endian).
    pub fn finalize(mut self) -> [u8; 16] {
        let (last, n) = final_blocks(&self.pending[..self.pending_len], self.len);
        compress_blocks(&mut self.state, &last[..n]);
        self.digest()
    }

    /// The state as the digest's bytes (once the final blocks are compressed).
    fn digest(&self) -> [u8; 16] {
        state_bytes(self.state)
    }

    /// Counts `data`, completes the pending block from its start (compressing it if it fills
    /// up) and returns the rest of `data`, which starts on a block boundary of the message.
    fn top_up<'a>(&mut self, data: &'a [u8]) -> &'a [u8] {
        self.len = self.len.wrapping_add(data.len() as u64);
        if self.pending_len == 0 {
            return data;
        }
        let take = (BLOCK - self.pending_len).min(data.len());
        let (head, rest) = data.split_at(take);
        self.pending[self.pending_len..self.pending_len + take].copy_from_slice(head);
        self.pending_len += take;
        if self.pending_len == BLOCK {
            let block = self.pending;
            compress(&mut self.state, &block);
            self.pending_len = 0;
        }
        rest
    }

    /// Keeps `tail` (< 64 bytes, the pending block being empty when there is a tail) pending.
    fn keep(&mut self, tail: &[u8]) {
        if tail.is_empty() {
            return;
        }
        debug_assert!(self.pending_len == 0 && tail.len() < BLOCK);
        self.pending[..tail.len()].copy_from_slice(tail);
        self.pending_len = tail.len();
    }
}

/// The MD5 of one message, hashed as a single stream on this thread (scalar code).
pub fn digest(data: &[u8]) -> [u8; 16] {
    let (blocks, tail) = data.split_at(data.len() / BLOCK * BLOCK);
    let mut state = INIT;
    compress_blocks(&mut state, blocks);
    let (last, n) = final_blocks(tail, data.len() as u64);
    compress_blocks(&mut state, &last[..n]);
    state_bytes(state)
}

/// MD5 state words as the digest's bytes (little-endian A, B, C, D).
fn state_bytes(state: [u32; 4]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    out
}

/// Which compression code [`update_many_with`] runs.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kernel {
    /// One lane at a time, portable.
    Scalar,
    /// 8 lanes per AVX2 register, two registers per group of 16 (where the CPU has AVX2).
    #[cfg(target_arch = "x86_64")]
    Avx2(avx2::Avx2),
    /// 16 lanes per AVX-512 register (only constructible where the CPU has it).
    #[cfg(target_arch = "x86_64")]
    Avx512(avx512::Avx512),
}

impl Kernel {
    /// The fastest kernel this CPU runs.
    pub(crate) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if let Some(k) = avx512::Avx512::new() {
            return Kernel::Avx512(k);
        }
        #[cfg(target_arch = "x86_64")]
        if let Some(k) = avx2::Avx2::new() {
            return Kernel::Avx2(k);
        }
        Kernel::Scalar
    }

    /// Every kernel this CPU runs, the scalar one first (the tests run them all).
    #[cfg(test)]
    fn available() -> Vec<Self> {
        #[allow(unused_mut)]
        let mut kernels = vec![Kernel::Scalar];
        #[cfg(target_arch = "x86_64")]
        {
            kernels.extend(avx2::Avx2::new().map(Kernel::Avx2));
            kernels.extend(avx512::Avx512::new().map(Kernel::Avx512));
        }
        kernels
    }
}

/// Feeds `data[i]` to `lanes[i]` for every i (any number of lanes, any lengths, empty allowed),
/// hashing the lanes' whole 64-byte blocks 16 at a time where the CPU allows.
///
/// The two slices should be as long as each other (checked in debug builds); otherwise only the
/// first `min(lanes.len(), data.len())` pairs are fed.
pub fn update_many(lanes: &mut [Md5Lane], data: &[&[u8]]) {
    update_many_with(Kernel::detect(), lanes, data);
}

/// The MD5 of each message.
pub fn digest_many(messages: &[&[u8]]) -> Vec<[u8; 16]> {
    digest_many_with(Kernel::detect(), messages)
}

/// [`digest_many`] on a given kernel.
pub(crate) fn digest_many_with(kernel: Kernel, messages: &[&[u8]]) -> Vec<[u8; 16]> {
    let mut lanes = vec![Md5Lane::new(); messages.len()];
    let whole: Vec<&[u8]> = messages
        .iter()
        .map(|m| &m[..m.len() / BLOCK * BLOCK])
        .collect();
    update_many_with(kernel, &mut lanes, &whole);
    // The tails and padding as one or two whole blocks per message, so they go through the SIMD
    // kernel too (all of a message under 56 bytes).
    let last: Vec<([u8; 2 * BLOCK], usize)> = messages
        .iter()
        .map(|m| final_blocks(&m[m.len() / BLOCK * BLOCK..], m.len() as u64))
        .collect();
    let last: Vec<&[u8]> = last.iter().map(|(blocks, n)| &blocks[..*n]).collect();
    update_many_with(kernel, &mut lanes, &last);
    lanes.iter().map(Md5Lane::digest).collect()
}

/// The last one or two blocks of a message of `len` bytes whose `tail` (< 64 bytes) is not
/// compressed yet: the tail, 0x80, zeros, the length in bits (little-endian, modulo 2^64).
/// Returns the buffer and how many of its bytes are used (64 or 128).
fn final_blocks(tail: &[u8], len: u64) -> ([u8; 2 * BLOCK], usize) {
    debug_assert!(tail.len() < BLOCK, "a tail is less than a block");
    let mut blocks = [0u8; 2 * BLOCK];
    let tail = &tail[..tail.len().min(BLOCK - 1)];
    blocks[..tail.len()].copy_from_slice(tail);
    blocks[tail.len()] = 0x80;
    let n = if tail.len() < BLOCK - 8 {
        BLOCK
    } else {
        2 * BLOCK
    };
    blocks[n - 8..n].copy_from_slice(&len.wrapping_mul(8).to_le_bytes());
    (blocks, n)
}

/// [`update_many`] on a given kernel.
pub(crate) fn update_many_with(kernel: Kernel, lanes: &mut [Md5Lane], data: &[&[u8]]) {
    debug_assert_eq!(lanes.len(), data.len(), "one message per lane");
    for (lanes, data) in lanes.chunks_mut(CHUNK).zip(data.chunks(CHUNK)) {
        let mut blocks: [[&[u8]; LANES]; GROUPS] = [[&[]; LANES]; GROUPS];
        let mut tails: [&[u8]; CHUNK] = [&[]; CHUNK];
        for (i, (lane, data)) in lanes.iter_mut().zip(data).enumerate() {
            let rest = lane.top_up(data);
            (blocks[i / LANES][i % LANES], tails[i]) = rest.split_at(rest.len() / BLOCK * BLOCK);
        }
        compress_chunk(kernel, lanes, &blocks);
        for (lane, tail) in lanes.iter_mut().zip(tails) {
            lane.keep(tail);
        }
    }
}

/// Compresses `blocks[i / 16][i % 16]` (whole blocks) into `lanes[i]`'s state, for the up to
/// `CHUNK` lanes of one chunk.
fn compress_chunk(kernel: Kernel, lanes: &mut [Md5Lane], blocks: &[[&[u8]; LANES]; GROUPS]) {
    // The SIMD kernels run while at least two lanes have a block: the second-largest count.
    let (mut first, mut second) = (0, 0);
    for b in blocks.iter().flatten() {
        let n = b.len() / BLOCK;
        if n > first {
            second = first;
            first = n;
        } else if n > second {
            second = n;
        }
    }
    let rounds = match kernel {
        Kernel::Scalar => 0,
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2(_) | Kernel::Avx512(_) => second,
    };
    if rounds > 0 {
        let mut states = [[[0u32; 4]; LANES]; GROUPS];
        for (i, lane) in lanes.iter().enumerate() {
            states[i / LANES][i % LANES] = lane.state;
        }
        match kernel {
            Kernel::Scalar => {}
            // One group when it holds every lane; else all of them, interleaved.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512(k) if lanes.len() <= LANES => {
                let [first_states, ..] = &mut states;
                let [first_blocks, ..] = blocks;
                k.compress::<1>(
                    std::array::from_mut(first_states),
                    std::array::from_ref(first_blocks),
                    rounds,
                );
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512(k) => k.compress::<GROUPS>(&mut states, blocks, rounds),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2(k) => {
                for (states, blocks) in states
                    .iter_mut()
                    .zip(blocks)
                    .take(lanes.len().div_ceil(LANES))
                {
                    k.compress(states, blocks, rounds);
                }
            }
        }
        for (i, lane) in lanes.iter_mut().enumerate() {
            lane.state = states[i / LANES][i % LANES];
        }
    }
    let done = rounds * BLOCK;
    for (i, lane) in lanes.iter_mut().enumerate() {
        let b = blocks[i / LANES][i % LANES];
        compress_blocks(&mut lane.state, b.get(done..).unwrap_or(&[]));
    }
}

/// Compresses every whole block of `blocks` (its length a multiple of 64) into `state`, portable
/// scalar code: the single-stream path ([`digest`], [`Md5Lane::update`]) and the SIMD kernels'
/// leftovers.
///
/// One block is a chain of 64 dependent steps `a = b + rotl(a + F(b, c, d) + M[g] + K[i], s)`,
/// so its speed is the latency of that chain, and the steps are written to keep it short
/// (about 4.5 cycles a step, as OpenSSL's assembly; ~910 MB/s on the Zen 5 build host against
/// ~690 for md-5 and ~660 for the plain RFC form):
/// - `M[g] + K[i]` is added to `a` first: it does not wait for the previous step;
/// - F is `d ^ (b & (c ^ d))`, `c ^ d` ready before `b`; I is `c ^ (b | !d)`, `!d` likewise;
/// - G is `(b & d) + (c & !d)` (the two terms share no set bit, so `+` gives the `|`), each
///   term added to `a` on its own: `c & !d` does not wait for `b`;
/// - H is `(c ^ d) ^ b`;
/// - the 64 steps are unrolled and the state stays in registers from one block to the next.
///
/// The constants are read through [`std::hint::black_box`] once a block: as literal constants
/// LLVM's reassociation moves `+ K[i]` after `+ F` (constants last), which puts one more add on
/// the chain (~740 MB/s); as values it cannot see, they stay off it (loads from L1, no cost).
/// BMI1 (`andn` for `c & !d`) does not pay: the `not` is off the chain (same rate with it).
fn compress_blocks(state: &mut [u32; 4], blocks: &[u8]) {
    let [mut a, mut b, mut c, mut d] = *state;
    for block in blocks.chunks_exact(BLOCK) {
        let k: &[u32; 64] = std::hint::black_box(&K);
        let mut m = [0u32; 16];
        for (w, chunk) in m.iter_mut().zip(block.chunks_exact(4)) {
            *w = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        let (a0, b0, c0, d0) = (a, b, c, d);
        // One step of each round: `$a` takes `M[$g] + K[$i]` first, then the round function.
        macro_rules! f {
            ($a:ident, $b:ident, $c:ident, $d:ident, $g:literal, $i:literal, $s:literal) => {
                $a = $a.wrapping_add(m[$g].wrapping_add(k[$i]));
                $a = $a.wrapping_add($d ^ ($b & ($c ^ $d)));
                $a = $a.rotate_left($s).wrapping_add($b);
            };
        }
        macro_rules! g {
            ($a:ident, $b:ident, $c:ident, $d:ident, $g:literal, $i:literal, $s:literal) => {
                $a = $a.wrapping_add(m[$g].wrapping_add(k[$i]));
                $a = $a.wrapping_add($c & !$d);
                $a = $a.wrapping_add($b & $d);
                $a = $a.rotate_left($s).wrapping_add($b);
            };
        }
        macro_rules! h {
            ($a:ident, $b:ident, $c:ident, $d:ident, $g:literal, $i:literal, $s:literal) => {
                $a = $a.wrapping_add(m[$g].wrapping_add(k[$i]));
                $a = $a.wrapping_add(($c ^ $d) ^ $b);
                $a = $a.rotate_left($s).wrapping_add($b);
            };
        }
        macro_rules! i {
            ($a:ident, $b:ident, $c:ident, $d:ident, $g:literal, $i:literal, $s:literal) => {
                $a = $a.wrapping_add(m[$g].wrapping_add(k[$i]));
                $a = $a.wrapping_add($c ^ ($b | !$d));
                $a = $a.rotate_left($s).wrapping_add($b);
            };
        }
        // Round 1: M[i].
        f!(a, b, c, d, 0, 0, 7);
        f!(d, a, b, c, 1, 1, 12);
        f!(c, d, a, b, 2, 2, 17);
        f!(b, c, d, a, 3, 3, 22);
        f!(a, b, c, d, 4, 4, 7);
        f!(d, a, b, c, 5, 5, 12);
        f!(c, d, a, b, 6, 6, 17);
        f!(b, c, d, a, 7, 7, 22);
        f!(a, b, c, d, 8, 8, 7);
        f!(d, a, b, c, 9, 9, 12);
        f!(c, d, a, b, 10, 10, 17);
        f!(b, c, d, a, 11, 11, 22);
        f!(a, b, c, d, 12, 12, 7);
        f!(d, a, b, c, 13, 13, 12);
        f!(c, d, a, b, 14, 14, 17);
        f!(b, c, d, a, 15, 15, 22);
        // Round 2: M[(5i + 1) mod 16].
        g!(a, b, c, d, 1, 16, 5);
        g!(d, a, b, c, 6, 17, 9);
        g!(c, d, a, b, 11, 18, 14);
        g!(b, c, d, a, 0, 19, 20);
        g!(a, b, c, d, 5, 20, 5);
        g!(d, a, b, c, 10, 21, 9);
        g!(c, d, a, b, 15, 22, 14);
        g!(b, c, d, a, 4, 23, 20);
        g!(a, b, c, d, 9, 24, 5);
        g!(d, a, b, c, 14, 25, 9);
        g!(c, d, a, b, 3, 26, 14);
        g!(b, c, d, a, 8, 27, 20);
        g!(a, b, c, d, 13, 28, 5);
        g!(d, a, b, c, 2, 29, 9);
        g!(c, d, a, b, 7, 30, 14);
        g!(b, c, d, a, 12, 31, 20);
        // Round 3: M[(3i + 5) mod 16].
        h!(a, b, c, d, 5, 32, 4);
        h!(d, a, b, c, 8, 33, 11);
        h!(c, d, a, b, 11, 34, 16);
        h!(b, c, d, a, 14, 35, 23);
        h!(a, b, c, d, 1, 36, 4);
        h!(d, a, b, c, 4, 37, 11);
        h!(c, d, a, b, 7, 38, 16);
        h!(b, c, d, a, 10, 39, 23);
        h!(a, b, c, d, 13, 40, 4);
        h!(d, a, b, c, 0, 41, 11);
        h!(c, d, a, b, 3, 42, 16);
        h!(b, c, d, a, 6, 43, 23);
        h!(a, b, c, d, 9, 44, 4);
        h!(d, a, b, c, 12, 45, 11);
        h!(c, d, a, b, 15, 46, 16);
        h!(b, c, d, a, 2, 47, 23);
        // Round 4: M[7i mod 16].
        i!(a, b, c, d, 0, 48, 6);
        i!(d, a, b, c, 7, 49, 10);
        i!(c, d, a, b, 14, 50, 15);
        i!(b, c, d, a, 5, 51, 21);
        i!(a, b, c, d, 12, 52, 6);
        i!(d, a, b, c, 3, 53, 10);
        i!(c, d, a, b, 10, 54, 15);
        i!(b, c, d, a, 1, 55, 21);
        i!(a, b, c, d, 8, 56, 6);
        i!(d, a, b, c, 15, 57, 10);
        i!(c, d, a, b, 6, 58, 15);
        i!(b, c, d, a, 13, 59, 21);
        i!(a, b, c, d, 4, 60, 6);
        i!(d, a, b, c, 11, 61, 10);
        i!(c, d, a, b, 2, 62, 15);
        i!(b, c, d, a, 9, 63, 21);
        a = a.wrapping_add(a0);
        b = b.wrapping_add(b0);
        c = c.wrapping_add(c0);
        d = d.wrapping_add(d0);
    }
    *state = [a, b, c, d];
}

/// The MD5 compression function (RFC 1321, 3.4) on one 64-byte block, portable.
pub(crate) fn compress(state: &mut [u32; 4], block: &[u8; BLOCK]) {
    compress_blocks(state, block);
}

#[cfg(test)]
mod tests {
    use md5::{Digest, Md5};
    use rand::{Rng, RngCore, SeedableRng};

    use super::*;

    /// md-5's digest of `data`, the reference.
    fn reference(data: &[u8]) -> [u8; 16] {
        Md5::digest(data).into()
    }

    /// Every kernel this machine can run.
    fn kernels() -> Vec<Kernel> {
        Kernel::available()
    }

    fn hex(digest: &[u8; 16]) -> String {
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn rng() -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(0x6d64_355f_6c61_6e65)
    }

    /// A message length in 0..=300, half the time near block boundaries and 55/56 (padding).
    fn random_len(rng: &mut impl Rng) -> usize {
        if rng.random_bool(0.5) {
            rng.random_range(0..=300)
        } else {
            // Near a block boundary or 56 past one (where the length stops fitting).
            let boundary: usize = 64 * rng.random_range(0..=4) + [0, 56][rng.random_range(0..2)];
            (boundary + rng.random_range(0..=6)).saturating_sub(3)
        }
    }

    fn random_messages(rng: &mut impl Rng, lanes: usize, equal: bool) -> Vec<Vec<u8>> {
        let shared = random_len(rng);
        (0..lanes)
            .map(|_| {
                let len = if equal { shared } else { random_len(rng) };
                let mut m = vec![0u8; len];
                rng.fill_bytes(&mut m);
                m
            })
            .collect()
    }

    #[test]
    fn avx512_is_detected_where_the_cpu_has_it() {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            assert!(matches!(Kernel::detect(), Kernel::Avx512(_)));
        }
    }

    #[test]
    fn rfc1321_vectors() {
        let vectors: [(&[u8], &str); 7] = [
            (b"", "d41d8cd98f00b204e9800998ecf8427e"),
            (b"a", "0cc175b9c0f1b6a831c399e269772661"),
            (b"abc", "900150983cd24fb0d6963f7d28e17f72"),
            (b"message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
            (
                b"abcdefghijklmnopqrstuvwxyz",
                "c3fcd3d76192e4007dfb496cca67e13b",
            ),
            (
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
                "d174ab98d277d9f5a5611c2c9f419d9f",
            ),
            (
                b"12345678901234567890123456789012345678901234567890123456789012345678901234567890",
                "57edf4a22be3c955ac49da2e2107b67a",
            ),
        ];
        for (message, want) in vectors {
            assert_eq!(hex(&digest(message)), want, "digest {message:?}");
            let mut lane = Md5Lane::new();
            lane.update(message);
            assert_eq!(hex(&lane.finalize()), want, "Md5Lane {message:?}");
        }
        let messages: Vec<&[u8]> = vectors.iter().map(|(m, _)| *m).collect();
        for kernel in kernels() {
            let digests = digest_many_with(kernel, &messages);
            for ((message, want), got) in vectors.iter().zip(&digests) {
                assert_eq!(hex(got), *want, "{kernel:?}: {message:?}");
                assert_eq!(*got, reference(message));
            }
        }
        // The same vectors, each repeated in 16 lanes, so the SIMD kernel sees full groups.
        for (message, want) in vectors {
            let digests = digest_many(&[message; 16]);
            assert!(digests.iter().all(|d| hex(d) == want), "{message:?}");
        }
    }

    #[test]
    fn single_lane_update_and_finalize() {
        let mut rng = rng();
        for _ in 0..200 {
            let mut message = vec![0u8; random_len(&mut rng)];
            rng.fill_bytes(&mut message);
            let mut lane = Md5Lane::default();
            let mut rest = &message[..];
            while !rest.is_empty() {
                let (head, tail) = rest.split_at(rng.random_range(0..=rest.len()));
                lane.update(head);
                rest = tail;
            }
            assert_eq!(
                lane.finalize(),
                reference(&message),
                "{} bytes",
                message.len()
            );
        }
    }

    /// `message` through [`digest`] and through one [`Md5Lane`] fed at the given split points.
    fn check_single_stream(message: &[u8], splits: &[usize]) {
        let want = reference(message);
        assert_eq!(digest(message), want, "digest, {} bytes", message.len());
        let mut lane = Md5Lane::new();
        let mut fed = 0;
        for &at in splits {
            lane.update(&message[fed..at]);
            fed = at;
        }
        lane.update(&message[fed..]);
        assert_eq!(
            lane.finalize(),
            want,
            "Md5Lane, {} bytes split at {splits:?}",
            message.len()
        );
    }

    #[test]
    fn single_stream_every_length_to_1000() {
        let mut rng = rng();
        for len in 0..=1000 {
            let mut message = vec![0u8; len];
            rng.fill_bytes(&mut message);
            check_single_stream(&message, &[]);
        }
    }

    #[test]
    fn single_stream_around_block_boundaries() {
        // Lengths and split points a byte or two either side of a block boundary and of the
        // 56 bytes past one where the length stops fitting in the last block.
        let mut rng = rng();
        let near = |base: usize| (base.saturating_sub(2)..=base + 2).collect::<Vec<_>>();
        let lens: Vec<usize> = (0..=20)
            .chain([64, 255, 256, 1024])
            .flat_map(|k| [near(64 * k), near(64 * k + 56)])
            .flatten()
            .collect();
        for len in lens {
            let mut message = vec![0u8; len];
            rng.fill_bytes(&mut message);
            check_single_stream(&message, &[]);
            for split in near(64).into_iter().chain(near(56)).chain(near(128)) {
                if split <= len {
                    check_single_stream(&message, &[split]);
                    check_single_stream(&message, &[split.min(len / 2), split]);
                }
            }
        }
    }

    #[test]
    fn single_stream_random_splits() {
        let mut rng = rng();
        for _ in 0..300 {
            let len = rng.random_range(0..=5000);
            let mut message = vec![0u8; len];
            rng.fill_bytes(&mut message);
            let mut splits: Vec<usize> = (0..rng.random_range(0..=8))
                .map(|_| rng.random_range(0..=len))
                .collect();
            splits.sort_unstable();
            check_single_stream(&message, &splits);
        }
    }

    #[test]
    fn single_stream_64_mib() {
        let mut rng = rng();
        let mut message = vec![0u8; 64 << 20];
        rng.fill_bytes(&mut message);
        // Pieces of 1 MiB and a few odd bytes, as a reader hands them over.
        let splits: Vec<usize> = (1..64).map(|i| (i << 20) + i * 7).collect();
        check_single_stream(&message, &splits);
    }

    #[test]
    fn digest_many_random_messages() {
        let mut rng = rng();
        for kernel in kernels() {
            for lanes in 1..=40 {
                for equal in [true, false] {
                    let messages = random_messages(&mut rng, lanes, equal);
                    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
                    let digests = digest_many_with(kernel, &refs);
                    assert_eq!(digests.len(), lanes);
                    for (m, d) in messages.iter().zip(&digests) {
                        assert_eq!(
                            *d,
                            reference(m),
                            "{kernel:?} {lanes} lanes, {} bytes",
                            m.len()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn update_many_streaming_random_splits() {
        let mut rng = rng();
        for kernel in kernels() {
            for lanes in 1..=40 {
                for equal in [true, false] {
                    let messages = random_messages(&mut rng, lanes, equal);
                    let mut state = vec![Md5Lane::new(); lanes];
                    let mut fed = vec![0usize; lanes];
                    while fed.iter().zip(&messages).any(|(f, m)| *f < m.len()) {
                        let chunks: Vec<&[u8]> = fed
                            .iter_mut()
                            .zip(&messages)
                            .map(|(f, m)| {
                                // Equal split points most of the time, as a real caller has.
                                let n = if equal && rng.random_bool(0.7) {
                                    (m.len() - *f).min(70)
                                } else {
                                    rng.random_range(0..=(m.len() - *f).min(200))
                                };
                                let chunk = &m[*f..*f + n];
                                *f += n;
                                chunk
                            })
                            .collect();
                        update_many_with(kernel, &mut state, &chunks);
                    }
                    for (lane, m) in state.into_iter().zip(&messages) {
                        assert_eq!(
                            lane.finalize(),
                            reference(m),
                            "{kernel:?} {lanes} lanes, {} bytes",
                            m.len()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn unequal_block_counts_in_one_group() {
        // Lanes of 0 to 20 blocks in one group: every lane drops out at a different round.
        let mut rng = rng();
        for kernel in kernels() {
            let messages: Vec<Vec<u8>> = (0..16)
                .map(|i| {
                    let mut m = vec![0u8; 64 * (i + i / 3) + i];
                    rng.fill_bytes(&mut m);
                    m
                })
                .collect();
            let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
            for (m, d) in messages.iter().zip(digest_many_with(kernel, &refs)) {
                assert_eq!(d, reference(m), "{kernel:?} {} bytes", m.len());
            }
        }
    }

    #[test]
    fn sixteen_parts_of_8_mib() {
        let mut rng = rng();
        let parts: Vec<Vec<u8>> = (0..16)
            .map(|_| {
                let mut m = vec![0u8; 8 << 20];
                rng.fill_bytes(&mut m);
                m
            })
            .collect();
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        let digests = digest_many(&refs);
        for (i, (m, d)) in parts.iter().zip(&digests).enumerate() {
            assert_eq!(*d, reference(m), "part {i}");
        }
    }
}
