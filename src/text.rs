//! What the stages do to text alike: fold characters, and hash.
//!
//! Folding: the keyword router and the reply filter match word lists against text that
//! people (or bots) can disguise trivially: full-width letters (ＶＸ), upper case (VX), the
//! ideographic space. Normalising one character to exactly one character keeps positions in
//! the normalised text aligned with the original, so a match can be masked in the original
//! without a position map.
//!
//! Hashing: the router's feature buckets, the model stage's gray share of users and the
//! offline splits all need a hash that never changes (a trained model and a user's version
//! depend on it), so it is FNV-1a, written here, not `DefaultHasher`.

/// Fold one character: full-width ASCII (U+FF01..=U+FF5E) to ASCII, U+3000 to a space,
/// ASCII upper case to lower case. Everything else is returned unchanged.
#[inline]
pub fn fold_char(c: char) -> char {
    match c {
        '\u{FF01}'..='\u{FF5E}' => {
            // The block mirrors U+0021..=U+007E at a fixed offset.
            let ascii = (c as u32 - 0xFEE0) as u8;
            ascii.to_ascii_lowercase() as char
        }
        '\u{3000}' => ' ',
        _ => c.to_ascii_lowercase(),
    }
}

/// Fold a whole string (used for word lists at load time, not on the request path).
pub fn fold(s: &str) -> String {
    s.chars().map(fold_char).collect()
}

/// Whether folding changes nothing, so the original can be matched directly.
#[inline]
pub fn is_folded(s: &str) -> bool {
    s.chars().all(|c| fold_char(c) == c)
}

/// 64-bit FNV-1a: stable across platforms and Rust versions, unlike `DefaultHasher`.
pub fn fnv1a(text: &str) -> u64 {
    fnv1a_bytes(FNV_OFFSET, text.as_bytes())
}

/// FNV-1a's initial state.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a over `bytes`, continuing from state `h` (so several parts hash as one stream).
pub fn fnv1a_bytes(h: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(h, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_full_width_and_case() {
        assert_eq!(fold("ＶＸ：ＡＢＣ１２３"), "vx:abc123");
        assert_eq!(fold("VX\u{3000}QQ"), "vx qq");
        assert_eq!(fold("爆款ＸＬ码"), "爆款xl码");
        assert!(is_folded("亲,在吗 abc"));
        assert!(!is_folded("亲ＡＢ"));
    }

    #[test]
    fn keeps_one_char_per_char() {
        let s = "Ａ退ｂ款Ｃ！";
        assert_eq!(s.chars().count(), fold(s).chars().count());
    }

    #[test]
    fn fnv_is_the_reference_function() {
        assert_eq!(fnv1a(""), 0xcbf29ce484222325);
        assert_eq!(fnv1a("a"), 0xaf63dc4c8601ec8c);
    }
}
