//! Test support: gates that stop a store's calls until the test opens them,
//! standing for a store that waits on a slow disk.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

/// The longest a call waits at a closed gate. A test whose store call ran
/// on its own runtime's only thread cannot open the gate; the call then
/// goes on after this bound, and the gate says so ([`Gate::timed_out`]).
const BOUND: Duration = Duration::from_secs(20);

/// The gates, by store path.
static GATES: Mutex<Vec<(PathBuf, Arc<Gate>)>> = Mutex::new(Vec::new());

#[derive(Debug, Default)]
struct State {
    open: bool,
    entered: usize,
    timed_out: bool,
}

/// A closed gate in front of the calls of the store at one path.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    state: Mutex<State>,
    changed: Condvar,
}

impl Gate {
    /// Closes a gate in front of the store at `path`.
    pub(crate) fn install(path: &Path) -> Arc<Self> {
        let gate = Arc::new(Self::default());
        GATES
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((path.to_path_buf(), gate.clone()));
        gate
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many calls reached the gate.
    pub(crate) fn entered(&self) -> usize {
        self.state().entered
    }

    /// Whether a call went on only because it waited [`BOUND`].
    pub(crate) fn timed_out(&self) -> bool {
        self.state().timed_out
    }

    /// Lets every call through, now and later.
    pub(crate) fn open(&self) {
        self.state().open = true;
        self.changed.notify_all();
    }

    fn pass(&self) {
        let mut state = self.state();
        state.entered += 1;
        let (mut state, wait) = self
            .changed
            .wait_timeout_while(state, BOUND, |s| !s.open)
            .unwrap_or_else(PoisonError::into_inner);
        if wait.timed_out() {
            state.timed_out = true;
        }
    }
}

/// Waits at the gate installed for `path`, if any.
pub(super) fn pass(path: &Path) {
    let gate = GATES
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .find(|(p, _)| p == path)
        .map(|(_, g)| g.clone());
    if let Some(gate) = gate {
        gate.pass();
    }
}
