//! Decimal ↔ double conversions of the crate's own, exact and bounded in work.
//!
//! [`to_f64`] reads decimal text with correct rounding (round half to even), as
//! `str::parse::<f64>` does. Most config numbers take Clinger's fast path (W. D.
//! Clinger, "How to Read Floating Point Numbers Accurately", PLDI 1990): a significand
//! of at most 53 bits and a power of ten up to 10^22 are both exact doubles, so one
//! IEEE multiplication or division rounds correctly. Everything else is done exactly
//! with big integers: the scaled decimal becomes a 62–63 bit quotient plus a sticky
//! bit, rounded once. Only the first 800 significant digits are kept exactly (the rest
//! become the sticky bit): a halfway point between two doubles has at most 768
//! significant digits, so no rounding decision depends on later ones.
//!
//! [`shortest`] finds the digits ES6 `Number.prototype.toString` prints: the fewest
//! that read back as the same double, the closest to it among those, and the even one
//! of two equally close. It follows the free-format idea of Steele & White ("How to
//! Print Floating-Point Numbers Accurately", PLDI 1990) and Dragon4's exact rational
//! arithmetic, but divides once instead of once per digit: the value, scaled to 17
//! digits before the point, is split into an integer and an exact remainder, and the
//! half-gaps to the neighbouring doubles are kept as exact fractions of the same
//! denominator; shorter candidates are then checked against those bounds with a
//! multiplication by a small integer each.

use std::cmp::Ordering;

use super::bignum::Big;

/// Significant digits kept exactly when reading a number (see the module docs).
const MAX_DIGITS: usize = 800;

/// 10^0 ..= 10^22, all exact doubles.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// The value `±int.frac × 10^exp10`, rounded to the nearest double (ties to even), or
/// `None` when that is infinite. `int` and `frac` are ASCII digits; `exp10` may be
/// saturated by the caller, as anything beyond ±10^9 is out of range either way.
pub(super) fn to_f64(negative: bool, int: &[u8], frac: &[u8], exp10: i64) -> Option<f64> {
    let total = int.len() + frac.len();
    let digit = |i: usize| -> u8 {
        let c = if i < int.len() {
            int[i]
        } else {
            frac[i - int.len()]
        };
        c.wrapping_sub(b'0')
    };
    let sign = |v: f64| if negative { -v } else { v };
    let Some(first) = (0..total).find(|&i| digit(i) != 0) else {
        return Some(sign(0.0));
    };
    let last = (first..total)
        .rev()
        .find(|&i| digit(i) != 0)
        .unwrap_or(first);
    let n = last - first + 1;
    // value = D × 10^q, D the digits `first..=last`; `lead` is the decimal exponent of
    // its leading digit: 10^lead <= value < 10^(lead + 1).
    let q = exp10
        .saturating_sub(frac.len() as i64)
        .saturating_add((total - 1 - last) as i64);
    let lead = q.saturating_add(n as i64 - 1);
    if lead > 308 {
        return None; // >= 1e309
    }
    if lead < -324 {
        return Some(sign(0.0)); // < 1e-324, below half the smallest subnormal
    }
    if n <= 19 {
        let d = (first..=last).fold(0u64, |acc, i| acc * 10 + u64::from(digit(i)));
        if let Some(v) = clinger(d, q) {
            return Some(sign(v));
        }
    }
    let kept = n.min(MAX_DIGITS);
    let mut big = Big::from_u64(0);
    let mut i = first;
    while i < first + kept {
        let chunk = (first + kept - i).min(9);
        let mut part = 0u32;
        for j in i..i + chunk {
            part = part * 10 + u32::from(digit(j));
        }
        big.mul_add_small(10u32.pow(chunk as u32), part);
        i += chunk;
    }
    // The dropped digits end in a non-zero one (`last`), so they add a sticky bit.
    let sticky = kept < n;
    let q = q + (n - kept) as i64; // within -1124 ..= 308 after the range checks
    let v = if q >= 0 {
        big.mul_pow5(q as u32);
        let bits = big.bit_len();
        if bits > 64 {
            let shift = bits - 64;
            let mant = big.bits_from(shift) as u64;
            let sticky = sticky || big.low_bits_nonzero(shift);
            round(mant, q + i64::from(shift), sticky)
        } else {
            round(big.bits_from(0) as u64, q, sticky)
        }
    } else {
        // D / 10^k = D / 5^k × 2^-k: make the quotient 62 or 63 bits long.
        let k = q.unsigned_abs() as u32;
        let mut den = Big::from_u64(1);
        den.mul_pow5(k);
        let shift = i64::from(den.bit_len()) + 62 - i64::from(big.bit_len());
        if shift >= 0 {
            big.shl(shift as u32);
        } else {
            den.shl(shift.unsigned_abs() as u32);
        }
        let (mant, rem) = Big::div_rem(&big, &den);
        round(mant, -shift - i64::from(k), sticky || !rem.is_zero())
    };
    v.map(sign)
}

/// Clinger's fast path: `d × 10^q` with one correctly rounded IEEE operation, when
/// both operands are exact doubles.
fn clinger(d: u64, q: i64) -> Option<f64> {
    const EXACT: u64 = 1 << 53;
    if d > EXACT {
        return None;
    }
    match q {
        0..=22 => Some(d as f64 * POW10[q as usize]),
        -22..=-1 => Some(d as f64 / POW10[q.unsigned_abs() as usize]),
        23..=37 => {
            // Move surplus powers of ten into the significand while it stays exact.
            let mut d = d;
            for _ in 22..q {
                d = d.checked_mul(10).filter(|&d| d <= EXACT)?;
            }
            Some(d as f64 * POW10[22])
        }
        _ => None,
    }
}

/// `(mant + δ) × 2^exp2` rounded to a double, ties to even, where `0 <= δ < 1` and
/// `δ > 0` exactly when `sticky`; `None` when it rounds to infinity. `mant > 0`.
fn round(mant: u64, exp2: i64, sticky: bool) -> Option<f64> {
    let zeros = mant.leading_zeros();
    let mant = mant << zeros;
    let exp2 = exp2 - i64::from(zeros);
    // mant is in [2^63, 2^64): keep 53 bits, or fewer for a subnormal result.
    let target = (exp2 + 11).max(-1074);
    let shift = target - exp2; // >= 11
    if shift >= 128 {
        return Some(0.0);
    }
    let wide = u128::from(mant);
    let mut kept = (wide >> shift) as u64;
    let rest = wide & ((1u128 << shift) - 1);
    let half = 1u128 << (shift - 1);
    if rest > half || (rest == half && (sticky || kept & 1 == 1)) {
        kept += 1;
    }
    let (kept, target) = if kept == 1 << 53 {
        (kept >> 1, target + 1)
    } else {
        (kept, target)
    };
    if kept < 1 << 52 {
        return Some(f64::from_bits(kept)); // subnormal (target is -1074), or zero
    }
    let biased = target + 1075;
    if biased >= 0x7ff {
        return None;
    }
    Some(f64::from_bits(((biased as u64) << 52) | (kept - (1 << 52))))
}

/// Shortest round-trip digits of a double: `digits[..len]` (no trailing zeros) with
/// the decimal point at `point`, value = 0.DIGITS × 10^point.
pub(super) struct Digits {
    /// ASCII digits.
    pub(super) digits: [u8; 18],
    /// How many of `digits` are used.
    pub(super) len: usize,
    /// ES6's `n`: the position of the decimal point relative to the first digit.
    pub(super) point: i32,
}

/// The ES6 `Number.prototype.toString` digits of a finite `value > 0`.
pub(super) fn shortest(value: f64) -> Digits {
    const LOW: u64 = 10_000_000_000_000_000; // 10^16
    let bits = value.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let fraction = bits & ((1 << 52) - 1);
    let (m, e) = if biased == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1 << 52), biased - 1075)
    };
    // Doubles that round to `value` lie within half a gap on either side: the upper
    // gap is 2^e; the lower one too, except at a power of two (not subnormal) where it
    // is half that. Ends count when m is even (reading rounds ties to even).
    let inclusive = m % 2 == 0;
    let narrow_below = biased > 0 && fraction == 0;
    // value = v × 2^f; the half-gaps are 1 × 2^f below and `above` × 2^f above.
    let (v, f, above) = if narrow_below {
        (m << 2, e - 2, 2)
    } else {
        (m << 1, e - 1, 1)
    };
    // floor(log10(value)), possibly one too low (corrected below): 2^top <= value.
    let top = e + 63 - m.leading_zeros() as i32;
    let mut lead = ((i64::from(top) * 1_292_913_986) >> 32) as i32;
    // Scale by 10^(16 - lead) so that the integer part has 17 digits:
    // X = num / den, half-gaps below and above = lower / den and upper / den.
    let p = 16 - lead;
    let twos = f + p;
    let mut scale = Big::from_u64(1);
    let mut den = Big::from_u64(1);
    if p > 0 {
        scale.mul_pow5(p as u32);
    } else {
        den.mul_pow5(p.unsigned_abs());
    }
    if twos > 0 {
        scale.shl(twos as u32);
    } else {
        den.shl(twos.unsigned_abs());
    }
    let mut num = scale.mul_u64(v);
    let mut lower = scale;
    let mut upper = lower.mul_u64(above);
    let (mut q, mut rem) = Big::div_rem(&num, &den);
    for _ in 0..3 {
        if q >= 10 * LOW {
            den.mul_add_small(10, 0);
            lead += 1;
        } else if q < LOW {
            num.mul_add_small(10, 0);
            lower.mul_add_small(10, 0);
            upper.mul_add_small(10, 0);
            lead -= 1;
        } else {
            break;
        }
        (q, rem) = Big::div_rem(&num, &den);
    }
    // Quick rejection: a half-gap (in units of the 17th digit) is below 2^bound.
    let bound = |gap: &Big| -> u64 {
        let b = i64::from(gap.bit_len()) - i64::from(den.bit_len()) + 1;
        if b >= 63 {
            u64::MAX
        } else {
            1u64 << b.max(0)
        }
    };
    let (lower_bound, upper_bound) = (bound(&lower), bound(&upper));
    let within = |ord: Ordering| ord == Ordering::Less || (inclusive && ord == Ordering::Equal);
    // A candidate `below` units under q (X - c = below + rem/den) is in the interval
    // when below × den + rem <= lower.
    let below_in = |below: u64| -> bool {
        if below >= lower_bound {
            return false;
        }
        let mut t = den.mul_u64(below);
        t.add(&rem);
        within(t.cmp(&lower))
    };
    // A candidate `over >= 1` units above q (c - X = over - rem/den) is in the
    // interval when over × den <= upper + rem.
    let over_in = |over: u64| -> bool {
        if over > upper_bound {
            return false;
        }
        let t = den.mul_u64(over);
        let mut limit = upper.clone();
        limit.add(&rem);
        within(t.cmp(&limit))
    };
    let mut step = LOW;
    let chosen = loop {
        let low = q - q % step;
        let high = low + step;
        let pick = match (below_in(q - low), over_in(high - q)) {
            (true, true) => {
                // Both in: the closer one. X - low versus high - X is
                // 2·rem versus (step - 2·(q - low))·den.
                let diff = step as i64 - 2 * (q - low) as i64;
                let ord = if diff < 0 {
                    Ordering::Greater
                } else {
                    let mut twice = rem.clone();
                    twice.shl(1);
                    twice.cmp(&den.mul_u64(diff as u64))
                };
                Some(match ord {
                    Ordering::Less => low,
                    Ordering::Greater => high,
                    Ordering::Equal if (low / step) % 2 == 0 => low,
                    Ordering::Equal => high,
                })
            }
            (true, false) => Some(low),
            (false, true) => Some(high),
            (false, false) => None,
        };
        match pick {
            Some(c) => break c,
            None if step == 1 => break q, // not reached: 17 digits always suffice
            None => step /= 10,
        }
    };
    let mut out = Digits {
        digits: [b'0'; 18],
        len: 0,
        point: 0,
    };
    let mut c = chosen;
    let mut count = 0;
    while c > 0 {
        c /= 10;
        count += 1;
    }
    let mut c = chosen;
    for at in (0..count).rev() {
        out.digits[at] = b'0' + (c % 10) as u8;
        c /= 10;
    }
    out.len = count;
    while out.len > 1 && out.digits[out.len - 1] == b'0' {
        out.len -= 1;
    }
    out.point = count as i32 + lead - 16;
    out
}
