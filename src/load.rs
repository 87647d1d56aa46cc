//! Measured expert loads: the element types the library accepts (`f32` and `i64`) behind one trait,
//! so that every algorithm has a single generic path.

use crate::error::{Error, Result};

/// An element type for measured loads.
///
/// Implemented for `f32` (the `weight` argument of the C API) and `i64` (the `load` argument of the
/// `_i64` entry points). A valid load is finite and `>= 0`; `-0.0` is read as `0.0`.
pub trait Load: Copy + Send + Sync + 'static {
    /// The argument name used in error messages (`weight` or `load`).
    const ARG: &'static str;
    /// The value as DeepSeek's reference sees it (`weight.float()`).
    fn to_f32(self) -> f32;
    /// The value in the precision the refined algorithms work in.
    fn to_f64(self) -> f64;
    /// Why this value is not a valid load, if it is not.
    fn invalid_reason(self) -> Option<&'static str>;
    /// The value as text for error messages.
    fn describe(self) -> String;
}

impl Load for f32 {
    const ARG: &'static str = "weight";
    fn to_f32(self) -> f32 {
        self + 0.0 // turns -0.0 into +0.0
    }
    fn to_f64(self) -> f64 {
        f64::from(self) + 0.0
    }
    fn invalid_reason(self) -> Option<&'static str> {
        if self.is_nan() {
            Some("loads must not be NaN")
        } else if self.is_infinite() {
            Some("loads must be finite")
        } else if self < 0.0 {
            Some("loads must be >= 0")
        } else {
            None
        }
    }
    fn describe(self) -> String {
        format!("{self:?}")
    }
}

impl Load for i64 {
    const ARG: &'static str = "load";
    fn to_f32(self) -> f32 {
        self as f32
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn invalid_reason(self) -> Option<&'static str> {
        (self < 0).then_some("loads must be >= 0")
    }
    fn describe(self) -> String {
        self.to_string()
    }
}

/// Checks every load of a `[num_layers][row_len]` matrix; the error names the first bad entry.
pub fn validate_loads<L: Load>(loads: &[L], row_len: usize) -> Result<()> {
    for (position, &value) in loads.iter().enumerate() {
        if let Some(reason) = value.invalid_reason() {
            return Err(Error::InvalidLoad {
                arg: L::ARG,
                layer: position / row_len.max(1),
                index: position % row_len.max(1),
                value: value.describe(),
                reason,
            });
        }
    }
    Ok(())
}

/// Copies one row of loads into `f64` working precision.
pub(crate) fn row_to_f64<L: Load>(row: &[L], out: &mut Vec<f64>) {
    out.clear();
    out.extend(row.iter().map(|v| v.to_f64()));
}

/// Copies one row of loads into `f32`, as DeepSeek's reference converts them.
pub(crate) fn row_to_f32<L: Load>(row: &[L], out: &mut Vec<f32>) {
    out.clear();
    out.extend(row.iter().map(|v| v.to_f32()));
}
