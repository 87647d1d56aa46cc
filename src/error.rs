//! Errors of the safe core and their stable status codes.
//!
//! Every variant names the argument, the constraint and the offending value, so the message that
//! reaches a C caller through `eplb_last_error_message` is enough to fix the call.

/// Stable numeric status of an [`Error`]; the C API returns these values. Never renumber one:
/// new statuses are only ever appended.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Success.
    Ok = 0,
    /// A panic was caught at the C boundary (a bug in the library).
    Internal = 1,
    /// A required pointer argument was NULL.
    NullPointer = 2,
    /// A pointer argument was not aligned for its element type.
    MisalignedPointer = 3,
    /// An output buffer overlaps an input or another output.
    OverlappingBuffers = 4,
    /// A buffer length (a product of sizes) overflows the address space.
    SizeOverflow = 5,
    /// A size that must be positive was zero.
    ZeroSize = 6,
    /// `num_replicas` (or `num_physical`) is smaller than `num_logical`.
    TooFewReplicas = 7,
    /// A divisibility rule between sizes does not hold.
    NotDivisible = 8,
    /// A load is NaN, infinite, negative, or too large for the selected algorithm.
    InvalidLoad = 9,
    /// `log2phy_width` is smaller than the largest replica count of the plan.
    WidthTooSmall = 10,
    /// An options struct is malformed or holds an out-of-range value.
    InvalidOptions = 11,
    /// A plan passed in (`old_phy2log`, `phy2log`, `logcnt`, `group_node`) is not a valid plan.
    InvalidPlan = 12,
    /// A working buffer could not be allocated.
    OutOfMemory = 13,
}

impl Status {
    /// Every status, in numeric order.
    pub const ALL: [Status; 14] = [
        Status::Ok,
        Status::Internal,
        Status::NullPointer,
        Status::MisalignedPointer,
        Status::OverlappingBuffers,
        Status::SizeOverflow,
        Status::ZeroSize,
        Status::TooFewReplicas,
        Status::NotDivisible,
        Status::InvalidLoad,
        Status::WidthTooSmall,
        Status::InvalidOptions,
        Status::InvalidPlan,
        Status::OutOfMemory,
    ];

    /// The status for a raw code, if it is one.
    pub fn from_code(code: i32) -> Option<Status> {
        Status::ALL.iter().copied().find(|s| *s as i32 == code)
    }

    /// A short static description, NUL-terminated for the C API.
    pub fn description_nul(self) -> &'static str {
        match self {
            Status::Ok => "ok\0",
            Status::Internal => "internal error (a bug in eplb; please report it)\0",
            Status::NullPointer => "a required pointer argument is NULL\0",
            Status::MisalignedPointer => "a pointer argument is misaligned for its element type\0",
            Status::OverlappingBuffers => "an output buffer overlaps another buffer\0",
            Status::SizeOverflow => "a buffer size overflows the address space\0",
            Status::ZeroSize => "a size argument that must be positive is zero\0",
            Status::TooFewReplicas => "fewer replicas than logical experts\0",
            Status::NotDivisible => "a divisibility rule between sizes does not hold\0",
            Status::InvalidLoad => "a load is NaN, infinite, negative or too large\0",
            Status::WidthTooSmall => "log2phy_width is smaller than the largest replica count\0",
            Status::InvalidOptions => "invalid options\0",
            Status::InvalidPlan => "an input plan is invalid\0",
            Status::OutOfMemory => "out of memory\0",
        }
    }

    /// The description without the trailing NUL.
    pub fn description(self) -> &'static str {
        let text = self.description_nul();
        &text[..text.len() - 1]
    }
}

/// Why a call was refused. The `Display` text is the detailed message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A pointer argument was NULL while its buffer must hold `len` elements.
    #[error("{arg} is NULL but must point to {len} elements")]
    NullPointer { arg: &'static str, len: usize },
    /// A pointer argument is not aligned for its element type.
    #[error("{arg} (address {address:#x}) is not aligned to {align} bytes")]
    MisalignedPointer {
        arg: &'static str,
        address: usize,
        align: usize,
    },
    /// Two buffers overlap where at least one of them is written.
    #[error(
        "{first} and {second} overlap; every output buffer must be disjoint from the other buffers"
    )]
    OverlappingBuffers {
        first: &'static str,
        second: &'static str,
    },
    /// A product of sizes does not fit in memory.
    #[error("{what} overflows the address space")]
    SizeOverflow { what: String },
    /// A size that must be positive is zero.
    #[error("{arg} must be at least 1, got 0")]
    ZeroSize { arg: &'static str },
    /// Fewer replicas than logical experts.
    #[error(
        "{replicas_arg} ({replicas}) must be >= num_logical ({logical}): every expert needs a slot"
    )]
    TooFewReplicas {
        replicas_arg: &'static str,
        replicas: usize,
        logical: usize,
    },
    /// `dividend % divisor != 0`.
    #[error("{dividend_arg} ({dividend}) must be a multiple of {divisor_arg} ({divisor}){context}")]
    NotDivisible {
        dividend_arg: &'static str,
        dividend: usize,
        divisor_arg: &'static str,
        divisor: usize,
        context: &'static str,
    },
    /// A load value is not usable.
    #[error("{arg}[{layer}][{index}] = {value} is invalid: {reason}")]
    InvalidLoad {
        arg: &'static str,
        layer: usize,
        index: usize,
        value: String,
        reason: &'static str,
    },
    /// The layer's total load overflows the algorithm's arithmetic.
    #[error(
        "{arg}[{layer}][..] sums to {total:e}, beyond the f32 range that the DeepSeek-compatible algorithm accumulates in; scale the loads down or use EPLB_ALGORITHM_REFINED"
    )]
    LoadOverflow {
        arg: &'static str,
        layer: usize,
        total: f64,
    },
    /// `log2phy_width` cannot hold the plan's largest replica count.
    #[error(
        "log2phy_width ({given}) is smaller than the largest replica count of the plan ({needed}, layer {layer}); pass log2phy_width >= {needed} (num_replicas - num_logical + 1 always suffices)"
    )]
    WidthTooSmall {
        given: usize,
        needed: usize,
        layer: usize,
    },
    /// An options field is out of range or the struct is malformed.
    #[error("{field} = {value} is invalid: {reason}")]
    InvalidOptions {
        field: &'static str,
        value: String,
        reason: &'static str,
    },
    /// A plan given as input breaks a plan invariant.
    #[error("{arg}: {reason}")]
    InvalidPlan { arg: &'static str, reason: String },
    /// A working buffer could not be allocated.
    #[error("could not allocate {bytes} bytes of working memory")]
    OutOfMemory { bytes: usize },
    /// A bug: a panic caught at the C boundary.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The stable status code of this error.
    pub fn status(&self) -> Status {
        match self {
            Error::NullPointer { .. } => Status::NullPointer,
            Error::MisalignedPointer { .. } => Status::MisalignedPointer,
            Error::OverlappingBuffers { .. } => Status::OverlappingBuffers,
            Error::SizeOverflow { .. } => Status::SizeOverflow,
            Error::ZeroSize { .. } => Status::ZeroSize,
            Error::TooFewReplicas { .. } => Status::TooFewReplicas,
            Error::NotDivisible { .. } => Status::NotDivisible,
            Error::InvalidLoad { .. } | Error::LoadOverflow { .. } => Status::InvalidLoad,
            Error::WidthTooSmall { .. } => Status::WidthTooSmall,
            Error::InvalidOptions { .. } => Status::InvalidOptions,
            Error::InvalidPlan { .. } => Status::InvalidPlan,
            Error::OutOfMemory { .. } => Status::OutOfMemory,
            Error::Internal(_) => Status::Internal,
        }
    }
}

/// Result alias of the core.
pub type Result<T> = std::result::Result<T, Error>;

/// Allocates a zero-initialised vector, reporting failure instead of aborting.
pub(crate) fn try_vec<T: Clone>(len: usize, value: T) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| Error::OutOfMemory {
        bytes: len.saturating_mul(std::mem::size_of::<T>()),
    })?;
    v.resize(len, value);
    Ok(v)
}
