//! XTS (IEEE 1619) over AES, Serpent and Twofish, and TrueCrypt's cipher cascades.
//!
//! A data unit is 512 bytes (32 blocks); its number goes into the tweak as a little-endian
//! 128-bit integer. Lengths are whole blocks: TrueCrypt never needs ciphertext stealing. Work is
//! done in batches of units so the block cipher sees long runs of blocks (AES-NI pipelines 8).

use aes::Aes256;
use cipher::consts::U16;
use cipher::generic_array::GenericArray;
use cipher::inout::InOut;
use cipher::typenum::Unsigned;
use cipher::{
    BlockBackend, BlockClosure, BlockDecrypt, BlockEncrypt, BlockSizeUser, KeyInit, ParBlocks,
};
use serpent::Serpent;
use twofish::Twofish;

use super::vaes::XtsAes;

/// Bytes in one XTS data unit, whatever the volume's sector size.
pub const UNIT: usize = 512;
/// Units handled per batch: 8 KiB stays in L1 across the passes of a cascade.
const BATCH_UNITS: usize = 16;

type Block = GenericArray<u8, U16>;

/// One block cipher of a cascade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CipherKind {
    /// AES-256.
    Aes,
    /// Serpent-256.
    Serpent,
    /// Twofish-256.
    Twofish,
}

impl CipherKind {
    fn name(self) -> &'static str {
        match self {
            Self::Aes => "AES",
            Self::Serpent => "Serpent",
            Self::Twofish => "Twofish",
        }
    }
}

/// The eight XTS cipher chains of TrueCrypt 7.1a, by their TrueCrypt names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chain {
    /// AES.
    Aes,
    /// Serpent.
    Serpent,
    /// Twofish.
    Twofish,
    /// AES-Twofish (Twofish applied first).
    AesTwofish,
    /// AES-Twofish-Serpent (Serpent applied first).
    AesTwofishSerpent,
    /// Serpent-AES (AES applied first).
    SerpentAes,
    /// Serpent-Twofish-AES (AES applied first).
    SerpentTwofishAes,
    /// Twofish-Serpent (Serpent applied first).
    TwofishSerpent,
}

impl Chain {
    /// Every chain, in the order TrueCrypt tries them.
    pub const ALL: [Chain; 8] = [
        Chain::Aes,
        Chain::Serpent,
        Chain::Twofish,
        Chain::AesTwofish,
        Chain::AesTwofishSerpent,
        Chain::SerpentAes,
        Chain::SerpentTwofishAes,
        Chain::TwofishSerpent,
    ];

    /// The ciphers in the order encryption applies them (TrueCrypt's name lists them reversed).
    pub fn ciphers(self) -> &'static [CipherKind] {
        use CipherKind::{Aes, Serpent, Twofish};
        match self {
            Self::Aes => &[Aes],
            Self::Serpent => &[Serpent],
            Self::Twofish => &[Twofish],
            Self::AesTwofish => &[Twofish, Aes],
            Self::AesTwofishSerpent => &[Serpent, Twofish, Aes],
            Self::SerpentAes => &[Aes, Serpent],
            Self::SerpentTwofishAes => &[Aes, Twofish, Serpent],
            Self::TwofishSerpent => &[Serpent, Twofish],
        }
    }

    /// TrueCrypt's name, e.g. `AES-Twofish-Serpent`.
    pub fn name(self) -> String {
        let names: Vec<&str> = self.ciphers().iter().rev().map(|c| c.name()).collect();
        names.join("-")
    }

    /// Bytes of master key the chain uses: a primary and a tweak key of 32 bytes per cipher.
    pub fn key_len(self) -> usize {
        64 * self.ciphers().len()
    }
}

impl std::fmt::Display for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// A keyed block cipher (its key schedule is wiped on drop by the crates' `zeroize` feature).
enum Engine {
    Aes(Box<Aes256>),
    Serpent(Box<Serpent>),
    Twofish(Box<Twofish>),
}

impl Engine {
    fn new(kind: CipherKind, key: &[u8]) -> Option<Self> {
        Some(match kind {
            CipherKind::Aes => Self::Aes(Box::new(Aes256::new_from_slice(key).ok()?)),
            CipherKind::Serpent => Self::Serpent(Box::new(Serpent::new_from_slice(key).ok()?)),
            CipherKind::Twofish => Self::Twofish(Box::new(Twofish::new_from_slice(key).ok()?)),
        })
    }
}

/// One cipher of a chain in XTS: the data key and the tweak key.
struct XtsCipher {
    data: Engine,
    tweak: Engine,
    /// The same AES keys scheduled for the VAES path, when the CPU has it.
    vaes: Option<Box<XtsAes>>,
}

/// The master keys of a volume, scheduled: encrypts and decrypts data units.
pub struct ChainKeys {
    chain: Chain,
    ciphers: Vec<XtsCipher>,
}

impl std::fmt::Debug for ChainKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys.
        write!(f, "ChainKeys({})", self.chain)
    }
}

impl ChainKeys {
    /// Schedules `chain` from a key area laid out as TrueCrypt does: the primary keys of every
    /// cipher, then their tweak keys, 32 bytes each, in encryption order. `None` if `key` is short.
    pub fn new(chain: Chain, key: &[u8]) -> Option<Self> {
        Self::with_vaes(chain, key, true)
    }

    /// [`ChainKeys::new`], with the VAES path for AES only if `vaes` (tests compare the two).
    fn with_vaes(chain: Chain, key: &[u8], vaes: bool) -> Option<Self> {
        let kinds = chain.ciphers();
        let n = kinds.len();
        if key.len() < 64 * n {
            return None;
        }
        let mut ciphers = Vec::with_capacity(n);
        for (i, &kind) in kinds.iter().enumerate() {
            let data_key = key.get(32 * i..32 * i + 32)?;
            let tweak_key = key.get(32 * (n + i)..32 * (n + i) + 32)?;
            let vaes = match kind {
                CipherKind::Aes if vaes => XtsAes::new(data_key, tweak_key).map(Box::new),
                _ => None,
            };
            ciphers.push(XtsCipher {
                data: Engine::new(kind, data_key)?,
                tweak: Engine::new(kind, tweak_key)?,
                vaes,
            });
        }
        Some(Self { chain, ciphers })
    }

    /// Decrypts `buf` (a multiple of 16 bytes) in place; its first unit has number `first_unit`
    /// and a last unit may be shorter than 512 bytes (the 448-byte header is one such unit).
    pub fn decrypt(&self, buf: &mut [u8], first_unit: u64) {
        self.run(buf, first_unit, false);
    }

    /// Encrypts `buf` in place; see [`ChainKeys::decrypt`].
    pub fn encrypt(&self, buf: &mut [u8], first_unit: u64) {
        self.run(buf, first_unit, true);
    }

    /// Decrypts `src` into `dst` (as long as `src`): [`ChainKeys::decrypt`] on a copy, but where
    /// the VAES kernel runs the first pass it reads `src` directly, saving the copy.
    ///
    /// # Panics
    ///
    /// The lengths differ.
    pub fn decrypt_from(&self, src: &[u8], dst: &mut [u8], first_unit: u64) {
        assert_eq!(src.len(), dst.len(), "XTS source and destination lengths");
        let Some((first, rest)) = self.ciphers.split_last() else {
            return;
        };
        let mut scratch = Scratch::new(src.len().div_ceil(UNIT).min(BATCH_UNITS));
        let batches = src
            .chunks(UNIT * BATCH_UNITS)
            .zip(dst.chunks_mut(UNIT * BATCH_UNITS));
        for (batch_index, (from, to)) in batches.enumerate() {
            let unit = first_unit.wrapping_add((batch_index * BATCH_UNITS) as u64);
            // Decryption undoes the last cipher first: out of place, then the others in place.
            match &first.vaes {
                Some(vaes) => vaes.pass_from(from, to, unit, false),
                None => {
                    to.copy_from_slice(from);
                    first.pass(to, unit, false, &mut scratch);
                }
            }
            for c in rest.iter().rev() {
                c.pass(to, unit, false, &mut scratch);
            }
        }
    }

    fn run(&self, buf: &mut [u8], first_unit: u64, encrypt: bool) {
        debug_assert!(buf.len().is_multiple_of(16));
        let units = buf.len().div_ceil(UNIT);
        let mut scratch = Scratch::new(units.min(BATCH_UNITS));
        for (batch_index, batch) in buf.chunks_mut(UNIT * BATCH_UNITS).enumerate() {
            let unit = first_unit.wrapping_add((batch_index * BATCH_UNITS) as u64);
            // Encryption applies c[0] first; decryption undoes the last cipher first.
            if encrypt {
                for c in &self.ciphers {
                    c.pass(batch, unit, true, &mut scratch);
                }
            } else {
                for c in self.ciphers.iter().rev() {
                    c.pass(batch, unit, false, &mut scratch);
                }
            }
        }
    }
}

/// Reusable buffers for one batch.
struct Scratch {
    unit_tweaks: Vec<Block>,
}

impl Scratch {
    fn new(units: usize) -> Self {
        Self {
            unit_tweaks: vec![Block::default(); units],
        }
    }
}

impl XtsCipher {
    fn pass(&self, batch: &mut [u8], first_unit: u64, encrypt: bool, s: &mut Scratch) {
        if let Some(vaes) = &self.vaes {
            vaes.pass(batch, first_unit, encrypt);
            return;
        }
        match (&self.data, &self.tweak) {
            (Engine::Aes(d), Engine::Aes(t)) => {
                xts_batch(&**d, &**t, batch, first_unit, encrypt, s)
            }
            (Engine::Serpent(d), Engine::Serpent(t)) => {
                xts_batch(&**d, &**t, batch, first_unit, encrypt, s);
            }
            (Engine::Twofish(d), Engine::Twofish(t)) => {
                xts_batch(&**d, &**t, batch, first_unit, encrypt, s);
            }
            // ChainKeys::new builds both halves from the same kind.
            _ => {}
        }
    }
}

/// Multiplies a tweak by x in GF(2^128), little-endian as IEEE 1619 lays it out.
#[inline(always)]
fn mul_x(t: u128) -> u128 {
    (t << 1) ^ ((t >> 127) * 0x87)
}

#[inline(always)]
fn load(bytes: &[u8]) -> u128 {
    let mut b = [0u8; 16];
    b.copy_from_slice(&bytes[..16]);
    u128::from_le_bytes(b)
}

/// One XTS pass of one cipher over a batch of at most `BATCH_UNITS` units.
fn xts_batch<C>(
    data: &C,
    tweak: &C,
    batch: &mut [u8],
    first_unit: u64,
    encrypt: bool,
    s: &mut Scratch,
) where
    C: BlockEncrypt + BlockDecrypt + BlockSizeUser<BlockSize = U16>,
{
    let nunits = batch.len().div_ceil(UNIT);
    // The first tweak of each unit: E_k2(unit number, little-endian).
    let unit_tweaks = &mut s.unit_tweaks[..nunits];
    for (i, t) in unit_tweaks.iter_mut().enumerate() {
        let n = u128::from(first_unit.wrapping_add(i as u64));
        t.copy_from_slice(&n.to_le_bytes());
    }
    tweak.encrypt_blocks(unit_tweaks);
    let pass = XtsPass { batch, unit_tweaks };
    // Through the cipher's backend, so the XOR loops and the block cipher's parallel
    // blocks run in one function compiled for AES-NI.
    if encrypt {
        data.encrypt_with_backend(pass);
    } else {
        data.decrypt_with_backend(pass);
    }
}

/// The XTS work of one pass, handed to the cipher's backend.
struct XtsPass<'a> {
    batch: &'a mut [u8],
    unit_tweaks: &'a [Block],
}

impl BlockSizeUser for XtsPass<'_> {
    type BlockSize = U16;
}

/// Most blocks a backend may take at once here (AES-NI takes 8).
const MAX_PAR: usize = 16;

impl BlockClosure for XtsPass<'_> {
    #[inline(always)]
    fn call<B: BlockBackend<BlockSize = U16>>(self, backend: &mut B) {
        let par = B::ParBlocksSize::USIZE;
        let mut group: ParBlocks<B> = Default::default();
        let mut tweaks = [0u128; MAX_PAR];
        for (unit, first) in self.batch.chunks_mut(UNIT).zip(self.unit_tweaks) {
            let mut t = load(first);
            let blocks = unit.len() / 16;
            let mut done = 0;
            if par > 1 && par <= MAX_PAR {
                while blocks - done >= par {
                    let run = &mut unit[done * 16..(done + par) * 16];
                    for ((slot, bytes), tw) in
                        group.iter_mut().zip(run.chunks_exact(16)).zip(&mut tweaks)
                    {
                        *tw = t;
                        slot.copy_from_slice(&(load(bytes) ^ t).to_le_bytes());
                        t = mul_x(t);
                    }
                    backend.proc_par_blocks(InOut::from(&mut group));
                    for ((slot, bytes), tw) in
                        group.iter().zip(run.chunks_exact_mut(16)).zip(&tweaks)
                    {
                        bytes.copy_from_slice(&(load(slot) ^ tw).to_le_bytes());
                    }
                    done += par;
                }
            }
            for bytes in unit[done * 16..].chunks_exact_mut(16) {
                let mut block = Block::from((load(bytes) ^ t).to_le_bytes());
                backend.proc_block(InOut::from(&mut block));
                bytes.copy_from_slice(&(load(&block) ^ t).to_le_bytes());
                t = mul_x(t);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::truecrypt::vaes;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or_else(|e| panic!("{e}")))
            .collect()
    }

    const KEY: &str = "27182818284590452353602874713526624977572470936999595749669676273141592653589793238462643383279502884197169399375105820974944592";

    /// IEEE 1619-2007 Annex B, XTS-AES-256 vectors 10 (data unit 0xff) and 11 (0xffff).
    #[test]
    fn ieee_1619_xts_aes_256_vectors() {
        let cases = [
            (0xffu64, "1c3b3a102f770386e4836c99e370cf9bea00803f5e482357a4ae12d414a3e63b5d31e276f8fe4a8d66b317f9ac683f44680a86ac35adfc3345befecb4bb188fd5776926c49a3095eb108fd1098baec70aaa66999a72a82f27d848b21d4a741b0c5cd4d5fff9dac89aeba122961d03a757123e9870f8acf1000020887891429ca2a3e7a7d7df7b10355165c8b9a6d0a7de8b062c4500dc4cd120c0f7418dae3d0b5781c34803fa75421c790dfe1de1834f280d7667b327f6c8cd7557e12ac3a0f93ec05c52e0493ef31a12d3d9260f79a289d6a379bc70c50841473d1a8cc81ec583e9645e07b8d9670655ba5bbcfecc6dc3966380ad8fecb17b6ba02469a020a84e18e8f84252070c13e9f1f289be54fbc481457778f616015e1327a02b140f1505eb309326d68378f8374595c849d84f4c333ec4423885143cb47bd71c5edae9be69a2ffeceb1bec9de244fbe15992b11b77c040f12bd8f6a975a44a0f90c29a9abc3d4d893927284c58754cce294529f8614dcd2aba991925fedc4ae74ffac6e333b93eb4aff0479da9a410e4450e0dd7ae4c6e2910900575da401fc07059f645e8b7e9bfdef33943054ff84011493c27b3429eaedb4ed5376441a77ed43851ad77f16f541dfd269d50d6a5f14fb0aab1cbb4c1550be97f7ab4066193c4caa773dad38014bd2092fa755c824bb5e54c4f36ffda9fcea70b9c6e693e148c151"),
            (0xffff, "77a31251618a15e6b92d1d66dffe7b50b50bad552305ba0217a610688eff7e11e1d0225438e093242d6db274fde801d4cae06f2092c728b2478559df58e837c2469ee4a4fa794e4bbc7f39bc026e3cb72c33b0888f25b4acf56a2a9804f1ce6d3d6e1dc6ca181d4b546179d55544aa7760c40d06741539c7e3cd9d2f6650b2013fd0eeb8c2b8e3d8d240ccae2d4c98320a7442e1c8d75a42d6e6cfa4c2eca1798d158c7aecdf82490f24bb9b38e108bcda12c3faf9a21141c3613b58367f922aaa26cd22f23d708dae699ad7cb40a8ad0b6e2784973dcb605684c08b8d6998c69aac049921871ebb65301a4619ca80ecb485a31d744223ce8ddc2394828d6a80470c092f5ba413c3378fa6054255c6f9df4495862bbb3287681f931b687c888abf844dfc8fc28331e579928cd12bd2390ae123cf03818d14dedde5c0c24c8ab018bfca75ca096f2d531f3d1619e785f1ada437cab92e980558b3dce1474afb75bfedbf8ff54cb2618e0244c9ac0d3c66fb51598cd2db11f9be39791abe447c63094f7c453b7ff87cb5bb36b7c79efb0872d17058b83b15ab0866ad8a58656c5a7e20dbdf308b2461d97c0ec0024a2715055249cf3b478ddd4740de654f75ca686e0d7345c69ed50cdc2a8b332b1f8824108ac937eb050585608ee734097fc09054fbff89eeaeea791f4a7ab1f9868294a4f9e27b42af8100cb9d59cef9645803"),
        ];
        let keys = ChainKeys::new(Chain::Aes, &unhex(KEY)).unwrap_or_else(|| panic!("key"));
        let plain: Vec<u8> = (0..=255u8).chain(0..=255u8).collect();
        for (unit, ctx) in cases {
            let mut buf = plain.clone();
            keys.encrypt(&mut buf, unit);
            assert_eq!(buf, unhex(ctx), "unit {unit:#x}");
            keys.decrypt(&mut buf, unit);
            assert_eq!(buf, plain);
        }
        // Many units in one call (more than one batch) equal unit-by-unit calls.
        let mut long: Vec<u8> = (0..UNIT * 40).map(|i| (i * 7 % 251) as u8).collect();
        let mut by_unit = long.clone();
        keys.encrypt(&mut long, 0xfe);
        for (i, unit) in by_unit.chunks_mut(UNIT).enumerate() {
            keys.encrypt(unit, 0xfe + i as u64);
        }
        assert_eq!(long, by_unit);
    }

    /// The VAES path (where the CPU has it) and the portable one agree, both ways, on whole
    /// batches, a short last batch, short units (the 448-byte header, single blocks) and unit
    /// numbers around the tweak's carries.
    #[test]
    fn vaes_and_portable_aes_agree() {
        let key: Vec<u8> = (0..128u32).map(|i| (i * 37 + 11) as u8).collect();
        for chain in [Chain::Aes, Chain::SerpentAes, Chain::AesTwofish] {
            let fast = ChainKeys::new(chain, &key).unwrap_or_else(|| panic!("{chain}"));
            let portable =
                ChainKeys::with_vaes(chain, &key, false).unwrap_or_else(|| panic!("{chain}"));
            // Where the CPU has VAES, the comparison must really be between the two paths.
            let uses_vaes = |k: &ChainKeys| k.ciphers.iter().any(|c| c.vaes.is_some());
            assert_eq!(uses_vaes(&fast), vaes::supported(), "{chain}");
            assert!(!uses_vaes(&portable));
            for len in [16, 80, 448, UNIT, UNIT * 3 + 448, UNIT * 40, UNIT * 16 + 16] {
                for first in [0, 0xfe, u64::MAX - 2, 0x8000_0000_0000_0000] {
                    let plain: Vec<u8> = (0..len).map(|i| (i * 13 % 253) as u8).collect();
                    let mut a = plain.clone();
                    let mut b = plain.clone();
                    fast.encrypt(&mut a, first);
                    portable.encrypt(&mut b, first);
                    assert_eq!(a, b, "{chain} encrypt, {len} bytes from unit {first:#x}");
                    fast.decrypt(&mut a, first);
                    portable.decrypt(&mut b, first);
                    assert_eq!(
                        a, plain,
                        "{chain} decrypt, {len} bytes from unit {first:#x}"
                    );
                    assert_eq!(b, plain);
                }
            }
        }
    }

    /// Out of place equals in place, for every chain (VAES first pass or a copy first).
    #[test]
    fn decrypt_from_equals_decrypt_in_place() {
        let key: Vec<u8> = (0..192u32).map(|i| (i * 53 + 7) as u8).collect();
        for chain in Chain::ALL {
            let keys = ChainKeys::new(chain, &key).unwrap_or_else(|| panic!("{chain}"));
            for len in [16, 448, UNIT * 3 + 448, UNIT * 40] {
                let cipher: Vec<u8> = (0..len).map(|i| (i * 31 % 257) as u8).collect();
                let mut in_place = cipher.clone();
                keys.decrypt(&mut in_place, 77);
                let mut out = vec![0xaau8; len];
                keys.decrypt_from(&cipher, &mut out, 77);
                assert_eq!(out, in_place, "{chain}, {len} bytes");
            }
        }
    }

    /// The kernel splits a long buffer into its own batches (ChainKeys hands it 16 units).
    #[test]
    fn vaes_pass_over_many_batches() {
        let key: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(29)).collect();
        let Some(kernel) = XtsAes::new(&key[..32], &key[32..]) else {
            return; // no VAES on this CPU: nothing to compare
        };
        let portable =
            ChainKeys::with_vaes(Chain::Aes, &key, false).unwrap_or_else(|| panic!("keys"));
        let plain: Vec<u8> = (0..UNIT * 37 + 448).map(|i| (i % 241) as u8).collect();
        let mut a = plain.clone();
        let mut b = plain.clone();
        kernel.pass(&mut a, 0x1234, true);
        portable.encrypt(&mut b, 0x1234);
        assert_eq!(a, b);
        kernel.pass(&mut a, 0x1234, false);
        assert_eq!(a, plain);
    }

    #[test]
    fn cascades_round_trip_and_name_themselves() {
        let key: Vec<u8> = (0..192u8).collect();
        for chain in Chain::ALL {
            let keys = ChainKeys::new(chain, &key).unwrap_or_else(|| panic!("{chain}"));
            let plain: Vec<u8> = (0..UNIT * 3 + 448).map(|i| i as u8).collect();
            let mut buf = plain.clone();
            keys.encrypt(&mut buf, 9);
            assert_ne!(buf, plain);
            keys.decrypt(&mut buf, 9);
            assert_eq!(buf, plain, "{chain}");
        }
        assert_eq!(Chain::SerpentTwofishAes.name(), "Serpent-Twofish-AES");
        assert_eq!(
            Chain::AesTwofish.ciphers(),
            &[CipherKind::Twofish, CipherKind::Aes]
        );
        assert!(ChainKeys::new(Chain::AesTwofish, &key[..127]).is_none());
    }
}
