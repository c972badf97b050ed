//! Two's-complement bit view of integer codes.
//!
//! Bit-level fault models (bit flips, stuck-at bits) act on the `bits`-bit
//! two's-complement word that holds a code in hardware, then read the word
//! back as a signed code. These helpers are that round trip; bit
//! `bits - 1` is the sign bit.

/// Code widths the fault models handle: 1..=32 bits. Injectors leave codes
/// of any other width unchanged rather than panic (no datapath produces
/// them; `fixed::Datapath::validate` allows 2..=16).
#[inline]
pub fn supported_width(bits: u8) -> bool {
    (1..=32).contains(&bits)
}

/// The `bits`-bit word holding `code` (low `bits` bits of its two's
/// complement).
#[inline]
pub fn to_word(code: i32, bits: u8) -> u64 {
    (code as i64 as u64) & mask(bits)
}

/// The signed code held in the `bits`-bit `word` (sign-extended).
#[inline]
pub fn from_word(word: u64, bits: u8) -> i32 {
    let sh = 64 - bits as u32;
    (((word << sh) as i64) >> sh) as i32
}

/// `code` with bit `bit` inverted.
#[inline]
pub fn flip_bit(code: i32, bit: u32, bits: u8) -> i32 {
    from_word(to_word(code, bits) ^ (1u64 << bit), bits)
}

/// `code` with bit `bit` forced to `value`.
#[inline]
pub fn force_bit(code: i32, bit: u32, value: bool, bits: u8) -> i32 {
    let w = to_word(code, bits);
    let w = if value {
        w | (1u64 << bit)
    } else {
        w & !(1u64 << bit)
    };
    from_word(w, bits)
}

#[inline]
fn mask(bits: u8) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_flips() {
        for bits in [2u8, 4, 8, 16] {
            let lo = -(1i32 << (bits - 1));
            let hi = (1i32 << (bits - 1)) - 1;
            for c in lo..=hi {
                assert_eq!(from_word(to_word(c, bits), bits), c);
            }
        }
        assert_eq!(flip_bit(0, 7, 8), -128);
        assert_eq!(flip_bit(-1, 7, 8), 127);
        assert_eq!(flip_bit(5, 0, 8), 4);
        assert_eq!(force_bit(-1, 0, false, 8), -2);
        assert_eq!(force_bit(0, 7, true, 8), -128);
        assert_eq!(force_bit(3, 1, true, 8), 3);
    }
}
