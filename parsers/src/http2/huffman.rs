//! HPACK Huffman decoding (RFC 7541 §5.2 and Appendix B).
//!
//! The Appendix B code is canonical: within one length, codes are consecutive in symbol order,
//! and each length starts where the previous left off, shifted by one bit. So the whole code
//! follows from the 257 code lengths, which is all this module transcribes; the per-length first
//! codes and an 8-bit fast table for the short (5–8 bit) codes, which carry nearly all header
//! text, are computed at compile time. Longer codes fall back to a per-length range check.

/// Code length of each symbol 0..=255 and of EOS (256), from RFC 7541 Appendix B.
#[rustfmt::skip]
const LENS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28,
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
    6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6,
    5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
    13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
    15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5,
    6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23,
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23,
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25,
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23,
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
    30,
];

const MAX_LEN: usize = 30;
const EOS: u16 = 256;

/// Why a Huffman string could not be decoded (RFC 7541 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HuffmanError {
    /// The EOS symbol appeared inside the string.
    #[error("EOS symbol inside a Huffman string")]
    Eos,
    /// More than 7 bits of padding, or padding that is not a prefix of EOS.
    #[error("invalid Huffman padding ({bits} bits)")]
    Padding {
        /// Leftover bits.
        bits: u32,
    },
}

struct Tables {
    /// First code of each length.
    first: [u32; MAX_LEN + 1],
    /// Number of codes of each length.
    count: [u32; MAX_LEN + 1],
    /// Index into `syms` of the first symbol of each length.
    offset: [u32; MAX_LEN + 1],
    /// Symbols sorted by (length, symbol).
    syms: [u16; 257],
    /// For each 8-bit prefix that starts with a code of at most 8 bits: `symbol << 4 | length`;
    /// 0 when the prefix belongs to a longer code.
    fast: [u16; 256],
}

const fn build() -> Tables {
    let mut t = Tables {
        first: [0; MAX_LEN + 1],
        count: [0; MAX_LEN + 1],
        offset: [0; MAX_LEN + 1],
        syms: [0; 257],
        fast: [0; 256],
    };
    let mut s = 0;
    while s < 257 {
        t.count[LENS[s] as usize] += 1;
        s += 1;
    }
    let mut code = 0u32;
    let mut idx = 0u32;
    let mut len = 1;
    while len <= MAX_LEN {
        t.first[len] = code;
        t.offset[len] = idx;
        let mut s = 0;
        while s < 257 {
            if LENS[s] as usize == len {
                t.syms[idx as usize] = s as u16;
                if len <= 8 {
                    let c = code + (idx - t.offset[len]);
                    let span = 1u32 << (8 - len);
                    let mut k = 0;
                    while k < span {
                        t.fast[((c << (8 - len)) + k) as usize] = ((s as u16) << 4) | len as u16;
                        k += 1;
                    }
                }
                idx += 1;
            }
            s += 1;
        }
        code = (code + t.count[len]) << 1;
        len += 1;
    }
    t
}

static TABLES: Tables = build();

fn mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

/// The symbol whose code starts the `nbits` low bits of `acc`, and its length; `None` when those
/// bits are a strict prefix of a code (only possible at the end of the input).
fn next_symbol(acc: u64, nbits: u32) -> Option<(u16, u32)> {
    let t = &TABLES;
    if nbits >= 8 {
        let top = ((acc >> (nbits - 8)) & 0xff) as usize;
        let e = t.fast.get(top).copied().unwrap_or(0);
        if e != 0 {
            return Some((e >> 4, u32::from(e & 0xf)));
        }
    }
    let mut len = 5;
    while len <= MAX_LEN as u32 && len <= nbits {
        let code = ((acc >> (nbits - len)) & mask(len)) as u32;
        let l = len as usize;
        let (first, count, offset) = (t.first[l], t.count[l], t.offset[l]);
        if code >= first && code - first < count {
            let sym = t.syms.get((offset + code - first) as usize).copied()?;
            return Some((sym, len));
        }
        len += 1;
    }
    None
}

/// Decodes a Huffman-coded string, appending to `out`.
pub fn decode(input: &[u8], out: &mut Vec<u8>) -> Result<(), HuffmanError> {
    out.reserve(input.len() + input.len() / 2);
    let mut acc: u64 = 0;
    let mut nbits: u32 = 0;
    let mut rest = input.iter();
    loop {
        // Keep at least MAX_LEN bits buffered while input remains, so a miss means end of input.
        while nbits <= 56 {
            match rest.next() {
                Some(&b) => {
                    acc = (acc << 8) | u64::from(b);
                    nbits += 8;
                }
                None => break,
            }
        }
        if nbits == 0 {
            return Ok(());
        }
        match next_symbol(acc, nbits) {
            Some((EOS, _)) => return Err(HuffmanError::Eos),
            Some((sym, len)) => {
                out.push(sym as u8);
                nbits -= len;
                acc &= mask(nbits);
            }
            None => break,
        }
    }
    // RFC 7541 §5.2: at most 7 bits of padding, all ones (the most significant bits of EOS).
    if nbits > 7 || acc != mask(nbits) {
        return Err(HuffmanError::Padding { bits: nbits });
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Test-only encoder, to round-trip every symbol.
    pub(crate) fn encode(input: &[u8]) -> Vec<u8> {
        let t = &TABLES;
        let mut code_of = [0u32; 257];
        for len in 1..=MAX_LEN {
            for i in 0..t.count[len] {
                code_of[t.syms[(t.offset[len] + i) as usize] as usize] = t.first[len] + i;
            }
        }
        let mut out = Vec::new();
        let (mut acc, mut n) = (0u64, 0u32);
        for &b in input {
            let len = u32::from(LENS[b as usize]);
            acc = (acc << len) | u64::from(code_of[b as usize]);
            n += len;
            while n >= 8 {
                out.push((acc >> (n - 8)) as u8);
                n -= 8;
                acc &= mask(n);
            }
        }
        if n > 0 {
            out.push(((acc << (8 - n)) | mask(8 - n)) as u8);
        }
        out
    }

    #[test]
    fn known_codes_from_appendix_b() {
        // Spot checks against codes printed in Appendix B.
        let t = &TABLES;
        assert_eq!(t.first[5], 0x0); // '0' = 00000
        assert_eq!(t.syms[t.offset[5] as usize], b'0' as u16);
        assert_eq!(t.first[13], 0x1ff8); // symbol 0
        assert_eq!(t.first[30], 0x3fff_fffc); // symbol 10
        assert_eq!(t.syms[256], EOS);
        assert_eq!((t.first[30] + t.count[30] - 1), 0x3fff_ffff); // EOS
        let kraft: f64 = LENS.iter().map(|&l| 2f64.powi(-(l as i32))).sum();
        assert!((kraft - 1.0).abs() < 1e-12, "code must be complete");
    }

    #[test]
    fn round_trip_every_byte() {
        let all: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        let mut out = Vec::new();
        decode(&encode(&all), &mut out).unwrap();
        assert_eq!(out, all);
        for b in 0..=255u8 {
            let mut out = Vec::new();
            decode(&encode(&[b, b'a', b]), &mut out).unwrap();
            assert_eq!(out, [b, b'a', b]);
        }
    }

    #[test]
    fn rfc_example_www_example_com() {
        let enc = [
            0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff,
        ];
        let mut out = Vec::new();
        decode(&enc, &mut out).unwrap();
        assert_eq!(out, b"www.example.com");
    }

    #[test]
    fn bad_padding_and_eos() {
        let mut out = Vec::new();
        // Eight one-bits of padding.
        assert_eq!(
            decode(&[0xff], &mut out),
            Err(HuffmanError::Padding { bits: 8 })
        );
        // '0' (00000) followed by zero padding.
        assert_eq!(
            decode(&[0x00], &mut out),
            Err(HuffmanError::Padding { bits: 3 })
        );
        // The full EOS code.
        assert_eq!(
            decode(&[0xff, 0xff, 0xff, 0xfc], &mut out),
            Err(HuffmanError::Eos)
        );
        // Empty is fine.
        assert_eq!(decode(&[], &mut out), Ok(()));
    }
}
