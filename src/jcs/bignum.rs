//! Unsigned big integers of fixed capacity, for exact decimal ↔ binary conversion.
//!
//! Only what the number conversions need: multiply by a small factor or a power of
//! five, shift left, add, subtract, compare, and a division whose quotient is known to
//! fit in 64 bits. Limbs are `u32` so that every product fits a `u64`, which the
//! wasm32 target multiplies natively. The capacity covers the largest operands the
//! conversions build (see [`CAPACITY`]); an operation that would exceed it drops the
//! excess instead of panicking, which the callers' bounds rule out.

use std::cmp::Ordering;

/// Limbs of 32 bits: 3,072 bits. The largest operand is the parser's: up to 800
/// significant digits (< 2^2658) shifted by 62 bits, or 5^1123 (< 2^2608) shifted
/// likewise, times a 64-bit quotient estimate: under 2,800 bits.
const CAPACITY: usize = 96;

/// An unsigned integer `limbs[0] + limbs[1]·2^32 + …`; limbs at `len` and above are
/// zero, and `limbs[len - 1]` is not.
#[derive(Clone)]
pub(super) struct Big {
    len: usize,
    limbs: [u32; CAPACITY],
}

impl Big {
    /// The value `v`.
    pub(super) fn from_u64(v: u64) -> Big {
        let mut big = Big {
            len: 2,
            limbs: [0; CAPACITY],
        };
        big.limbs[0] = v as u32;
        big.limbs[1] = (v >> 32) as u32;
        big.trim();
        big
    }

    fn trim(&mut self) {
        while self.len > 0 && self.limbs[self.len - 1] == 0 {
            self.len -= 1;
        }
    }

    fn limb(&self, i: usize) -> u32 {
        if i < self.len {
            self.limbs[i]
        } else {
            0
        }
    }

    fn push(&mut self, limb: u32) {
        if self.len < CAPACITY {
            self.limbs[self.len] = limb;
            self.len += 1;
        }
    }

    /// Whether the value is zero.
    pub(super) fn is_zero(&self) -> bool {
        self.len == 0
    }

    /// The number of significant bits (0 for zero).
    pub(super) fn bit_len(&self) -> u32 {
        match self.len {
            0 => 0,
            n => 32 * n as u32 - self.limbs[n - 1].leading_zeros(),
        }
    }

    /// `self = self × m + add`.
    pub(super) fn mul_add_small(&mut self, m: u32, add: u32) {
        let mut carry = u64::from(add);
        for limb in &mut self.limbs[..self.len] {
            let t = u64::from(*limb) * u64::from(m) + carry;
            *limb = t as u32;
            carry = t >> 32;
        }
        if carry > 0 {
            self.push(carry as u32);
        }
    }

    /// `self = self × 5^k`.
    pub(super) fn mul_pow5(&mut self, mut k: u32) {
        const FIVE_13: u32 = 1_220_703_125; // the largest power of five in a u32
        while k >= 13 {
            self.mul_add_small(FIVE_13, 0);
            k -= 13;
        }
        if k > 0 {
            self.mul_add_small(5u32.pow(k), 0);
        }
    }

    /// `self = self × 2^bits`.
    pub(super) fn shl(&mut self, bits: u32) {
        if self.len == 0 {
            return;
        }
        let whole = (bits / 32) as usize;
        let part = bits % 32;
        let new_len = (self.len + whole + 1).min(CAPACITY);
        // Top down, so every source limb is read before it is overwritten.
        for i in (0..new_len).rev() {
            let high = if i >= whole { self.limb(i - whole) } else { 0 };
            self.limbs[i] = if part == 0 {
                high
            } else {
                let low = if i > whole {
                    self.limb(i - whole - 1)
                } else {
                    0
                };
                (high << part) | (low >> (32 - part))
            };
        }
        self.len = new_len;
        self.trim();
    }

    /// `self += other`.
    pub(super) fn add(&mut self, other: &Big) {
        let n = self.len.max(other.len);
        let mut carry = 0u64;
        for i in 0..n.min(CAPACITY) {
            let t = u64::from(self.limb(i)) + u64::from(other.limb(i)) + carry;
            self.limbs[i] = t as u32;
            carry = t >> 32;
        }
        self.len = n.min(CAPACITY);
        if carry > 0 {
            self.push(carry as u32);
        }
    }

    /// `self -= other`, for `other <= self` (otherwise the result is meaningless).
    pub(super) fn sub(&mut self, other: &Big) {
        let mut borrow = 0i64;
        for i in 0..self.len {
            let t = i64::from(self.limbs[i]) - i64::from(other.limb(i)) + borrow;
            self.limbs[i] = t as u32;
            borrow = t >> 32; // 0 or -1
        }
        self.trim();
    }

    /// `self × m` as a new number.
    pub(super) fn mul_u64(&self, m: u64) -> Big {
        let mut out = Big::from_u64(0);
        for (shift, factor) in [(0, m & 0xffff_ffff), (1, m >> 32)] {
            if factor == 0 {
                continue;
            }
            let mut carry = 0u64;
            let mut i = shift;
            for &limb in &self.limbs[..self.len] {
                if i >= CAPACITY {
                    break;
                }
                // At most (2^32 - 1)^2 + 2 (2^32 - 1) = 2^64 - 1: no overflow.
                let t = u64::from(limb) * factor + u64::from(out.limbs[i]) + carry;
                out.limbs[i] = t as u32;
                carry = t >> 32;
                i += 1;
            }
            // The limb after this pass's last is still zero (the first pass wrote up to
            // `len`, the second starts one higher), and the carry is below 2^32: it is
            // the whole limb, and nothing carries on from it.
            if i < CAPACITY {
                out.limbs[i] = carry as u32;
            }
        }
        out.len = (self.len + 2).min(CAPACITY);
        out.trim();
        out
    }

    /// Bits `shift .. shift + 128` of the value.
    pub(super) fn bits_from(&self, shift: u32) -> u128 {
        let at = (shift / 32) as usize;
        let part = shift % 32;
        let mut window = 0u128;
        for i in (at..at + 4).rev() {
            window = (window << 32) | u128::from(self.limb(i));
        }
        if part > 0 {
            window = (window >> part) | (u128::from(self.limb(at + 4)) << (128 - part));
        }
        window
    }

    /// Whether any of the lowest `bits` bits is set.
    pub(super) fn low_bits_nonzero(&self, bits: u32) -> bool {
        let whole = ((bits / 32) as usize).min(self.len);
        if self.limbs[..whole].iter().any(|&l| l != 0) {
            return true;
        }
        let part = bits % 32;
        part > 0 && self.limb(whole) & ((1u32 << part) - 1) != 0
    }

    /// `num / den` and its remainder, for a quotient below 2^64 and `den > 0`.
    ///
    /// The quotient is estimated from the top 64 bits of `den` (and the matching bits
    /// of `num`), which puts it within a few units of the true one; multiplying back
    /// and correcting makes it exact.
    pub(super) fn div_rem(num: &Big, den: &Big) -> (u64, Big) {
        // Align so that the divisor's window has its top bit set.
        let align = |big: &Big| -> u128 {
            match den.bit_len().checked_sub(64) {
                Some(shift) => big.bits_from(shift),
                None => big.bits_from(0) << (64 - den.bit_len()),
            }
        };
        let top = align(den) as u64;
        if top == 0 {
            return (0, num.clone());
        }
        let window = align(num);
        let mut q = div_wide((window >> 64) as u64, window as u64, top);
        // The estimate is at most 3 above or 1 below the quotient when the precondition
        // holds; the corrections are capped so that a violated one cannot loop long.
        let mut product = den.mul_u64(q);
        for _ in 0..4 {
            if product.cmp(num) != Ordering::Greater || q == 0 {
                break;
            }
            q -= 1;
            product.sub(den);
        }
        let mut rem = num.clone();
        rem.sub(&product);
        for _ in 0..4 {
            if rem.cmp(den) == Ordering::Less || q == u64::MAX {
                break;
            }
            q += 1;
            rem.sub(den);
        }
        (q, rem)
    }

    /// Compares values.
    pub(super) fn cmp(&self, other: &Big) -> Ordering {
        self.len.cmp(&other.len).then_with(|| {
            self.limbs[..self.len]
                .iter()
                .rev()
                .cmp(other.limbs[..other.len].iter().rev())
        })
    }
}

/// `⌊(hi · 2^64 + lo) / d⌋` for `d >= 2^63`, saturated at `u64::MAX` when `hi >= d`.
///
/// Knuth's algorithm D (TAOCP vol. 2, 4.3.1) with two 32-bit quotient digits, in the
/// form of Warren's `divlu` (Hacker's Delight, 9-4): 64-bit operations only, so the
/// module needs no 128-bit division routine.
fn div_wide(hi: u64, lo: u64, d: u64) -> u64 {
    const B: u64 = 1 << 32;
    if hi >= d {
        return u64::MAX;
    }
    let (d1, d0) = (d >> 32, d & (B - 1));
    // One quotient digit of (top · 2^32 + next) / d, for top < d.
    let digit = |top: u64, next: u64| -> u64 {
        let mut q = top / d1;
        let mut r = top - q * d1;
        while q >= B || q * d0 > (r << 32 | next) {
            q -= 1;
            r += d1;
            if r >= B {
                break;
            }
        }
        q
    };
    let q1 = digit(hi, lo >> 32);
    let rest = (hi << 32 | lo >> 32).wrapping_sub(q1.wrapping_mul(d));
    let q0 = digit(rest, lo & (B - 1));
    q1 << 32 | q0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to_u128(b: &Big) -> u128 {
        b.bits_from(0)
    }

    #[test]
    fn arithmetic_matches_u128() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let (a, b) = (next(), next() >> (next() % 64));
            let (x, y) = (Big::from_u64(a), Big::from_u64(b));
            assert_eq!(to_u128(&x.mul_u64(b)), u128::from(a) * u128::from(b));
            let mut s = x.clone();
            s.add(&y);
            assert_eq!(to_u128(&s), u128::from(a) + u128::from(b));
            let sh = (next() % 60) as u32;
            let mut t = x.clone();
            t.shl(sh);
            assert_eq!(to_u128(&t), u128::from(a) << sh);
            assert_eq!(t.bit_len(), 128 - (u128::from(a) << sh).leading_zeros());
            assert_eq!(
                t.low_bits_nonzero(sh + 1),
                (u128::from(a) << sh) & ((2u128 << sh) - 1) != 0
            );
            if b > 0 {
                let wide = x.mul_u64(next());
                let n = to_u128(&wide);
                if n / u128::from(b) <= u128::from(u64::MAX) {
                    let (q, r) = Big::div_rem(&wide, &y);
                    assert_eq!(u128::from(q), n / u128::from(b));
                    assert_eq!(to_u128(&r), n % u128::from(b));
                }
            }
            let mut d = x.mul_u64(3);
            d.sub(&x);
            assert_eq!(to_u128(&d), u128::from(a) * 2);
            assert_eq!(x.cmp(&y), a.cmp(&b));
        }
    }

    #[test]
    fn wide_division_matches_u128() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..100_000 {
            let d = next() | 1 << 63;
            let d = if next() % 4 == 0 { d | 0xffff_ffff } else { d };
            let hi = next() % d;
            let hi = if next() % 4 == 0 { d - 1 } else { hi };
            let lo = next();
            let n = u128::from(hi) << 64 | u128::from(lo);
            assert_eq!(
                u128::from(div_wide(hi, lo, d)),
                n / u128::from(d),
                "{hi:x} {lo:x} / {d:x}"
            );
        }
        assert_eq!(div_wide(1 << 63, 0, 1 << 63), u64::MAX);
        // The low digit's correction: with d = 2^63 + 2^30 and a first remainder of
        // 2^32, the estimate 2 is right exactly when the low 32 bits reach 2^31, which
        // random cases almost never decide (the estimate's product lands within 2^32 of
        // the remainder about once in 2^32 draws).
        let d = (1 << 63) + (1 << 30);
        for (lo, quotient) in [(0xffff_fffe, 2), (1 << 31, 2), ((1 << 31) - 1, 1), (0, 1)] {
            let n = 1u128 << 64 | u128::from(lo);
            assert_eq!(n / u128::from(d), u128::from(quotient));
            assert_eq!(div_wide(1, lo, d), quotient, "(2^64 + {lo:#x}) / {d:#x}");
        }
    }

    #[test]
    fn large_division_is_exact() {
        // 5^300 × q + r divided by 5^300 gives back q and r.
        let mut den = Big::from_u64(1);
        den.mul_pow5(300);
        for (q, r) in [(u64::MAX, 12345u64), (1 << 61, 0), (987654321, 1)] {
            let mut num = den.mul_u64(q);
            num.add(&Big::from_u64(r));
            let (got_q, got_r) = Big::div_rem(&num, &den);
            assert_eq!(got_q, q);
            assert_eq!(got_r.cmp(&Big::from_u64(r)), Ordering::Equal);
        }
    }
}
