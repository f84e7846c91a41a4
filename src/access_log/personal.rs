//! Personal data out of logged text (`log_text: masked`): phone numbers, ID numbers, order
//! and other long numbers, and addresses become placeholders. Masking errs towards too much:
//! a log line that hides a harmless word costs less than one that keeps an address.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;

/// In order: an ID number before the shorter runs it contains, a mobile number before the
/// generic digit run.
static RULES: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    [
        // Resident ID: 17 digits and a digit or X (15 digits for the old ones).
        (r"(?i)[0-9]{17}[0-9x]|[0-9]{15}", "[id]"),
        // Mainland mobile numbers, with or without +86 and separators.
        (r"(?:\+?86[-\s]?)?1[3-9][0-9](?:[-\s]?[0-9]{4}){2}", "[phone]"),
        // Landlines: area code and number.
        (r"0[0-9]{2,3}-[0-9]{7,8}", "[phone]"),
        // Any other run of 6 or more digits: order, tracking, card numbers.
        (r"[0-9]{6,}", "[number]"),
        // An administrative chain (…省…市…区/县) ...
        (
            r"(?:\p{Han}{2,8}(?:省|自治区))?\p{Han}{2,8}(?:市|州|盟)\p{Han}{1,8}?(?:区|县|旗)",
            "[address]",
        ),
        // ... and a street or building with a house number (…路12号, 3栋2单元501室).
        (
            r"[\p{Han}A-Za-z0-9]{0,16}?[0-9一二三四五六七八九十百]+(?:号楼|号院|号|栋|幢|单元|室|弄)(?:[0-9一二三四五六七八九十百]+(?:号楼|号|栋|幢|单元|室|层|楼))*",
            "[address]",
        ),
    ]
    .into_iter()
    .map(|(p, with)| (Regex::new(p).expect("personal-data pattern"), with))
    .collect()
});

/// `text` with personal data replaced by placeholders.
pub fn mask(text: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(text);
    for (pattern, with) in RULES.iter() {
        if let Cow::Owned(s) = pattern.replace_all(&out, *with) {
            out = Cow::Owned(s);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_addresses_are_masked() {
        assert_eq!(mask("我的手机13812345678"), "我的手机[phone]");
        assert_eq!(mask("电话 138-1234-5678 谢谢"), "电话 [phone] 谢谢");
        assert_eq!(mask("身份证11010119900307123X"), "身份证[id]");
        assert_eq!(
            mask("订单号 2024112345678 还没到"),
            "订单号 [number] 还没到"
        );
        assert_eq!(mask("浙江省杭州市西湖区文三路90号"), "[address][address]");
        // Place names have no fixed length, so a few characters before one go with it.
        assert!(mask("寄到杭州市西湖区").ends_with("[address]"));
        assert_eq!(mask("3栋2单元501室"), "[address]");
        assert_eq!(mask("座机010-12345678"), "座机[phone]");
    }

    #[test]
    fn ordinary_text_stays() {
        assert!(matches!(mask("这款和上一代有什么区别"), Cow::Borrowed(_)));
        assert!(matches!(mask("42码偏大吗，退款要几天"), Cow::Borrowed(_)));
        assert!(matches!(mask("满300减40"), Cow::Borrowed(_)));
    }
}
