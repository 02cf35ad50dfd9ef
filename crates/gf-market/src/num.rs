//! Exact decimal numbers from Kraken's JSON text, and their checksum digits.
//!
//! Kraken v2 puts prices and quantities on the wire as JSON *numbers* with full precision
//! (`"qty":0.00100000`). Going through `f64` would lose digits (and the trailing zeros the
//! checksum needs), so the parser keeps each number as raw text
//! ([`serde_json::value::RawValue`]) and parses it here with
//! [`Decimal::from_str_exact`]; exponent forms (`1e-08`) go through
//! [`Decimal::from_scientific`]. Quoted decimals (`"0.5"`) are accepted too.

use std::str::FromStr;

use rust_decimal::Decimal;

use crate::error::{Error, excerpt};

/// Parses the raw JSON text of a number (or a quoted decimal) into an exact [`Decimal`].
///
/// The scale is kept as written: `0.10000000` has scale 8.
///
/// # Errors
/// [`Error::InvalidNumber`] naming `field` when the text is not a decimal number that fits
/// a [`Decimal`] exactly.
pub fn parse_decimal(raw: &str, field: &'static str) -> Result<Decimal, Error> {
    let invalid = || Error::InvalidNumber {
        field,
        text: excerpt(raw),
    };
    let text = raw.trim();
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    if let Some(d) = parse_plain(text) {
        return Ok(d);
    }
    if !is_json_number(text) {
        return Err(invalid());
    }
    if text.bytes().any(|b| b == b'e' || b == b'E') {
        Decimal::from_scientific(text).map_err(|_| invalid())
    } else {
        Decimal::from_str_exact(text)
            .or_else(|_| Decimal::from_str(text))
            .map_err(|_| invalid())
            .and_then(|d| {
                // `from_str` may round a number with more than 28 fractional digits;
                // that is not exact, so refuse it.
                if d.scale() as usize == fraction_digits(text) {
                    Ok(d)
                } else {
                    Err(invalid())
                }
            })
    }
}

/// The fast path: `-?digits(.digits)?` with at most 18 significant digits in all, which
/// fits an `i64` mantissa exactly. Anything else returns `None` (and takes the general
/// path).
fn parse_plain(text: &str) -> Option<Decimal> {
    let b = text.as_bytes();
    let (neg, digits) = match b.first()? {
        b'-' => (true, &b[1..]),
        _ => (false, b),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut mantissa: i64 = 0;
    let mut scale: Option<u32> = None;
    let mut count = 0u32;
    for (i, &c) in digits.iter().enumerate() {
        match c {
            b'0'..=b'9' => {
                if count == 18 {
                    return None;
                }
                mantissa = mantissa * 10 + i64::from(c - b'0');
                count += 1;
                if let Some(s) = scale.as_mut() {
                    *s += 1;
                }
            }
            b'.' if scale.is_none() && i > 0 && i + 1 < digits.len() => scale = Some(0),
            _ => return None,
        }
    }
    let mut d = Decimal::new(mantissa, scale.unwrap_or(0));
    if neg && mantissa != 0 {
        d.set_sign_negative(true);
    }
    Some(d)
}

fn fraction_digits(text: &str) -> usize {
    text.split_once('.').map_or(0, |(_, f)| f.len())
}

/// `-?digits(.digits)?([eE][+-]?digits)?`, as JSON numbers are (leading zeros tolerated).
fn is_json_number(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    if b.first() == Some(&b'-') {
        i += 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    if i == int_start {
        return false;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let frac_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == frac_start {
            return false;
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let exp_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == exp_start {
            return false;
        }
    }
    i == b.len()
}

/// Maximum digits of a `u128`.
pub(crate) const MAX_DIGITS: usize = 39;

/// Writes the checksum form of `value` into `buf` and returns the number of bytes: the
/// decimal rendered with at least `precision` fractional digits, the `.` removed and
/// leading zeros stripped (`0.00100000` → `100000`). Zero renders as nothing, as the
/// string rule implies. When the value has more fractional digits than `precision`, or
/// padding would overflow, the value is rendered as written.
pub(crate) fn checksum_digits(value: Decimal, precision: Option<u32>, buf: &mut [u8]) -> usize {
    let mut mantissa = value.mantissa().unsigned_abs();
    if let Some(p) = precision
        && p > value.scale()
        && let Some(scaled) = 10u128
            .checked_pow(p - value.scale())
            .and_then(|f| mantissa.checked_mul(f))
    {
        mantissa = scaled;
    }
    write_u128(mantissa, buf)
}

const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Powers of ten that fit a `u64` (`POW10[i]` = 10^i, i ≤ 19).
pub(crate) const POW10: [u64; 20] = {
    let mut t = [1u64; 20];
    let mut i = 1;
    while i < 20 {
        t[i] = t[i - 1] * 10;
        i += 1;
    }
    t
};

/// The number of decimal digits of `n` (none for zero, as [`put_u64`] writes it).
pub(crate) fn digits_u64(n: u64) -> usize {
    if n == 0 {
        return 0;
    }
    // floor(log10(n)) is `t` or `t - 1` for t = bits * log10(2) (1233 / 4096).
    let t = (((64 - n.leading_zeros()) * 1233) >> 12) as usize;
    t + usize::from(n >= POW10[t])
}

/// Bytes `at..at + 8` of `b` as a word, the first byte lowest.
#[inline(always)]
pub(crate) fn word_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// Bytes [`put_u64`] needs from where it writes: its stores are eight bytes wide.
pub(crate) const PUT_SLACK: usize = 8;

/// Writes `n`, whose [`digits_u64`] is `len`, in decimal without leading zeros
/// (nothing for zero) at `buf[at..at + len]`, and nothing else: eight digits per store,
/// a short number merged with the bytes after it. `buf` must hold [`PUT_SLACK`] bytes
/// from `at` (and the digits). No loop, no table.
#[inline(always)]
pub(crate) fn put_u64(n: u64, len: usize, buf: &mut [u8], at: usize) {
    const E8: u64 = 100_000_000;
    const E16: u64 = E8 * E8;
    #[inline(always)]
    fn store(buf: &mut [u8], at: usize, word: u64) {
        buf[at..at + 8].copy_from_slice(&word.to_le_bytes());
    }
    // `eight_digits` writes leading zeros; shifting right drops the ones not wanted.
    // Stores end exactly at the last digit, except for eight digits or fewer.
    if len == 0 {
    } else if len <= 8 {
        // The bytes after the digits stay as they were.
        let keep = word_at(buf, at) & u64::MAX.checked_shl(8 * len as u32).unwrap_or(0);
        store(buf, at, (eight_digits(n) >> (8 * (8 - len))) | keep);
    } else if len <= 16 {
        store(buf, at, eight_digits(n / E8) >> (8 * (16 - len)));
        store(buf, at + len - 8, eight_digits(n % E8));
    } else {
        let rest = n % E16;
        store(buf, at, eight_digits(n / E16) >> (8 * (24 - len)));
        store(buf, at + len - 16, eight_digits(rest / E8));
        store(buf, at + len - 8, eight_digits(rest % E8));
    }
}

/// `n` (below 10^8) as eight ASCII digits with leading zeros, the first digit in the
/// lowest byte: split into halves, quarters and digits in parallel lanes of one word,
/// dividing by multiplication (exact for these ranges).
#[inline(always)]
fn eight_digits(n: u64) -> u64 {
    // Two 32-bit lanes of four digits each, the high half in the low lane.
    let x = (n / 10_000) | ((n % 10_000) << 32);
    // v / 100 = (v * 5243) >> 19 for v < 10^4: four 16-bit lanes of two digits.
    let q = ((x * 5243) >> 19) & 0x0000_007F_0000_007F;
    let x = q | ((x - q * 100) << 16);
    // v / 10 = (v * 103) >> 10 for v < 100: eight bytes of one digit.
    let q = ((x * 103) >> 10) & 0x000F_000F_000F_000F;
    let x = q | ((x - q * 10) << 8);
    x | 0x3030_3030_3030_3030
}

/// Writes `n` in decimal without leading zeros (nothing for zero) at the start of `buf`.
fn write_u128(mut n: u128, buf: &mut [u8]) -> usize {
    let mut tmp = [0u8; MAX_DIGITS + 1];
    let mut pos = tmp.len();
    while n > u128::from(u64::MAX) {
        let d = (n % 10) as u8;
        n /= 10;
        pos -= 1;
        tmp[pos] = b'0' + d;
    }
    let mut m = n as u64;
    while m >= 100 {
        let d = (m % 100) as usize * 2;
        m /= 100;
        pos -= 2;
        tmp[pos..pos + 2].copy_from_slice(&PAIRS[d..d + 2]);
    }
    if m >= 10 {
        let d = m as usize * 2;
        pos -= 2;
        tmp[pos..pos + 2].copy_from_slice(&PAIRS[d..d + 2]);
    } else if m > 0 {
        pos -= 1;
        tmp[pos] = b'0' + m as u8;
    }
    let len = tmp.len() - pos;
    buf[..len].copy_from_slice(&tmp[pos..]);
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digits(v: &str, p: Option<u32>) -> String {
        let mut buf = [0u8; 80];
        let n = checksum_digits(parse_decimal(v, "t").unwrap(), p, &mut buf);
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn parses_exactly_keeping_scale() {
        struct Case {
            input: &'static str,
            expected: &'static str,
        }
        let cases = [
            Case {
                input: "0.00100000",
                expected: "0.00100000",
            },
            Case {
                input: "45283.5",
                expected: "45283.5",
            },
            Case {
                input: "45281.0",
                expected: "45281.0",
            },
            Case {
                input: "\"0.5666\"",
                expected: "0.5666",
            },
            Case {
                input: "1e-08",
                expected: "0.00000001",
            },
            Case {
                input: "2.5E+2",
                expected: "250",
            },
            Case {
                input: "-0.17",
                expected: "-0.17",
            },
            Case {
                input: " 7 ",
                expected: "7",
            },
            Case {
                input: "0.00001234",
                expected: "0.00001234",
            },
        ];
        for case in cases {
            assert_eq!(
                parse_decimal(case.input, "price").unwrap().to_string(),
                case.expected,
                "{}",
                case.input
            );
        }
    }

    #[test]
    fn rejects_non_numbers_naming_field_and_text() {
        for bad in [
            "",
            "abc",
            "1.",
            ".5",
            "1e",
            "--1",
            "0x10",
            "\"1_000\"",
            "NaN",
            "1.2.3",
            "0.00000000000000000000000000000001",
        ] {
            let err = parse_decimal(bad, "qty").unwrap_err().to_string();
            assert!(err.contains("`qty`"), "{bad}: {err}");
        }
    }

    #[test]
    fn checksum_digits_follow_kraken_rules() {
        assert_eq!(digits("45285.2", None), "452852");
        assert_eq!(digits("0.00100000", None), "100000");
        assert_eq!(digits("0.05000", None), "5000");
        assert_eq!(digits("0.00001234", None), "1234");
        // Precision pads trimmed wire numbers back to the pair's precision.
        assert_eq!(digits("0.566", Some(4)), "5660");
        assert_eq!(digits("740.0", Some(8)), "74000000000");
        assert_eq!(digits("2", Some(5)), "200000");
        // More digits than the precision: rendered as written.
        assert_eq!(digits("0.123456", Some(2)), "123456");
        assert_eq!(digits("0", None), "");
        // 19 digits leave the fast path without overflowing it.
        assert_eq!(
            parse_decimal("9999999999999999999", "q")
                .unwrap()
                .to_string(),
            "9999999999999999999"
        );
        assert_eq!(parse_decimal("-0.5", "q").unwrap().to_string(), "-0.5");
        let mut buf = [0u8; 80];
        let n = checksum_digits(Decimal::MAX, Some(28), &mut buf);
        assert_eq!(&buf[..n], Decimal::MAX.to_string().as_bytes());
    }

    #[test]
    fn put_u64_digits_match_to_string() {
        let mut cases = vec![0u64, 1, 9, 10, 99, 100, 12_345, 10u64.pow(18), u64::MAX];
        for p in 1..20 {
            cases.extend([10u64.pow(p) - 1, 10u64.pow(p), 10u64.pow(p) + 1]);
        }
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..20_000 {
            // xorshift, at every magnitude
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            cases.push(rng >> (rng % 64));
        }
        for n in cases {
            for at in [0usize, 3] {
                let mut out = [b'#'; 3 + 20 + PUT_SLACK];
                let len = digits_u64(n);
                put_u64(n, len, &mut out, at);
                let want = if n == 0 { String::new() } else { n.to_string() };
                assert_eq!(std::str::from_utf8(&out[at..at + len]).unwrap(), want);
                assert_eq!(&out[..at], &b"###"[..at], "nothing before `at`");
                assert!(
                    out[at + len..].iter().all(|&b| b == b'#'),
                    "nothing after {n}"
                );
            }
        }
    }

    #[test]
    fn write_u128_handles_extremes() {
        let mut buf = [0u8; 40];
        let n = write_u128(u128::MAX, &mut buf);
        assert_eq!(&buf[..n], u128::MAX.to_string().as_bytes());
        for v in [1u128, 9, 10, 99, 100, 101, 12345, u128::from(u64::MAX) + 1] {
            let n = write_u128(v, &mut buf);
            assert_eq!(&buf[..n], v.to_string().as_bytes());
        }
    }
}

#[cfg(test)]
mod property_tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn prop_round_trips_any_decimal_text(m in any::<i64>(), scale in 0u32..=18) {
            let d = Decimal::new(m, scale);
            let text = d.to_string();
            let back = parse_decimal(&text, "x").unwrap();
            prop_assert_eq!(back, d);
            prop_assert_eq!(back.scale(), d.scale());
        }

        #[test]
        fn prop_checksum_digits_equal_string_rule(m in 0i64..i64::MAX, scale in 0u32..=12) {
            let d = Decimal::new(m, scale);
            let text = d.to_string();
            let expected: String = text.replace('.', "").trim_start_matches('0').to_owned();
            let mut buf = [0u8; 80];
            let n = checksum_digits(d, None, &mut buf);
            prop_assert_eq!(std::str::from_utf8(&buf[..n]).unwrap(), expected);
        }

        #[test]
        fn prop_fast_path_equals_general_parser(s in "-?[0-9]{1,10}(\\.[0-9]{1,10})?") {
            let general = Decimal::from_str_exact(&s).unwrap();
            let Some(fast) = parse_plain(&s) else {
                // Only long texts leave the fast path.
                prop_assert!(s.trim_start_matches('-').len() > 19, "{}", s);
                return Ok(());
            };
            prop_assert_eq!(fast, general);
            prop_assert_eq!(fast.scale(), general.scale());
            prop_assert_eq!(fast.to_string(), general.to_string());
        }

        #[test]
        fn prop_never_panics_on_arbitrary_text(s in ".{0,40}") {
            let _ = parse_decimal(&s, "x");
        }
    }
}
