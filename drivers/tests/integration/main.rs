//! drivers integration tests: readers against images built by `hw-fixtures/` scripts.

mod ext;
mod fat;
mod helper;
mod partition;
