//! The panic boundary and the thread-local last error.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};

use super::types::{EPLB_STATUS_OK, eplb_status};
use crate::error::{Error, Result};

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Records `error` as the calling thread's last error and returns its status.
pub(crate) fn fail(error: &Error) -> eplb_status {
    let message = error.to_string();
    LAST_ERROR.with(|slot| *slot.borrow_mut() = message);
    error.status() as eplb_status
}

/// Runs `body`, turning errors and panics into a status; nothing unwinds past this point.
pub(crate) fn guard(body: impl FnOnce() -> Result<()>) -> eplb_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => EPLB_STATUS_OK,
        Ok(Err(error)) => fail(&error),
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".to_string());
            fail(&Error::Internal(what))
        }
    }
}

/// Calls `f` with the calling thread's last error message.
pub(crate) fn with_last_error<T>(f: impl FnOnce(&str) -> T) -> T {
    LAST_ERROR.with(|slot| f(&slot.borrow()))
}
