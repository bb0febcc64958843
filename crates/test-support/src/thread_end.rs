//! Work left for the end of the test's thread. libtest runs each test on a thread of its own,
//! and `#[tokio::test]` drops the test's runtime (and with it the stages the test started, their
//! tasks and Kafka clients) before that thread ends: what runs here runs after all of that.

use std::cell::RefCell;

#[derive(Default)]
struct AtEnd(Vec<Box<dyn FnOnce()>>);

thread_local! {
    static AT_END: RefCell<AtEnd> = RefCell::default();
}

impl Drop for AtEnd {
    fn drop(&mut self) {
        for work in self.0.drain(..) {
            work();
        }
    }
}

/// Runs `work` when the calling thread ends, in the order of the calls; at once when the thread
/// is already ending.
pub(crate) fn at_thread_end(work: impl FnOnce() + 'static) {
    let mut work = Some(work);
    let _ = AT_END.try_with(|at_end| {
        if let (Ok(mut at_end), Some(w)) = (at_end.try_borrow_mut(), work.take()) {
            at_end.0.push(Box::new(w));
        }
    });
    if let Some(w) = work {
        w();
    }
}
