//! Structs that start with their own size: `eplb_options` (read) and the statistics structs
//! (written). A caller compiled against an older, smaller struct keeps working.

use std::mem::offset_of;

use super::buffers::Region;
use super::types::{EPLB_ALGORITHM_DEEPSEEK, EPLB_ALGORITHM_REFINED, eplb_options};
use crate::error::{Error, Result};
use crate::options::{Algorithm, Effort, Options};

/// Largest `struct_size` accepted; anything above is taken for garbage.
pub(crate) const MAX_STRUCT_SIZE: usize = 4096;

fn size_error(field: &'static str, size: usize, reason: &'static str) -> Error {
    Error::InvalidOptions {
        field,
        value: size.to_string(),
        reason,
    }
}

/// Checks a caller-declared `struct_size` against the smallest size this library understands.
pub(crate) fn check_struct_size(field: &'static str, size: usize, min: usize) -> Result<()> {
    if size < min {
        return Err(size_error(
            field,
            size,
            "too small for this struct; set it to sizeof the struct",
        ));
    }
    if size > MAX_STRUCT_SIZE {
        return Err(size_error(
            field,
            size,
            "implausibly large; set it to sizeof the struct",
        ));
    }
    Ok(())
}

/// Reads `*opts` (NULL means defaults) and validates it; also returns the caller's struct as a
/// region, so outputs can be checked not to overlap it.
///
/// # Safety
/// A non-NULL `opts` must point to at least `opts->struct_size` readable bytes (up to
/// [`MAX_STRUCT_SIZE`]) and be aligned for `eplb_options`.
pub(crate) unsafe fn read_options(opts: *const eplb_options) -> Result<(Options, Region)> {
    // SAFETY: forwarded contract.
    let options = unsafe { read_options_fields(opts) }?;
    let size = if opts.is_null() {
        0
    } else {
        // SAFETY: read_options_fields checked that opts is non-null, aligned and readable.
        unsafe { std::ptr::addr_of!((*opts).struct_size).read() }
    };
    Ok((
        options,
        Region::new("opts", opts.cast::<u8>(), size, false)?,
    ))
}

/// # Safety
/// As [`read_options`].
unsafe fn read_options_fields(opts: *const eplb_options) -> Result<Options> {
    let mut options = Options::default();
    if opts.is_null() {
        return Ok(options);
    }
    if (opts as usize) % align_of::<eplb_options>() != 0 {
        return Err(Error::MisalignedPointer {
            arg: "opts",
            address: opts as usize,
            align: align_of::<eplb_options>(),
        });
    }
    // SAFETY: opts is non-null and aligned; struct_size is the first field, always present.
    let size = unsafe { std::ptr::addr_of!((*opts).struct_size).read() };
    let min = offset_of!(eplb_options, algorithm) + size_of::<i32>();
    check_struct_size("opts->struct_size", size, min)?;
    let ours = size_of::<eplb_options>();
    if size > ours {
        let base = opts.cast::<u8>();
        // SAFETY: the caller promises `size` readable bytes at opts.
        let extra = unsafe { std::slice::from_raw_parts(base.add(ours), size - ours) };
        if extra.iter().any(|&b| b != 0) {
            return Err(size_error(
                "opts->struct_size",
                size,
                "the struct is larger than this library's eplb_options and the unknown fields are not zero (a newer header?)",
            ));
        }
    }
    let has = |offset: usize, len: usize| offset + len <= size;
    // SAFETY (each read below): the field lies inside the caller's `size` bytes and is aligned,
    // because the struct is aligned and the offsets are those of our repr(C) layout.
    let algorithm = unsafe { std::ptr::addr_of!((*opts).algorithm).read() };
    options.algorithm = match algorithm {
        EPLB_ALGORITHM_DEEPSEEK => Algorithm::DeepSeek,
        EPLB_ALGORITHM_REFINED => Algorithm::Refined,
        other => {
            return Err(Error::InvalidOptions {
                field: "opts->algorithm",
                value: other.to_string(),
                reason: "must be EPLB_ALGORITHM_DEEPSEEK (0) or EPLB_ALGORITHM_REFINED (1)",
            });
        }
    };
    if has(offset_of!(eplb_options, effort), size_of::<i32>()) {
        let level = unsafe { std::ptr::addr_of!((*opts).effort).read() };
        options.effort = Effort::from_level(level).ok_or_else(|| Error::InvalidOptions {
            field: "opts->effort",
            value: level.to_string(),
            reason: "must be EPLB_EFFORT_FAST (0) .. EPLB_EFFORT_MAX (3)",
        })?;
    }
    if has(offset_of!(eplb_options, max_balance_loss), size_of::<f64>()) {
        options.max_balance_loss = unsafe { std::ptr::addr_of!((*opts).max_balance_loss).read() };
    }
    if has(
        offset_of!(eplb_options, max_off_home_share),
        size_of::<f64>(),
    ) {
        options.max_off_home_share =
            unsafe { std::ptr::addr_of!((*opts).max_off_home_share).read() };
    }
    options.validate().map_err(|e| match e {
        Error::InvalidOptions {
            field,
            value,
            reason,
        } => Error::InvalidOptions {
            field: match field {
                "max_balance_loss" => "opts->max_balance_loss",
                "max_off_home_share" => "opts->max_off_home_share",
                other => other,
            },
            value,
            reason,
        },
        other => other,
    })?;
    Ok(options)
}

/// The options as the C struct (what `eplb_options_init` writes).
pub(crate) fn default_options() -> eplb_options {
    let o = Options::default();
    eplb_options {
        struct_size: size_of::<eplb_options>(),
        algorithm: EPLB_ALGORITHM_REFINED,
        effort: o.effort.level(),
        max_balance_loss: o.max_balance_loss,
        max_off_home_share: o.max_off_home_share,
    }
}

/// Reads the caller's `struct_size` of an output struct and checks it.
///
/// # Safety
/// `ptr` must be non-null, aligned for `T`, and its first field a readable `size_t`.
pub(crate) unsafe fn output_struct_size<T>(field: &'static str, ptr: *const T) -> Result<usize> {
    // SAFETY: the caller guarantees the first field (a size_t) is readable and aligned.
    let size = unsafe { ptr.cast::<usize>().read() };
    check_struct_size(field, size, 2 * size_of::<usize>())?;
    Ok(size)
}

/// Writes `value` into a caller struct of `size` bytes, leaving its `struct_size` as the caller set it
/// and writing nothing beyond `size`.
///
/// # Safety
/// `ptr` must be valid for writes of `size` bytes, aligned for `T`, and `T` must start with a
/// `size_t` field.
pub(crate) unsafe fn write_struct<T: Copy>(ptr: *mut T, size: usize, value: &T) {
    let len = size.min(size_of::<T>());
    let skip = size_of::<usize>();
    if len <= skip {
        return;
    }
    let src = (value as *const T).cast::<u8>();
    // SAFETY: both ranges are `len - skip` bytes inside their objects, and they do not overlap
    // (value is library-owned).
    unsafe {
        std::ptr::copy_nonoverlapping(src.add(skip), ptr.cast::<u8>().add(skip), len - skip);
    }
}
