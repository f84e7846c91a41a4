//! Character normalisation shared by the keyword router and the reply filter.
//!
//! Both match word lists against text that people (or bots) can disguise trivially:
//! full-width letters (ＶＸ), upper case (VX), the ideographic space. Normalising one
//! character to exactly one character keeps positions in the normalised text aligned with
//! the original, so a match can be masked in the original without a position map.

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
}
