//! The decision log: every AssignHuman decision (its inputs, the agents it considered as it
//! saw them, its answer and explanation) and every state change (session events, statuses,
//! roster and customer changes), in the order the router made them, as JSON lines.
//!
//! Written off the hot path: a call hands its entry to a bounded queue and goes on; one
//! thread serializes and appends, flushing whenever the queue runs dry, and rotates the
//! file by size (`FILE` -> `FILE.1` -> ... -> `FILE.<keep>`). When the queue is full the
//! entry is counted as dropped, never waited for.
//!
//! A full or failing disk loses lines, never the file's shape: lines are written whole,
//! in batches; a batch the disk does not take is truncated off again (so no torn line
//! stays), its lines are counted as dropped (`io`), the failure is logged at most once a
//! second, and the next batch tries again, so writing resumes by itself once there is
//! room.
//!
//! Every file begins with a `state` entry (and the router's start writes one where it
//! begins in a file): the seats held, live statuses, run-time roster changes and idle
//! clocks as the store had them, so a file replays on its own even after older ones are
//! gone or the router restarted with state it kept. When a file is full the writer raises
//! [`DecisionLog::state_wanted`]; a task of the router's reads the state through the store
//! like any other read and records it, and the writer rotates on it.
//! Customers and their previous agents are not in it (there may be millions): each
//! decision carries what it saw of its own customer.

mod entry;
pub mod read;
mod writer;

pub use entry::{AppSnapshot, Considered, Decided, Entry, FORMAT, Previous, Seen, StateReason};
pub use writer::{DecisionLog, rotated};
