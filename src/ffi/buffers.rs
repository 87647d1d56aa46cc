//! Checks on caller buffers before any of them is read or written: NULL, alignment, byte-size
//! overflow and overlap. Only after every check passes are slices formed.

use crate::error::{Error, Result};

/// A caller buffer: where it is, how large, and whether the library writes it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Region {
    arg: &'static str,
    start: usize,
    bytes: usize,
    written: bool,
}

impl Region {
    /// Checks a buffer of `len` elements of `T` at `ptr`.
    pub(crate) fn new<T>(
        arg: &'static str,
        ptr: *const T,
        len: usize,
        written: bool,
    ) -> Result<Region> {
        let bytes = len
            .checked_mul(size_of::<T>())
            .filter(|&b| b <= isize::MAX as usize)
            .ok_or_else(|| Error::SizeOverflow {
                what: format!("{arg} ({len} elements of {} bytes)", size_of::<T>()),
            })?;
        let start = ptr as usize;
        if len > 0 && ptr.is_null() {
            return Err(Error::NullPointer { arg, len });
        }
        if !ptr.is_null() && start % align_of::<T>() != 0 {
            return Err(Error::MisalignedPointer {
                arg,
                address: start,
                align: align_of::<T>(),
            });
        }
        if start.checked_add(bytes).is_none() {
            return Err(Error::SizeOverflow {
                what: format!("{arg} ends beyond the address space"),
            });
        }
        Ok(Region {
            arg,
            start,
            bytes,
            written,
        })
    }

    fn overlaps(&self, other: &Region) -> bool {
        self.bytes > 0
            && other.bytes > 0
            && self.start < other.start + other.bytes
            && other.start < self.start + self.bytes
    }
}

/// Fails when a written region overlaps any other region.
pub(crate) fn check_disjoint(regions: &[Region]) -> Result<()> {
    for (i, a) in regions.iter().enumerate() {
        for b in &regions[i + 1..] {
            if (a.written || b.written) && a.overlaps(b) {
                let (first, second) = if a.written {
                    (b.arg, a.arg)
                } else {
                    (a.arg, b.arg)
                };
                return Err(Error::OverlappingBuffers { first, second });
            }
        }
    }
    Ok(())
}

/// A slice over a checked input region.
///
/// # Safety
/// `ptr` must have passed [`Region::new`] with `len`, and point to `len` initialised elements that
/// stay valid and unmodified for `'a`.
pub(crate) unsafe fn input<'a, T>(ptr: *const T, len: usize) -> &'a [T] {
    if len == 0 {
        return &[];
    }
    // SAFETY: non-null (checked by Region::new since len > 0), aligned, size checked; validity and
    // lifetime are the caller's contract stated above.
    unsafe { std::slice::from_raw_parts(ptr, len) }
}

/// Copies `data` to a checked output region.
///
/// # Safety
/// `ptr` must have passed [`Region::new`] with `data.len()` elements and be valid for writes of
/// that many elements, disjoint from `data` (checked by [`check_disjoint`] for caller buffers).
pub(crate) unsafe fn write<T: Copy>(ptr: *mut T, data: &[T]) {
    if data.is_empty() {
        return;
    }
    // SAFETY: ptr is non-null, aligned and valid for data.len() writes (caller contract); data is
    // library-owned memory, so the ranges do not overlap.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), ptr, data.len()) }
}
