//! Column statistics (`ColumnStatistics`) for row groups, stripes and the file.
//!
//! Row-group statistics are updated value by value; a finished row group is merged into the stripe's, and a
//! finished stripe into the file's. Encoding follows the Java / C++ writers: `numberOfValues` counts non-null
//! values, `hasNull` is always written, the type-specific message is written even when every value is null (then
//! without minimum / maximum). Omissions, all of which readers treat as "unknown":
//! - integer and decimal sums that overflow (as the spec says), and double sums that are not finite;
//! - double minimum / maximum once a NaN was seen (NaN has no place in an ordering);
//! - string minimum / maximum longer than [`MAX_STRING_STAT`] bytes (Java truncates them into lower / upper
//!   bounds instead; we just leave them out).

use super::proto::Proto;

/// Longest string minimum / maximum that is recorded (the Java writer's limit).
pub(crate) const MAX_STRING_STAT: usize = 1024;

/// Largest magnitude of a 38-digit decimal, plus one.
const DECIMAL_LIMIT: i128 = 10i128.pow(38);

#[derive(Debug, Clone)]
pub(crate) struct ColumnStats {
    /// Non-null values.
    pub(crate) values: u64,
    pub(crate) has_null: bool,
    pub(crate) kind: TypeStats,
}

#[derive(Debug, Clone)]
pub(crate) enum TypeStats {
    /// Structs, lists and maps: counts only.
    Plain,
    Bool {
        trues: u64,
    },
    Int {
        min: i64,
        max: i64,
        sum: Option<i64>,
    },
    Double {
        min: f64,
        max: f64,
        sum: f64,
        nan: bool,
    },
    String {
        min: Vec<u8>,
        max: Vec<u8>,
        /// Whether min / max hold a value (any string seen, not too long).
        bounded: bool,
        /// Whether a value too long for min / max was seen.
        too_long: bool,
        sum: i64,
    },
    Binary {
        sum: i64,
    },
    Decimal {
        min: i128,
        max: i128,
        sum: Option<i128>,
        scale: u8,
    },
    Date {
        min: i32,
        max: i32,
    },
    /// (UTC milliseconds, floored; nanoseconds within that millisecond).
    Timestamp {
        min: (i64, u32),
        max: (i64, u32),
    },
}

impl TypeStats {
    pub(crate) fn int() -> Self {
        TypeStats::Int { min: i64::MAX, max: i64::MIN, sum: Some(0) }
    }
    pub(crate) fn double() -> Self {
        TypeStats::Double { min: f64::INFINITY, max: f64::NEG_INFINITY, sum: 0.0, nan: false }
    }
    pub(crate) fn string() -> Self {
        TypeStats::String { min: Vec::new(), max: Vec::new(), bounded: false, too_long: false, sum: 0 }
    }
    pub(crate) fn decimal(scale: u8) -> Self {
        TypeStats::Decimal { min: i128::MAX, max: i128::MIN, sum: Some(0), scale }
    }
    pub(crate) fn date() -> Self {
        TypeStats::Date { min: i32::MAX, max: i32::MIN }
    }
    pub(crate) fn timestamp() -> Self {
        TypeStats::Timestamp { min: (i64::MAX, u32::MAX), max: (i64::MIN, 0) }
    }

    /// The same kind with nothing recorded.
    fn empty_like(&self) -> Self {
        match self {
            TypeStats::Plain => TypeStats::Plain,
            TypeStats::Bool { .. } => TypeStats::Bool { trues: 0 },
            TypeStats::Int { .. } => TypeStats::int(),
            TypeStats::Double { .. } => TypeStats::double(),
            TypeStats::String { .. } => TypeStats::string(),
            TypeStats::Binary { .. } => TypeStats::Binary { sum: 0 },
            TypeStats::Decimal { scale, .. } => TypeStats::decimal(*scale),
            TypeStats::Date { .. } => TypeStats::date(),
            TypeStats::Timestamp { .. } => TypeStats::timestamp(),
        }
    }
}

impl ColumnStats {
    pub(crate) fn new(kind: TypeStats) -> Self {
        Self { values: 0, has_null: false, kind }
    }

    /// Forgets everything recorded, keeping allocations.
    pub(crate) fn reset(&mut self) {
        self.values = 0;
        self.has_null = false;
        if let TypeStats::String { min, max, bounded, too_long, sum } = &mut self.kind {
            min.clear();
            max.clear();
            *bounded = false;
            *too_long = false;
            *sum = 0;
        } else {
            self.kind = self.kind.empty_like();
        }
    }

    #[inline]
    pub(crate) fn update_int(&mut self, v: i64) {
        if let TypeStats::Int { min, max, sum } = &mut self.kind {
            *min = (*min).min(v);
            *max = (*max).max(v);
            *sum = sum.and_then(|s| s.checked_add(v));
        }
    }

    #[inline]
    pub(crate) fn update_double(&mut self, v: f64) {
        if let TypeStats::Double { min, max, sum, nan } = &mut self.kind {
            if v.is_nan() {
                *nan = true;
            } else {
                *min = min.min(v);
                *max = max.max(v);
            }
            *sum += v;
        }
    }

    #[inline]
    pub(crate) fn update_bytes(&mut self, v: &[u8]) {
        match &mut self.kind {
            TypeStats::String { min, max, bounded, too_long, sum } => {
                *sum = sum.saturating_add(v.len() as i64);
                if v.len() > MAX_STRING_STAT {
                    *too_long = true;
                } else if !*bounded {
                    min.extend_from_slice(v);
                    max.extend_from_slice(v);
                    *bounded = true;
                } else if v < min.as_slice() {
                    min.clear();
                    min.extend_from_slice(v);
                } else if v > max.as_slice() {
                    max.clear();
                    max.extend_from_slice(v);
                }
            }
            TypeStats::Binary { sum } => *sum = sum.saturating_add(v.len() as i64),
            _ => {}
        }
    }

    #[inline]
    pub(crate) fn update_bool(&mut self, v: bool) {
        if let TypeStats::Bool { trues } = &mut self.kind {
            *trues += u64::from(v);
        }
    }

    #[inline]
    pub(crate) fn update_decimal(&mut self, v: i128) {
        if let TypeStats::Decimal { min, max, sum, .. } = &mut self.kind {
            *min = (*min).min(v);
            *max = (*max).max(v);
            *sum = sum.and_then(|s| s.checked_add(v)).filter(|s| s.unsigned_abs() < DECIMAL_LIMIT as u128);
        }
    }

    #[inline]
    pub(crate) fn update_date(&mut self, v: i32) {
        if let TypeStats::Date { min, max } = &mut self.kind {
            *min = (*min).min(v);
            *max = (*max).max(v);
        }
    }

    #[inline]
    pub(crate) fn update_timestamp(&mut self, millis: i64, nanos_in_milli: u32) {
        if let TypeStats::Timestamp { min, max } = &mut self.kind {
            let v = (millis, nanos_in_milli);
            *min = (*min).min(v);
            *max = (*max).max(v);
        }
    }

    /// Adds `other` (statistics of later values of the same column) to these.
    pub(crate) fn merge(&mut self, other: &ColumnStats) {
        self.values += other.values;
        self.has_null |= other.has_null;
        match (&mut self.kind, &other.kind) {
            (TypeStats::Bool { trues }, TypeStats::Bool { trues: t }) => *trues += t,
            (TypeStats::Int { min, max, sum }, TypeStats::Int { min: omin, max: omax, sum: osum }) => {
                *min = (*min).min(*omin);
                *max = (*max).max(*omax);
                *sum = sum.zip(*osum).and_then(|(a, b)| a.checked_add(b));
            }
            (
                TypeStats::Double { min, max, sum, nan },
                TypeStats::Double { min: omin, max: omax, sum: osum, nan: onan },
            ) => {
                *min = min.min(*omin);
                *max = max.max(*omax);
                *sum += osum;
                *nan |= onan;
            }
            (
                TypeStats::String { min, max, bounded, too_long, sum },
                TypeStats::String { min: omin, max: omax, bounded: obounded, too_long: otoo_long, sum: osum },
            ) => {
                *sum = sum.saturating_add(*osum);
                *too_long |= otoo_long;
                if *obounded {
                    if !*bounded || omin < min {
                        min.clear();
                        min.extend_from_slice(omin);
                    }
                    if !*bounded || omax > max {
                        max.clear();
                        max.extend_from_slice(omax);
                    }
                    *bounded = true;
                }
            }
            (TypeStats::Binary { sum }, TypeStats::Binary { sum: osum }) => *sum = sum.saturating_add(*osum),
            (TypeStats::Decimal { min, max, sum, .. }, TypeStats::Decimal { min: omin, max: omax, sum: osum, .. }) => {
                *min = (*min).min(*omin);
                *max = (*max).max(*omax);
                *sum = sum
                    .zip(*osum)
                    .and_then(|(a, b)| a.checked_add(b))
                    .filter(|s| s.unsigned_abs() < DECIMAL_LIMIT as u128);
            }
            (TypeStats::Date { min, max }, TypeStats::Date { min: omin, max: omax }) => {
                *min = (*min).min(*omin);
                *max = (*max).max(*omax);
            }
            (TypeStats::Timestamp { min, max }, TypeStats::Timestamp { min: omin, max: omax }) => {
                *min = (*min).min(*omin);
                *max = (*max).max(*omax);
            }
            _ => {}
        }
    }

    /// Encodes the fields of a `ColumnStatistics` message into `p`.
    pub(crate) fn encode(&self, p: &mut Proto) {
        p.uint(1, self.values);
        let any = self.values > 0;
        match &self.kind {
            TypeStats::Plain => {}
            TypeStats::Bool { trues } => {
                p.message(5, |m| {
                    m.packed_uint(1, &[*trues]);
                });
            }
            TypeStats::Int { min, max, sum } => {
                p.message(2, |m| {
                    if any {
                        m.sint(1, *min).sint(2, *max);
                    }
                    if let Some(sum) = sum {
                        m.sint(3, *sum);
                    }
                });
            }
            TypeStats::Double { min, max, sum, nan } => {
                p.message(3, |m| {
                    if any && !nan {
                        m.double(1, *min).double(2, *max);
                    }
                    if sum.is_finite() {
                        m.double(3, *sum);
                    }
                });
            }
            TypeStats::String { min, max, bounded, too_long, sum } => {
                p.message(4, |m| {
                    if *bounded && !*too_long {
                        m.bytes(1, min).bytes(2, max);
                    }
                    m.sint(3, *sum);
                });
            }
            TypeStats::Binary { sum } => {
                p.message(8, |m| {
                    m.sint(1, *sum);
                });
            }
            TypeStats::Decimal { min, max, sum, scale } => {
                p.message(6, |m| {
                    if any {
                        m.bytes(1, format_decimal(*min, *scale).as_bytes());
                        m.bytes(2, format_decimal(*max, *scale).as_bytes());
                    }
                    if let Some(sum) = sum {
                        m.bytes(3, format_decimal(*sum, *scale).as_bytes());
                    }
                });
            }
            TypeStats::Date { min, max } => {
                p.message(7, |m| {
                    if any {
                        m.sint(1, i64::from(*min)).sint(2, i64::from(*max));
                    }
                });
            }
            TypeStats::Timestamp { min, max } => {
                p.message(9, |m| {
                    if any {
                        // The writer time zone is UTC, so local and UTC milliseconds agree. Nanoseconds are
                        // stored plus one so that 0 can mean "absent".
                        m.sint(1, min.0).sint(2, max.0).sint(3, min.0).sint(4, max.0);
                        m.uint(5, u64::from(min.1) + 1).uint(6, u64::from(max.1) + 1);
                    }
                });
            }
        }
        p.boolean(10, self.has_null);
    }
}

/// `unscaled * 10^-scale` in plain decimal notation (`-1.50`, `0.05`, `12`).
pub(crate) fn format_decimal(unscaled: i128, scale: u8) -> String {
    let digits = unscaled.unsigned_abs().to_string();
    let scale = usize::from(scale);
    let mut s = String::with_capacity(digits.len() + scale + 3);
    if unscaled < 0 {
        s.push('-');
    }
    if scale == 0 {
        s.push_str(&digits);
    } else if digits.len() > scale {
        let (int, frac) = digits.split_at(digits.len() - scale);
        s.push_str(int);
        s.push('.');
        s.push_str(frac);
    } else {
        s.push_str("0.");
        s.extend(std::iter::repeat_n('0', scale - digits.len()));
        s.push_str(&digits);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_format_with_their_scale() {
        assert_eq!(format_decimal(0, 0), "0");
        assert_eq!(format_decimal(-150, 2), "-1.50");
        assert_eq!(format_decimal(5, 2), "0.05");
        assert_eq!(format_decimal(-5, 3), "-0.005");
        assert_eq!(format_decimal(1234, 1), "123.4");
        assert_eq!(format_decimal(10i128.pow(38) - 1, 38), format!("0.{}", "9".repeat(38)));
    }

    #[test]
    fn merge_keeps_extremes_and_drops_overflowing_sums() {
        let mut a = ColumnStats::new(TypeStats::int());
        a.values = 2;
        a.update_int(i64::MAX);
        a.update_int(-3);
        let mut b = ColumnStats::new(TypeStats::int());
        b.values = 1;
        b.has_null = true;
        b.update_int(5);
        a.merge(&b);
        assert_eq!(a.values, 3);
        assert!(a.has_null);
        let TypeStats::Int { min, max, sum } = a.kind else { panic!() };
        assert_eq!((min, max, sum), (-3, i64::MAX, None));

        let mut s = ColumnStats::new(TypeStats::string());
        for v in ["m", "b", "z", "c"] {
            s.update_bytes(v.as_bytes());
        }
        let mut t = ColumnStats::new(TypeStats::string());
        t.update_bytes(b"a");
        s.merge(&t);
        let TypeStats::String { min, max, sum, .. } = &s.kind else { panic!() };
        assert_eq!((min.as_slice(), max.as_slice(), *sum), (&b"a"[..], &b"z"[..], 5));
        s.reset();
        let TypeStats::String { bounded, sum, .. } = &s.kind else { panic!() };
        assert!(!bounded && *sum == 0);
    }
}
